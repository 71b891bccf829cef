//! Issue #3's scale check as users see it: submit, next task, position of a
//! task, move and cancel cost about the same with 1,000,000 queued tasks as
//! with 1,000, timed end to end through the client library, gRPC and Raft
//! (each write fsynced on a majority) against a real 3-node cluster of
//! `laneq node` processes on loopback.
//!
//! `cargo bench --bench api_scale` starts one cluster per queue length (1k,
//! then 1M; the first is stopped before the second starts), loads one queue
//! with batch submits from a few concurrent clients, times each operation
//! from one sequential client, restarts the whole cluster after SIGKILL,
//! prints Markdown tables with the load rate, each node's RSS and the
//! restart time, and writes `bench/results/api_scale.json`. Run any other way
//! (`cargo test --all-targets` runs harness-less bench targets against debug
//! nodes, whose apply checks every invariant in O(n)), it is a smoke test on
//! small queues that checks each answer against a plain `Vec` model of the
//! queue and writes nothing. It never asserts on a timing.
//!
//! It must not touch anything but the clusters it starts: every node is a
//! child of this process and is killed when its `Cluster` is dropped.

#[path = "../../tests/it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, Timings};
use laneq::client::{Client, ReadConsistency, TaskFilter};
use laneq::model::limits::{BATCH_MAX_TASKS, LIST_PAGE_MAX};
use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::{QueueSpec, Task, TaskSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{label, percentile, round3, vm_rss_kib};

const QUEUE: &str = "bench";
const NODES: [u64; 3] = [1, 2, 3];
/// Concurrent batch submitters while loading.
const LOADERS: usize = 4;
/// How long a restarted cluster may take to serve a linearizable read.
const RESTART_MAX: Duration = Duration::from_secs(300);
const RESULTS: &str = "bench/results/api_scale.json";
const LINEARIZABLE: ReadConsistency = ReadConsistency::Linearizable;

/// How one run is sized.
struct Plan {
    /// Queue lengths; the table compares the first and the last.
    sizes: &'static [usize],
    /// Timed samples per operation and size.
    samples: usize,
    /// Untimed samples before them.
    warmup: usize,
    /// Check every answer against a `Vec` model of the queue (O(n) per op).
    shadow: bool,
}

const BENCH: Plan = Plan {
    sizes: &[1_000, 1_000_000],
    samples: 300,
    warmup: 20,
    shadow: false,
};

const SMOKE: Plan = Plan {
    sizes: &[100, 1_000],
    samples: 20,
    warmup: 2,
    shadow: true,
};

#[derive(Clone, Copy, Debug)]
enum Operation {
    Submit,
    Position,
    Next,
    MoveFront,
    MovePosition,
    Cancel,
}

impl Operation {
    /// Submits come first and cancels last, as many of each: every size
    /// ends with the length it was loaded to.
    const ALL: [Operation; 6] = [
        Operation::Submit,
        Operation::Position,
        Operation::Next,
        Operation::MoveFront,
        Operation::MovePosition,
        Operation::Cancel,
    ];

    /// The key in the JSON results, and the label in the table.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Operation::Submit => ("submit", "submit 1 task (back)"),
            Operation::Position => ("position", "position of task X (linearizable get)"),
            Operation::Next => ("next_task", "next task (linearizable list, 1 per page)"),
            Operation::MoveFront => ("move_front", "move task to front"),
            Operation::MovePosition => ("move_position", "move task to random position"),
            Operation::Cancel => ("cancel", "cancel queued task"),
        }
    }
}

/// One sequential client over a loaded queue.
struct Bench {
    client: Client,
    /// Every queued task, in no order: picks a random one in O(1).
    queued: Vec<u64>,
    /// The queue's order as a plain `Vec`, when checking (smoke runs only).
    shadow: Option<Vec<u64>>,
    rng: StdRng,
}

impl Bench {
    /// With `shadow`, first lists the whole queue as the `Vec` model, and
    /// checks it holds exactly the `queued` tasks.
    async fn new(client: Client, queued: Vec<u64>, shadow: bool, seed: u64) -> Self {
        let shadow = match shadow {
            true => Some(list_queue(&client).await),
            false => None,
        };
        if let Some(shadow) = &shadow {
            let (mut listed, mut loaded) = (shadow.clone(), queued.clone());
            listed.sort_unstable();
            loaded.sort_unstable();
            assert_eq!(listed, loaded, "the queue holds what was submitted");
        }
        Self {
            client,
            queued,
            shadow,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A random queued task and its index in `queued`.
    fn random_task(&mut self) -> (usize, u64) {
        let i = self.rng.random_range(0..self.queued.len());
        (i, self.queued[i])
    }

    /// One timed call, its answer checked. Only the call is timed: not the
    /// pick of a task, nor the smoke run's checks.
    async fn sample(&mut self, op: Operation) -> Duration {
        match op {
            Operation::Submit => self.submit().await,
            Operation::Position => self.position_random().await,
            Operation::Next => self.next().await,
            Operation::MoveFront => self.move_random(1).await,
            Operation::MovePosition => {
                let to = self.rng.random_range(1..=self.queued.len());
                self.move_random(to).await
            }
            Operation::Cancel => self.cancel_random().await,
        }
    }

    async fn submit(&mut self) -> Duration {
        let spec = task_spec();
        let start = Instant::now();
        let reply = self.client.submit(spec, None).await.expect("submit");
        let took = start.elapsed();
        assert!(reply.created, "a fresh key creates a task");
        self.queued.push(reply.id);
        if let Some(shadow) = &mut self.shadow {
            shadow.push(reply.id);
            let task = get(&self.client, reply.id).await;
            assert_eq!(task.position, Some(shadow.len() as u64), "submit goes last");
        }
        took
    }

    async fn position_random(&mut self) -> Duration {
        let (_, id) = self.random_task();
        let start = Instant::now();
        let task = get(&self.client, id).await;
        let took = start.elapsed();
        assert_eq!((task.id, task.state.as_str()), (id, "queued"));
        let position = task.position.expect("a queued task has a position");
        assert!((1..=self.queued.len() as u64).contains(&position));
        if let Some(shadow) = &self.shadow {
            assert_eq!(shadow[position as usize - 1], id, "position of task {id}");
        }
        took
    }

    async fn next(&mut self) -> Duration {
        let start = Instant::now();
        let next = next_task(&self.client).await;
        let took = start.elapsed();
        assert_eq!(next.position, Some(1), "the next task is at the front");
        if let Some(shadow) = &self.shadow {
            assert_eq!(next.id, shadow[0]);
        }
        took
    }

    /// Moves a random task to 1-based position `to` (front for 1).
    async fn move_random(&mut self, to: usize) -> Duration {
        let (_, id) = self.random_task();
        let dest = match to {
            1 => To::Front(true),
            p => To::Position(p as u64),
        };
        let start = Instant::now();
        let task = self.client.move_task(id, dest).await.expect("move");
        let took = start.elapsed();
        assert_eq!(task.id, id);
        assert_eq!(task.position, Some(to as u64), "moved task {id}");
        if let Some(shadow) = &mut self.shadow {
            shadow.retain(|&t| t != id);
            shadow.insert(to - 1, id);
        }
        took
    }

    async fn cancel_random(&mut self) -> Duration {
        let (i, id) = self.random_task();
        let start = Instant::now();
        let task = self.client.cancel_task(id, "bench").await.expect("cancel");
        let took = start.elapsed();
        assert_eq!((task.id, task.state.as_str()), (id, "canceled"));
        assert_eq!(task.position, None, "a canceled task has left the queue");
        self.queued.swap_remove(i);
        if let Some(shadow) = &mut self.shadow {
            shadow.retain(|&t| t != id);
        }
        took
    }

    /// The cluster's whole order equals the `Vec` model's (smoke runs only).
    async fn check_shadow(&self) {
        if let Some(shadow) = &self.shadow {
            assert_eq!(&list_queue(&self.client).await, shadow);
        }
    }
}

fn task_spec() -> TaskSpec {
    TaskSpec {
        queue: QUEUE.into(),
        command: vec!["train".into()],
        ..Default::default()
    }
}

async fn get(client: &Client, id: u64) -> Task {
    client.get_task(id, LINEARIZABLE).await.expect("get task")
}

/// The queue's head, as a worker-facing list of one shows it.
async fn next_task(client: &Client) -> Task {
    let filter = queued_filter(1);
    let page = client.list_tasks(&filter, "", LINEARIZABLE).await;
    let mut tasks = page.expect("list the next task").tasks;
    assert_eq!(tasks.len(), 1, "the queue is not empty");
    tasks.remove(0)
}

fn queued_filter(page_size: usize) -> TaskFilter {
    TaskFilter {
        queue: QUEUE.into(),
        state: "queued".into(),
        page_size: page_size as u32,
        ..Default::default()
    }
}

/// Every queued id in queue order, page by page.
async fn list_queue(client: &Client) -> Vec<u64> {
    let filter = queued_filter(LIST_PAGE_MAX);
    let (mut ids, mut token) = (Vec::new(), String::new());
    loop {
        let page = client.list_tasks(&filter, &token, LINEARIZABLE).await;
        let page = page.expect("list the queue");
        ids.extend(page.tasks.iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

async fn queued_count(client: &Client) -> usize {
    let queue = client.get_queue(QUEUE, LINEARIZABLE).await;
    queue.expect("get the queue").queued as usize
}

/// Fills the queue with `n` tasks in full batches from `LOADERS` clients at
/// once; returns the ids (in no order) and each batch's latency.
async fn load(client: &Client, n: usize) -> (Vec<u64>, Vec<Duration>) {
    let batches = n.div_ceil(BATCH_MAX_TASKS);
    let next = Arc::new(AtomicUsize::new(0));
    let loaders: Vec<_> = (0..LOADERS)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        return done;
                    }
                    let size = BATCH_MAX_TASKS.min(n - b * BATCH_MAX_TASKS);
                    let start = Instant::now();
                    let reply = client.submit_batch(vec![task_spec(); size], None).await;
                    let reply = reply.expect("submit a batch");
                    assert_eq!(reply.ids.len(), size);
                    done.push((reply.ids, start.elapsed()));
                }
            })
        })
        .collect();
    let (mut ids, mut took) = (Vec::with_capacity(n), Vec::with_capacity(batches));
    for loader in loaders {
        for (batch, t) in loader.await.expect("a loader panicked") {
            ids.extend(batch);
            took.push(t);
        }
    }
    (ids, took)
}

/// The pid of the running node whose command line names `config`.
fn node_pid(config: &Path) -> Option<u32> {
    let want = config.as_os_str().as_bytes();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline.split(|&b| b == 0).any(|a| a == want).then_some(pid)
        })
}

fn rss_kib(pid: u32) -> Option<u64> {
    vm_rss_kib(&format!("/proc/{pid}/status"))
}

/// Each node's resident set, in node order (None where /proc has none).
fn cluster_rss_kib(cluster: &Cluster) -> Vec<Option<u64>> {
    let rss = |id| node_pid(&cluster.nodes[&id].config).and_then(rss_kib);
    NODES.iter().map(|&id| rss(id)).collect()
}

/// Waits until every node has applied all the leader has.
async fn wait_all_applied(cluster: &Cluster) {
    let leader = cluster.wait_leader(&NODES).await;
    let status = cluster.status(leader).await.expect("the leader answers");
    cluster.wait_converged(&NODES, status.applied_index).await;
}

/// SIGKILLs every node and starts them again; returns the time until a
/// linearizable read of `probe` succeeds and one leader is agreed on.
async fn restart(cluster: &mut Cluster, probe: u64) -> Duration {
    NODES.iter().for_each(|&id| cluster.kill(id));
    let start = Instant::now();
    NODES.iter().for_each(|&id| cluster.start_node(id));
    let client = cluster.client();
    while let Err(e) = client.get_task(probe, LINEARIZABLE).await {
        assert!(start.elapsed() < RESTART_MAX, "no read after restart: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.wait_leader(&NODES).await;
    start.elapsed()
}

/// Median and 99th percentile of some durations.
#[derive(Clone, Copy)]
struct Stats {
    p50_ms: f64,
    p99_ms: f64,
}

impl Stats {
    fn of(mut took: Vec<Duration>) -> Self {
        took.sort_unstable();
        let at = |q: usize| percentile(&took, q).as_secs_f64() * 1e3;
        Self {
            p50_ms: at(50),
            p99_ms: at(99),
        }
    }
}

/// What one queue length gave.
struct SizeResult {
    tasks: usize,
    load: Duration,
    /// Latency of each batch submit while loading.
    load_batches: Stats,
    /// Each node's RSS once all have applied the load.
    rss_kib: Vec<Option<u64>>,
    ops: Vec<(Operation, Stats)>,
    restart: Duration,
    rss_after_restart_kib: Vec<Option<u64>>,
}

/// A fresh 3-node cluster with production Raft timings and one queue of
/// unlimited depth.
async fn start_cluster() -> Cluster {
    let timings = Timings {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 200,
        election_timeout_max_ms: 400,
        // No snapshot while loading even 1M tasks (1,000 entries).
        snapshot_logs_since_last: 100_000,
        ..Timings::default()
    };
    let cluster = Cluster::start(NODES.len() as u64, timings);
    cluster.init(1).await;
    let unlimited = QueueSpec {
        depth: Some(0),
        ..Default::default()
    };
    let client = cluster.client();
    let queue = client.create_queue_with(QUEUE, None, Some(unlimited)).await;
    queue.expect("create the queue");
    cluster
}

/// Times `plan.samples` calls of every operation, after `plan.warmup`.
async fn time_ops(bench: &mut Bench, plan: &Plan) -> Vec<(Operation, Stats)> {
    let mut ops = Vec::new();
    for op in Operation::ALL {
        for _ in 0..plan.warmup {
            bench.sample(op).await;
        }
        let mut took = Vec::with_capacity(plan.samples);
        for _ in 0..plan.samples {
            took.push(bench.sample(op).await);
        }
        bench.check_shadow().await;
        ops.push((op, Stats::of(took)));
    }
    ops
}

/// Starts a cluster, loads a queue of `n` tasks, times every operation on
/// it and restarts the cluster. The cluster is stopped on return or panic.
async fn run_size(n: usize, plan: &Plan, seed: u64) -> SizeResult {
    let mut cluster = start_cluster().await;
    let client = cluster.client();
    let start = Instant::now();
    let (queued, batches) = load(&client, n).await;
    let load = start.elapsed();
    wait_all_applied(&cluster).await;
    let rss_kib = cluster_rss_kib(&cluster);
    assert_eq!(queued_count(&client).await, n);
    let mut bench = Bench::new(client, queued, plan.shadow, seed).await;
    let ops = time_ops(&mut bench, plan).await;
    let balanced = queued_count(&bench.client).await;
    assert_eq!(balanced, n, "submits and cancels balance");
    let restart = restart(&mut cluster, bench.queued[0]).await;
    bench.client = cluster.client();
    let kept = queued_count(&bench.client).await;
    assert_eq!(kept, n, "a restart keeps every task");
    bench.check_shadow().await;
    wait_all_applied(&cluster).await;
    SizeResult {
        tasks: n,
        load,
        load_batches: Stats::of(batches),
        rss_kib,
        ops,
        restart,
        rss_after_restart_kib: cluster_rss_kib(&cluster),
    }
}

fn print_table(small: &SizeResult, large: &SizeResult) {
    let (s, l) = (label(small.tasks), label(large.tasks));
    println!(
        "| op | p50 at {s} (ms) | p50 at {l} (ms) | ratio | p99 at {s} (ms) | p99 at {l} (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for ((op, a), (_, b)) in small.ops.iter().zip(&large.ops) {
        println!(
            "| {} | {:.3} | {:.3} | {:.2}x | {:.3} | {:.3} |",
            op.names().1,
            a.p50_ms,
            b.p50_ms,
            b.p50_ms / a.p50_ms,
            a.p99_ms,
            b.p99_ms
        );
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0))
}

/// Bytes of RSS per queued task on each node: the large cluster's growth
/// over the small one, which stands for a node's fixed cost.
fn rss_per_task(small: &SizeResult, large: &SizeResult) -> Vec<Option<f64>> {
    let extra_tasks = large.tasks.saturating_sub(small.tasks).max(1) as f64;
    let grown =
        |(s, l): (&Option<u64>, &Option<u64>)| Some(l.as_ref()?.saturating_sub(*s.as_ref()?));
    (small.rss_kib.iter().zip(&large.rss_kib))
        .map(|pair| Some(grown(pair)? as f64 * 1024.0 / extra_tasks))
        .collect()
}

fn print_size(r: &SizeResult) {
    let rss = |v: &[Option<u64>]| v.iter().map(|&k| mib(k)).collect::<Vec<_>>().join(" / ");
    println!(
        "\n{}: loaded {} tasks in {:.2} s = {:.0} tasks/s ({} batches of up to {BATCH_MAX_TASKS} \
         from {LOADERS} clients; per batch p50 {:.1} ms, p99 {:.1} ms)",
        label(r.tasks),
        r.tasks,
        r.load.as_secs_f64(),
        r.tasks as f64 / r.load.as_secs_f64(),
        r.tasks.div_ceil(BATCH_MAX_TASKS),
        r.load_batches.p50_ms,
        r.load_batches.p99_ms
    );
    println!(
        "  RSS of nodes 1 / 2 / 3 after load: {} MiB",
        rss(&r.rss_kib)
    );
    println!(
        "  whole-cluster restart after SIGKILL: {:.2} s to a linearizable read and one leader; \
         RSS then {} MiB",
        r.restart.as_secs_f64(),
        rss(&r.rss_after_restart_kib)
    );
}

fn write_json(results: &[SizeResult]) -> std::io::Result<()> {
    let per_task: Vec<Option<f64>> = rss_per_task(&results[0], &results[results.len() - 1])
        .into_iter()
        .map(|b| b.map(f64::round))
        .collect();
    let mut records = Vec::new();
    for r in results {
        for (op, stats) in &r.ops {
            records.push(serde_json::json!({
                "scenario": format!("api_scale/{}", op.names().0),
                "system": "laneq",
                "op": op.names().0,
                "tasks": r.tasks,
                "p50_ms": round3(stats.p50_ms),
                "p99_ms": round3(stats.p99_ms),
            }));
        }
        let largest = r.tasks == results[results.len() - 1].tasks;
        records.push(serde_json::json!({
            "scenario": "api_scale/load",
            "system": "laneq",
            "op": "submit_batch_1000",
            "tasks": r.tasks,
            "p50_ms": round3(r.load_batches.p50_ms),
            "p99_ms": round3(r.load_batches.p99_ms),
            "load_total_s": round3(r.load.as_secs_f64()),
            "tasks_per_s": (r.tasks as f64 / r.load.as_secs_f64()).round(),
            "loaders": LOADERS,
            "rss_after_load_kib": r.rss_kib,
            "rss_bytes_per_task": largest.then_some(&per_task),
        }));
        records.push(serde_json::json!({
            "scenario": "api_scale/restart",
            "system": "laneq",
            "op": "restart_all_after_sigkill",
            "tasks": r.tasks,
            "restart_s": round3(r.restart.as_secs_f64()),
            "rss_after_restart_kib": r.rss_after_restart_kib,
        }));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(RESULTS);
    std::fs::create_dir_all(path.parent().expect("results have a directory"))?;
    let text = serde_json::to_string_pretty(&records).expect("plain JSON");
    std::fs::write(&path, text + "\n")?;
    println!("\nwrote {}", path.display());
    Ok(())
}

#[tokio::main]
async fn main() {
    let began = Instant::now();
    let measuring = std::env::args().any(|a| a == "--bench");
    let plan = if measuring { &BENCH } else { &SMOKE };
    if !measuring {
        println!(
            "api_scale: smoke run, not a measurement (use `cargo bench --bench api_scale`): \
             debug nodes also check all invariants in O(n) per apply"
        );
    }
    let mut results = Vec::new();
    for (i, &n) in plan.sizes.iter().enumerate() {
        results.push(run_size(n, plan, i as u64 + 3).await);
    }
    let (small, large) = (&results[0], &results[results.len() - 1]);
    println!(
        "\n{} samples per op and size, one sequential client, 3 nodes on loopback\n",
        plan.samples
    );
    print_table(small, large);
    results.iter().for_each(print_size);
    let per_task = rss_per_task(small, large);
    let cells: Vec<String> = (per_task.iter())
        .map(|b| b.map_or("?".into(), |b| format!("{b:.0}")))
        .collect();
    println!(
        "\nRSS per queued task, nodes 1 / 2 / 3 ({} over {}): {} bytes",
        label(large.tasks),
        label(small.tasks),
        cells.join(" / ")
    );
    if measuring {
        write_json(&results).expect("write the results");
    }
    println!("\napi_scale took {:.1} s", began.elapsed().as_secs_f64());
}
