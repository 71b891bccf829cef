//! laneq side by side with etcd on the same machine, in the same run
//! (issue #6). `scripts/bench` builds and runs it; see `--help`.
//!
//! Each scenario starts the clusters it needs (3 nodes each, on 127.0.0.1,
//! fsync on), drives them from this process with the same concurrency, and
//! prints a Markdown table. Every measured row also goes into one JSON list
//! (`--out`, by default `bench/results/versus_etcd.json`) of records with
//! `scenario`, `system`, `clients`, `ops_per_s`, `p50_ms`, `p99_ms` and
//! whatever else the scenario measures.

mod backup;
mod floor;
mod history;
mod load;
mod paired;
mod scale;
mod scenarios;
mod security;
mod systems;

use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "\
laneq-bench: laneq side by side with etcd (3 nodes each, loopback, fsync on)

Options:
  --quick               every scenario, briefly
  --smoke               every scenario, tiny (what scripts/test runs: it
                        checks that the harness works, not how fast)
  --scenarios LIST      comma-separated, default all: floor, submit, e2e,
                        failover, scale, heartbeats, history (the cost of
                        the metrics history: with it and without),
                        security (the cost of TLS and tokens: with them
                        and without), backup (snapshot save and restore
                        of 1M queued tasks)
  --laneq-bin PATH      the laneq binary (default target/release/laneq)
  --etcd-bin PATH       the etcd binary (default /usr/bin/etcd)
  --out FILE            the JSON results (default bench/results/versus_etcd.json)
  --clients LIST        the submit scenario's client counts (default 1,16,64,256)
  --laneq-only          the submit scenario without etcd (for profiling)

Diagnostics (environment):
  LANEQ_BENCH_TIMELINE=1   print each closed loop's acknowledgements per second
  LANEQ_BENCH_KEEP=1       keep the clusters' data dirs and logs (paths printed)
  LANEQ_BENCH_NODE_LOG=F   the nodes' log filter (default warn), e.g. info
";

pub struct Args {
    pub quick: bool,
    /// Tiny sizes: the test suite's check that the harness still works.
    pub smoke: bool,
    pub scenarios: Vec<String>,
    pub laneq_bin: PathBuf,
    pub etcd_bin: PathBuf,
    pub out: PathBuf,
    pub clients: Vec<usize>,
    pub laneq_only: bool,
}

impl Args {
    /// The value for this run's size: `--smoke`, `--quick`, or a full run.
    pub fn by_size<T>(&self, smoke: T, quick: T, full: T) -> T {
        if self.smoke {
            smoke
        } else if self.quick {
            quick
        } else {
            full
        }
    }

    /// How long one measurement runs.
    pub fn window(&self) -> Duration {
        self.by_size(
            Duration::from_millis(300),
            Duration::from_secs(2),
            Duration::from_secs(10),
        )
    }
}

const SCENARIOS: [&str; 9] = [
    "floor",
    "submit",
    "e2e",
    "failover",
    "scale",
    "heartbeats",
    "history",
    "security",
    "backup",
];

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        smoke: false,
        scenarios: SCENARIOS.iter().map(|s| s.to_string()).collect(),
        laneq_bin: PathBuf::from("target/release/laneq"),
        etcd_bin: PathBuf::from("/usr/bin/etcd"),
        out: PathBuf::from("bench/results/versus_etcd.json"),
        clients: vec![1, 16, 64, 256],
        laneq_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--quick" => a.quick = true,
            "--smoke" => {
                a.smoke = true;
                a.quick = true;
                a.clients = vec![1, 4];
            }
            "--scenarios" => {
                a.scenarios = value()?.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = a
                    .scenarios
                    .iter()
                    .find(|s| !SCENARIOS.contains(&s.as_str()))
                {
                    return Err(format!(
                        "--scenarios: unknown {bad:?}; scenarios: {}",
                        SCENARIOS.join(", ")
                    ));
                }
            }
            "--laneq-bin" => a.laneq_bin = PathBuf::from(value()?),
            "--etcd-bin" => a.etcd_bin = PathBuf::from(value()?),
            "--out" => a.out = PathBuf::from(value()?),
            "--clients" => {
                a.clients = value()?
                    .split(',')
                    .map(|c| match c.trim().parse::<usize>() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(format!("--clients: {c:?} is not a positive count")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--laneq-only" => a.laneq_only = true,
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    if a.laneq_only && a.scenarios.iter().any(|s| s != "submit") {
        return Err("--laneq-only goes with --scenarios submit".into());
    }
    for (what, path) in [("laneq", &a.laneq_bin), ("etcd", &a.etcd_bin)] {
        if !path.exists() {
            return Err(format!(
                "the {what} binary {} does not exist",
                path.display()
            ));
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# laneq vs etcd: 3 nodes each on 127.0.0.1, fsync on, {cpus} cores, {} per node, {}\n",
        match systems::threads_per_node() {
            1 => "1 thread".to_string(),
            n => format!("{n} threads"),
        },
        args.by_size(
            "smoke run (tiny: the figures mean nothing)",
            "quick run (2 s windows)",
            "10 s windows",
        )
    );
    let mut records = Vec::new();
    for s in &args.scenarios {
        let rows = match s.as_str() {
            "floor" => floor::run().await,
            "submit" => scenarios::submit(&args).await,
            "e2e" => scenarios::end_to_end(&args).await,
            "failover" => scenarios::failover(&args).await,
            "scale" => scale::scale(&args).await,
            "heartbeats" => scenarios::heartbeats(&args).await,
            "history" => history::history(&args).await,
            "security" => security::security(&args).await,
            "backup" => backup::backup(&args).await,
            _ => unreachable!("checked in parse_args"),
        };
        records.extend(rows);
    }
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&records).expect("records are JSON");
    if let Err(e) = std::fs::write(&args.out, text + "\n") {
        eprintln!("cannot write {}: {e}", args.out.display());
        return std::process::ExitCode::from(1);
    }
    println!("\nresults: {}", args.out.display());
    std::process::ExitCode::SUCCESS
}
