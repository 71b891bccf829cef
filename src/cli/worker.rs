//! `laneq worker ...`: run the agent, list and show workers.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs, LogFormat};
use crate::client::workers::{WorkerProfile, LEASE_REPLY_MARGIN};
use crate::client::{Client, ReadConsistency};
use crate::model::spec::parse_resources;
use crate::proto::v1::{Task, Usage, Worker};
use crate::worker::{self, AgentError, Config};

#[derive(Subcommand, Debug)]
pub enum WorkerCmd {
    /// Run a worker agent in the foreground: register, lease tasks from the
    /// queues given (in order), run each as a child process and report it.
    /// SIGTERM or Ctrl-C: stop leasing, let running tasks finish, exit 0.
    /// A second one: kill them and give their leases back, then exit.
    #[command(
        after_help = "Each task runs without a shell, in the agent's working directory, with \
LANEQ_TASK_ID, LANEQ_ATTEMPT, LANEQ_FENCING_TOKEN, LANEQ_ENDPOINTS, LANEQ_WORKER, \
LANEQ_PAYLOAD_FILE (the task's payload) and, on a secure cluster, LANEQ_TOKEN (the worker's \
token) in its environment. Its stdout and stderr go to \
<log-dir>/<task-id>-<attempt>.log. A line containing `laneq:iteration=N` reports its \
training iteration, as does `laneq task progress --iteration N`.

Example:
  laneq worker run --name gpu-7 --pool gpu --cluster a100 --queue gpu --queue gpu-low \\
      --capacity cpu=16,memory=64Gi,gpu=4 --slots 4"
    )]
    Run(RunArgs),
    /// List every worker: queues, tasks, state, last heartbeat and usage.
    List,
    /// Show one worker with its tasks and its latest resource usage.
    Get {
        /// The worker's name.
        name: String,
    },
    /// One worker's usage over time (CPU, memory, GPUs, network), min,
    /// average and max per point.
    Stats(super::metrics::WorkerStatsArgs),
    /// Active (holding a task) and total workers over time.
    Activity(super::metrics::ActivityArgs),
    /// Remove a worker now (a lost one goes by itself after
    /// `laneq config set lost-worker-ttl`, 1d by default). Refused while
    /// it holds tasks, unless --force.
    Remove {
        /// The worker's name.
        name: String,
        /// Put the tasks it holds back at the front of their queues first
        /// (their attempt does not count); the worker, if still running,
        /// is told to stop them at its next heartbeat.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The worker's name, unique in the cluster (registering again under
    /// the same name updates the registration).
    #[arg(long)]
    name: String,
    /// Its pool (default: `default`).
    #[arg(long, default_value = "")]
    pool: String,
    /// Its cluster within the pool (none: only queues that select `*`).
    #[arg(long, default_value = "")]
    cluster: String,
    /// A queue to lease from; repeat for several, in order of preference.
    #[arg(long = "queue", value_name = "QUEUE", required = true)]
    queues: Vec<String>,
    /// What it offers, e.g. cpu=16,memory=64Gi,gpu=4. Default: the
    /// machine's CPUs, memory and NVIDIA GPUs.
    #[arg(long)]
    capacity: Option<String>,
    /// Only these GPUs (NVML indices, as `nvidia-smi -L` lists them), e.g.
    /// 0,2. Default: every GPU of the machine. Each task that asks for
    /// gpu=N is given N of them that no other running task holds, through
    /// CUDA_VISIBLE_DEVICES (indices, with CUDA_DEVICE_ORDER=PCI_BUS_ID) and
    /// NVIDIA_VISIBLE_DEVICES (UUIDs).
    #[arg(long, value_delimiter = ',', value_name = "INDEX,...")]
    gpus: Option<Vec<u32>>,
    /// Leave every GPU visible to tasks that ask for none (by default they
    /// get CUDA_VISIBLE_DEVICES empty, which hides the GPUs from CUDA).
    #[arg(long)]
    gpus_visible_to_all: bool,
    /// Most tasks at once (0: as many as its capacity allows, leased one
    /// at a time).
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Where task logs and payloads go (default: ./laneq-worker-NAME).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// How often to heartbeat, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    heartbeat_ms: u64,
    /// How long one lease poll waits for a task, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    lease_wait_ms: u64,
    /// The IP to register (default: the local address that reaches the
    /// first endpoint).
    #[arg(long)]
    ip: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "LANEQ_LOG_FORMAT")]
    pub log_format: LogFormat,
}

impl RunArgs {
    fn config(&self, g: &GlobalArgs) -> Result<Config, Failure> {
        let resolved = g.resolve()?;
        let credentials =
            crate::client::Credentials::new(resolved.token.as_deref(), g.on_behalf_of.as_deref())
                .map_err(Failure::invalid)?;
        let capacity = match &self.capacity {
            Some(text) => parse_resources("capacity", text)
                .map_err(|e| Failure::invalid(e.to_string()))?
                .into_iter()
                .collect(),
            None => Default::default(),
        };
        if self.heartbeat_ms == 0 {
            return Err(Failure::invalid("heartbeat-ms: must be 1 or more"));
        }
        if let Some(ip) = &self.ip {
            ip.parse::<std::net::IpAddr>()
                .map_err(|e| Failure::invalid(format!("ip: {ip:?} is not an IP address: {e}")))?;
        }
        let lease_wait = Duration::from_millis(self.lease_wait_ms);
        let deadline = Duration::from_secs(g.timeout.max(1))
            .max(lease_wait + LEASE_REPLY_MARGIN + Duration::from_secs(1));
        Ok(Config {
            registration: WorkerProfile {
                name: self.name.clone(),
                ip: self.ip.clone().unwrap_or_default(),
                pool: self.pool.clone(),
                cluster: self.cluster.clone(),
                queues: self.queues.clone(),
                capacity,
                slots: self.slots,
            },
            endpoints: resolved.endpoints,
            token: resolved.token,
            credentials,
            log_dir: self
                .log_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("laneq-worker-{}", self.name))),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            lease_wait,
            deadline,
            tls: resolved.tls,
            gpus: self.gpus.clone(),
            gpus_visible_to_all: self.gpus_visible_to_all,
        })
    }
}

pub async fn run(g: &GlobalArgs, cmd: WorkerCmd) -> Result<(), Failure> {
    match cmd {
        WorkerCmd::Run(args) => {
            let config = args.config(g)?;
            worker::run(config).await.map_err(|e| match e {
                AgentError::Client(e) => Failure::from(e),
                AgentError::Setup(m) => Failure::from(m),
            })
        }
        WorkerCmd::List => list(g).await,
        WorkerCmd::Remove { name, force } => super::retention::remove_worker(g, &name, force).await,
        WorkerCmd::Stats(args) => super::metrics::worker_stats(g, args).await,
        WorkerCmd::Activity(args) => super::metrics::worker_activity(g, args).await,
        WorkerCmd::Get { name } => {
            let client = g.client()?;
            let w = client.get_worker(&name, g.consistency()).await?;
            let tasks = held_tasks(&client, &w, g.consistency()).await;
            match g.output {
                Output::Json => {
                    let mut v = worker_json(&w);
                    v["held"] = tasks.iter().map(held_json).collect();
                    output::json(&v);
                }
                Output::Table => print_worker(&w, &tasks),
            }
            Ok(())
        }
    }
}

async fn list(g: &GlobalArgs) -> Result<(), Failure> {
    let client = g.client()?;
    let workers = client.list_workers(g.consistency()).await?;
    if g.output == Output::Json {
        output::json(&json!({
            "workers": workers.iter().map(worker_json).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let mut rows = Vec::new();
    for w in &workers {
        let tasks = held_tasks(&client, w, g.consistency()).await;
        let usage = w.usage.clone().unwrap_or_default();
        rows.push(vec![
            w.name.clone(),
            output::or_dash(&w.ip),
            format!("{}/{}", w.pool, output::or_dash(&w.cluster)),
            output::or_dash(&w.queues.join(",")),
            ids(w),
            each(&tasks, runtime),
            each(&tasks, iteration),
            w.state.clone(),
            output::age(w.last_seen_ms),
            usage.cpu_pct.map_or("-".into(), |c| format!("{c:.0}%")),
            memory(&usage),
        ]);
    }
    output::table(
        &[
            "name",
            "ip",
            "pool/cluster",
            "queues",
            "tasks",
            "runtime",
            "iter",
            "state",
            "last seen",
            "cpu%",
            "mem",
        ],
        &rows,
    );
    Ok(())
}

/// The tasks a worker holds, as far as they can be read.
async fn held_tasks(client: &Client, w: &Worker, c: ReadConsistency) -> Vec<Task> {
    let reads = w.tasks.iter().map(|&id| client.get_task(id, c));
    futures::future::join_all(reads)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// A task the worker holds, as `worker get -o json` shows it under `held`.
fn held_json(t: &Task) -> serde_json::Value {
    let runtime_ms = t.started_ms.map(|start| {
        t.finished_ms
            .unwrap_or_else(crate::clock::now_ms)
            .saturating_sub(start)
    });
    json!({
        "id": t.id,
        "queue": t.queue,
        "state": t.state,
        "attempt": t.attempt,
        "iteration": t.iteration,
        "started_ms": t.started_ms,
        "runtime_ms": runtime_ms,
        "gpus": super::task::gpus_json(t),
        "name": t.name,
    })
}

fn ids(w: &Worker) -> String {
    let ids: Vec<String> = w.tasks.iter().map(u64::to_string).collect();
    output::or_dash(&ids.join(","))
}

fn each(tasks: &[Task], f: fn(&Task) -> String) -> String {
    output::or_dash(&tasks.iter().map(f).collect::<Vec<_>>().join(","))
}

/// How long a task has been running: `-` before it started.
pub fn runtime(t: &Task) -> String {
    let Some(start) = t.started_ms else {
        return "-".into();
    };
    let end = t.finished_ms.unwrap_or_else(crate::clock::now_ms);
    output::duration(end.saturating_sub(start))
}

fn iteration(t: &Task) -> String {
    t.iteration.map_or("-".into(), |i| i.to_string())
}

/// A byte count in binary units with one decimal: `512B`, `1.5Ki`, `12.3Gi`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["Ki", "Mi", "Gi", "Ti", "Pi"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

fn memory(u: &Usage) -> String {
    match (u.memory_used_bytes, u.memory_total_bytes) {
        (Some(used), Some(total)) => format!("{}/{}", bytes(used), bytes(total)),
        _ => "-".into(),
    }
}

fn rate(r: Option<u64>) -> String {
    r.map_or("-".into(), |b| format!("{}/s", bytes(b)))
}

fn capacity_text(w: &Worker) -> String {
    output::or_dash(&output::quantities(&w.capacity))
}

pub fn usage_json(u: &Usage) -> serde_json::Value {
    json!({
        "cpu_pct": u.cpu_pct,
        "memory_used_bytes": u.memory_used_bytes,
        "memory_total_bytes": u.memory_total_bytes,
        "gpus": u.gpus.iter().map(|g| json!({
            "index": g.index,
            "name": g.name,
            "util_pct": g.util_pct,
            "memory_used_bytes": g.memory_used_bytes,
            "memory_total_bytes": g.memory_total_bytes,
        })).collect::<Vec<_>>(),
        "net_rx_bytes_per_s": u.net_rx_bytes_per_s,
        "net_tx_bytes_per_s": u.net_tx_bytes_per_s,
        "at_ms": u.at_ms,
    })
}

/// A worker as JSON with the proto's field names.
pub fn worker_json(w: &Worker) -> serde_json::Value {
    json!({
        "name": w.name,
        "ip": w.ip,
        "pool": w.pool,
        "cluster": w.cluster,
        "queues": w.queues,
        "tasks": w.tasks,
        "state": w.state,
        "last_seen_ms": w.last_seen_ms,
        "last_seen": output::time(w.last_seen_ms),
        "registered_ms": w.registered_ms,
        "capacity": w.capacity,
        "slots": w.slots,
        "usage": w.usage.as_ref().map(usage_json),
    })
}

/// A task's GPUs by index, `0,2`; `-` for none.
fn gpu_indexes(t: &Task) -> String {
    let each: Vec<String> = t.gpus.iter().map(|g| g.index.to_string()).collect();
    output::or_dash(&each.join(","))
}

fn print_worker(w: &Worker, tasks: &[Task]) {
    let u = w.usage.clone().unwrap_or_default();
    let slots = match w.slots {
        0 => "no limit but capacity".to_string(),
        n => n.to_string(),
    };
    let mut pairs = vec![
        ("name", w.name.clone()),
        ("ip", output::or_dash(&w.ip)),
        ("pool", w.pool.clone()),
        ("cluster", output::or_dash(&w.cluster)),
        ("queues", output::or_dash(&w.queues.join(","))),
        ("state", w.state.clone()),
        ("capacity", capacity_text(w)),
        ("slots", slots),
        ("tasks", ids(w)),
        ("registered", output::time(w.registered_ms)),
        ("last seen", output::age(w.last_seen_ms)),
        ("cpu", u.cpu_pct.map_or("-".into(), |c| format!("{c:.1}%"))),
        ("memory", memory(&u)),
        ("network rx", rate(u.net_rx_bytes_per_s)),
        ("network tx", rate(u.net_tx_bytes_per_s)),
    ];
    if u.gpus.is_empty() {
        pairs.push(("gpus", "-".into()));
    }
    for g in &u.gpus {
        let holder = (tasks.iter())
            .find(|t| t.state == "running" && t.gpus.iter().any(|a| a.index == g.index))
            .map_or("free".to_string(), |t| format!("task {}", t.id));
        let text = format!(
            "{} {}: {:.0}%, {}/{}, {holder}",
            g.index,
            g.name,
            g.util_pct,
            bytes(g.memory_used_bytes),
            bytes(g.memory_total_bytes)
        );
        pairs.push(("gpu", text));
    }
    pairs.push(("usage at", output::time(u.at_ms)));
    output::fields(&pairs);
    if !tasks.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = tasks
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.queue.clone(),
                    t.state.clone(),
                    t.attempt.to_string(),
                    runtime(t),
                    iteration(t),
                    gpu_indexes(t),
                    output::or_dash(&t.name),
                ]
            })
            .collect();
        output::table(
            &[
                "id", "queue", "state", "attempt", "runtime", "iter", "gpus", "name",
            ],
            &rows,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        cmd: WorkerCmd,
    }

    fn config(args: &[&str]) -> Result<Config, Failure> {
        let t = T::try_parse_from([&["t", "run"], args].concat()).map_err(|e| Failure {
            message: e.to_string(),
            code: 2,
        })?;
        let WorkerCmd::Run(run) = t.cmd else {
            panic!("a run");
        };
        run.config(&t.global)
    }

    #[test]
    fn run_flags_become_a_registration() {
        let c = config(&[
            "--name",
            "w1",
            "--queue",
            "gpu",
            "--queue",
            "cpu",
            "--capacity",
            "cpu=16,memory=64Gi,gpu=4",
            "--slots",
            "4",
        ])
        .unwrap();
        let r = &c.registration;
        assert_eq!(r.name, "w1");
        assert_eq!(r.queues, ["gpu", "cpu"]);
        assert_eq!(r.capacity["cpu"], 16_000);
        assert_eq!(r.capacity["memory"], 64 << 30);
        assert_eq!(r.capacity["gpu"], 4);
        assert_eq!(r.slots, 4);
        assert_eq!(c.log_dir, PathBuf::from("laneq-worker-w1"));
        assert_eq!(c.heartbeat, Duration::from_millis(2000));
        assert!(
            c.deadline > c.lease_wait + LEASE_REPLY_MARGIN,
            "a lease poll fits in a call"
        );
    }

    #[test]
    fn bad_run_flags_are_refused_by_name() {
        let e = config(&["--name", "w", "--queue", "q", "--capacity", "cpu=lots"]);
        assert!(e.unwrap_err().message.contains("capacity"));
        let e = config(&["--name", "w", "--queue", "q", "--heartbeat-ms", "0"]);
        assert!(e.unwrap_err().message.contains("heartbeat-ms"));
        let e = config(&["--name", "w", "--queue", "q", "--ip", "host"]);
        assert!(e.unwrap_err().message.contains("ip"));
        assert!(config(&["--name", "w"]).is_err(), "a queue is required");
    }

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5Ki");
        assert_eq!(bytes(64 << 30), "64.0Gi");
        assert_eq!(bytes(3 << 50), "3.0Pi");
    }
}
