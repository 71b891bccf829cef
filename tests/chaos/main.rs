//! The chaos suite: a real cluster of `laneq node` processes under a real
//! workload while a nemesis kills, pauses, partitions and restarts nodes;
//! then a heal phase, and a checker over the recorded history and the final
//! state of every node: the properties in `tests/history/check/`, which the
//! simulation shares, and this run's own facts (nodes that died on their
//! own, nodes that could not be read, a cluster that did not converge).
//!
//! `cargo test` runs it briefly with a fixed seed. `scripts/chaos` runs it
//! from a release build with any seed, length, cluster size and faults:
//!
//! ```text
//! chaos [--seconds N] [--seed S] [--nodes 3|5] [--faults kill-leader,pause,...]
//!       [--pause-ms MS] [--report FILE]
//! ```
//!
//! The exit status is 1 on any violation. The same seed replays the same
//! fault schedule (kinds, gaps, durations and target draws) and the same
//! workload choices.

#[path = "../it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

// Shared with the simulation, which uses all of it. This target is built
// with cfg(test) but, having no harness, without the `#[test]` functions,
// so the imports of the checks' own tests look unused here.
#[allow(unused_imports)]
#[path = "../history/mod.rs"]
mod history;
mod nemesis;
mod proxy;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use laneq::client::{Client, ReadConsistency, TaskFilter};
use tokio::sync::watch;

use common::{free_port, Cluster, Timings};
use history::{Replica, TaskView};
use workload::{Load, Phase, Recorder, QUEUES};

const USAGE: &str = "\
chaos: kill, pause and partition a laneq cluster under load, then check that
nothing acknowledged was lost and nothing ran twice.

Options:
  --seconds N     length of the fault phase (default 40)
  --seed S        seed of the fault schedule and the workload (default 1)
  --nodes 3|5     cluster size (default 3)
  --faults LIST   comma-separated fault kinds (default: all):
                  kill-leader, kill-follower, pause, partition-leader,
                  partition-split, partition-bridge, restart-all, snapshot-kill
  --pause-ms MS   mean pause between two submits of one submitter (default 40)
  --report FILE   write the JSON report there
";

pub struct Args {
    seconds: u64,
    seed: u64,
    nodes: u64,
    faults: Vec<String>,
    pause_ms: u64,
    report: Option<PathBuf>,
}

/// Parses the chaos options. Being a test target, it also meets libtest's
/// arguments (`cargo test FILTER`, `--list`, `--exact`, `--nocapture`...):
/// `Ok(None)` means "not selected, run nothing".
fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        seconds: 40,
        seed: 1,
        nodes: 3,
        faults: nemesis::KINDS.iter().map(|s| s.to_string()).collect(),
        pause_ms: 40,
        report: None,
    };
    let (mut filters, mut skips, mut exact) = (vec![], vec![], false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: {v:?} is not a whole number"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.to_string()),
            "--seconds" => a.seconds = number(arg, value(arg)?)?,
            "--seed" => a.seed = number(arg, value(arg)?)?,
            "--pause-ms" => a.pause_ms = number(arg, value(arg)?)?.max(1),
            "--nodes" => {
                a.nodes = number(arg, value(arg)?)?;
                if !(3..=5).contains(&a.nodes) {
                    return Err("--nodes: use 3, 4 or 5".into());
                }
            }
            "--faults" => {
                a.faults = value(arg)?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
                if let Some(bad) = a
                    .faults
                    .iter()
                    .find(|f| !nemesis::KINDS.contains(&f.as_str()))
                {
                    return Err(format!(
                        "--faults: unknown kind {bad:?}; kinds: {}",
                        nemesis::KINDS.join(", ")
                    ));
                }
            }
            "--report" => a.report = Some(PathBuf::from(value(arg)?)),
            "--list" => {
                println!("chaos: test");
                return Ok(None);
            }
            "--exact" => exact = true,
            "--skip" => skips.push(value(arg)?),
            "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" => {
                value(arg)?;
            }
            flag if flag.starts_with('-') => {}
            filter => filters.push(filter.to_string()),
        }
    }
    let matches = |f: &String| {
        if exact {
            f == "chaos"
        } else {
            "chaos".contains(f.as_str())
        }
    };
    if (!filters.is_empty() && !filters.iter().any(matches)) || skips.iter().any(matches) {
        return Ok(None);
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // On Ctrl-C or SIGTERM the run is dropped, and with it the cluster,
    // which kills every node it started.
    let report = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            report = run(&args) => Some(report),
            _ = tokio::signal::ctrl_c() => None,
            _ = term.recv() => None,
        }
    });
    let Some(report) = report else {
        eprintln!("chaos: interrupted; every node it started was killed");
        return ExitCode::from(130);
    };
    rt.shutdown_timeout(Duration::from_secs(5));
    let violations = report["violations"].as_array().map_or(0, Vec::len);
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report).expect("report is JSON");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("cannot write the report to {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("report: {}", path.display());
    }
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A port on `ip` that was free a moment ago.
fn free_port_on(ip: std::net::IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
}

/// Starts `n` nodes, each behind its proxy (see proxy.rs), and initialises
/// them as one cluster.
async fn start_cluster(n: u64, links: &proxy::Links) -> Cluster {
    let defaults = laneq::config::RaftTimings::default();
    let timings = Timings {
        // laneq's defaults, so that failover times mean what they say.
        heartbeat_interval_ms: defaults.heartbeat_interval_ms,
        election_timeout_min_ms: defaults.election_timeout_min_ms,
        election_timeout_max_ms: defaults.election_timeout_max_ms,
        // Small, so that a node that was away catches up from a snapshot.
        snapshot_logs_since_last: 300,
        max_in_snapshot_log_to_keep: 50,
        lease_ttl_ms: 3000,
        worker_timeout_ms: 3000,
        heartbeat_batch_ms: 250,
        shutdown_drain_ms: 0,
    };
    // TLS and tokens on, as in production: clients over TLS with the
    // admin's token, peers over mutual TLS (through the proxies, which see
    // only bytes).
    let mut cluster = Cluster::empty(timings, true);
    let mut real = BTreeMap::new();
    let mut peers = Vec::new();
    for id in 1..=n {
        let ip = proxy::node_ip(id);
        real.insert(id, SocketAddr::new(ip, free_port_on(ip)));
        peers.push((id, format!("127.0.0.1:{}", free_port())));
    }
    for (id, addr) in &peers {
        let listen: SocketAddr = addr.parse().expect("proxy address");
        proxy::start(*id, listen, real[id], links.clone()).await;
    }
    for id in 1..=n {
        cluster.add_config(id, real[&id].to_string(), &peers);
        cluster.start_node(id);
    }
    cluster.init(1).await;
    let client = cluster.client();
    for q in &QUEUES[1..] {
        client.create_queue(q).await.expect("create the queues");
    }
    cluster
}

async fn run(args: &Args) -> serde_json::Value {
    let began = Instant::now();
    let links = proxy::Links::new();
    let cluster = start_cluster(args.nodes, &links).await;
    let endpoints = cluster.endpoints();
    println!(
        "chaos: seed {}, {} nodes, {} s of faults ({}); cluster up in {:.1} s",
        args.seed,
        args.nodes,
        args.seconds,
        args.faults.join(","),
        began.elapsed().as_secs_f64()
    );
    let rec = Recorder::new();
    let (phase_tx, phase) = watch::channel(Phase::Faults);
    let load = Load {
        seed: args.seed,
        endpoints: endpoints.clone(),
        credentials: admin_credentials(&cluster),
        recorder: rec.clone(),
        phase,
        submit_pause_ms: args.pause_ms,
        tls: cluster.client_tls(None),
    };
    let mut tasks = Vec::new();
    for i in 0..3 {
        tasks.push(tokio::spawn(workload::submitter(load.clone(), i)));
        tasks.push(tokio::spawn(workload::worker(
            load.clone(),
            i,
            endpoints.clone(),
        )));
    }
    tasks.push(tokio::spawn(workload::admin(load.clone())));

    let mut nemesis =
        nemesis::Nemesis::new(cluster, links, rec.clone(), args.seed, args.faults.clone());
    let fault_start = rec.now();
    nemesis.run(fault_start + args.seconds * 1000).await;
    let fault_end = rec.now();
    nemesis.heal().await;
    println!(
        "chaos: faults over at {:.1} s; healing and draining",
        fault_end as f64 / 1000.0
    );

    // Drain: the workers finish what is queued, then everything stops.
    phase_tx.send_replace(Phase::Drain);
    let client = nemesis
        .cluster
        .client_on(&endpoints, Duration::from_secs(10));
    let drain_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < drain_until {
        nemesis.watch(500).await;
        if let Ok(queues) = client.list_queues(ReadConsistency::Linearizable).await {
            if queues.iter().all(|q| q.queued == 0 && q.running == 0) {
                break;
            }
        }
    }
    phase_tx.send_replace(Phase::Stop);
    let joined = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), joined)
        .await
        .is_err()
    {
        println!("chaos: the workload did not stop within 60 s; reading the nodes anyway");
    }
    // Leases lost with their replies expire; lost workers are marked lost.
    wait_no_leases(&client, &mut nemesis).await;
    let converged = wait_converged(&mut nemesis).await;
    let mut finals = Vec::new();
    for id in nemesis.cluster.nodes.keys().copied().collect::<Vec<_>>() {
        match read_node(&nemesis.cluster, id).await {
            Ok(f) => finals.push(f),
            Err(e) => println!("chaos: cannot read node {id}: {e}"),
        }
    }
    let history = rec.take();
    let report = report::report(
        args,
        &history,
        &finals,
        &nemesis.crashes,
        (fault_start, fault_end),
        converged,
        began,
    );
    if report["violations"]
        .as_array()
        .is_some_and(|v| !v.is_empty())
    {
        // Keep the data dirs and node logs for the post-mortem.
        let dir = std::mem::replace(
            &mut nemesis.cluster.dir,
            tempfile::tempdir().expect("temp dir"),
        );
        println!("node data dirs and logs kept in {}", dir.keep().display());
    }
    report
}

/// Waits until no task is leased or running (every worker has stopped, so
/// what is left is waiting to expire), for at most 30 s.
async fn wait_no_leases(client: &Client, nemesis: &mut nemesis::Nemesis) {
    for _ in 0..60 {
        let mut busy = 0;
        for state in ["leased", "running"] {
            let filter = TaskFilter {
                state: state.into(),
                page_size: 1,
                ..Default::default()
            };
            match client
                .list_tasks(&filter, "", ReadConsistency::Linearizable)
                .await
            {
                Ok(page) => busy += page.tasks.len(),
                Err(_) => busy += 1,
            }
        }
        if busy == 0 {
            return;
        }
        nemesis.watch(500).await;
    }
}

/// The credentials of the cluster's first admin, which the workload uses.
fn admin_credentials(cluster: &Cluster) -> laneq::client::Credentials {
    laneq::client::Credentials::new(cluster.admin.get().map(String::as_str), None)
        .expect("the admin's token")
}

/// Waits until every node reports the same applied index and digest twice
/// in a row, one second apart (no write left in flight), for at most 60 s.
async fn wait_converged(nemesis: &mut nemesis::Nemesis) -> bool {
    let mut last = None;
    for _ in 0..60 {
        let mut seen = Vec::new();
        for id in nemesis.cluster.nodes.keys() {
            let s = nemesis
                .cluster
                .status_within(*id, Duration::from_secs(2))
                .await;
            seen.push(s.ok().map(|s| (s.applied_index, s.digest)));
        }
        let same = seen.iter().all(|s| s.is_some() && *s == seen[0]);
        if same && last.as_ref() == Some(&seen) {
            return true;
        }
        last = Some(seen);
        nemesis.watch(1000).await;
    }
    false
}

/// Reads one node's whole state through stale reads served by that node.
async fn read_node(cluster: &Cluster, id: u64) -> Result<Replica, String> {
    let client = cluster.client_for(id);
    let status = (cluster.status_within(id, Duration::from_secs(5)))
        .await
        .map_err(|e| e.to_string())?;
    let mut node = Replica {
        id,
        applied: status.applied_index,
        digest: status.digest,
        tasks: Vec::new(),
        queued: BTreeMap::new(),
        records: None,
    };
    let mut filter = TaskFilter {
        page_size: 1000,
        ..Default::default()
    };
    let mut token = String::new();
    loop {
        let page = (client
            .list_tasks(&filter, &token, ReadConsistency::Stale)
            .await)
            .map_err(|e| e.to_string())?;
        node.tasks.extend(page.tasks.iter().map(|t| TaskView {
            id: t.id,
            key: t.idempotency_key.clone(),
            queue: t.queue.clone(),
            state: t.state.clone(),
            token: t.fencing_token,
            successes: t.timeline.iter().filter(|e| e.state == "succeeded").count() as u32,
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    node.tasks.sort_by_key(|t| t.id);
    filter.state = "queued".into();
    for q in QUEUES {
        filter.queue = q.into();
        let mut token = String::new();
        let listed = node.queued.entry(q.to_string()).or_default();
        loop {
            let page = (client
                .list_tasks(&filter, &token, ReadConsistency::Stale)
                .await)
                .map_err(|e| e.to_string())?;
            listed.extend(page.tasks.iter().map(|t| (t.id, t.position.unwrap_or(0))));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
    }
    Ok(node)
}
