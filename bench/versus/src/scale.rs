//! Scenario 4: laneq with 1,000,000 queued tasks over 1,000 queues (256 B
//! payloads, which live on disk). The latency of a submit, a lease and a
//! move to the front, timed one at a time, with 1,000 tasks queued and again
//! with 1,000,000; the memory (RSS) each node spends per queued task; and
//! how long a whole cluster killed with SIGKILL takes to serve again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use laneq::client::workers::WorkerProfile;
use laneq::client::{Client, ReadConsistency};
use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::{QueueSpec, TaskSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::load::{ms, percentile};
use crate::systems::Cluster;
use crate::Args;

const PAYLOAD: usize = 256;
/// Batch submits in flight while loading, and tasks per batch.
const LOADERS: usize = 4;
const BATCH: usize = 1000;
const WORKER: &str = "scale-worker";

struct Size {
    queues: usize,
    /// Queued tasks at the second measurement (the first is at `queues`).
    tasks: usize,
    samples: usize,
}

pub(crate) fn queue_name(i: usize) -> String {
    format!("scale-{i:04}")
}

pub(crate) fn task(queue: String) -> TaskSpec {
    TaskSpec {
        queue,
        command: vec!["true".into()],
        payload: vec![0x61; PAYLOAD],
        ..Default::default()
    }
}

/// Each node's resident memory, in KiB.
fn rss_kib(c: &Cluster) -> Vec<u64> {
    (0..3)
        .map(|i| {
            c.pid(i)
                .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(0)
        })
        .collect()
}

/// Submits `count` tasks spread round-robin over the queues, in batches of
/// [`BATCH`] from [`LOADERS`] concurrent clients. Returns the ids and the
/// time it took.
pub(crate) async fn load(
    client: &Client,
    queues: usize,
    first: usize,
    count: usize,
) -> (Vec<u64>, Duration) {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..LOADERS {
        let (client, next) = (client.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let from = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                if from >= count {
                    return ids;
                }
                let tasks = (from..(from + BATCH).min(count))
                    .map(|i| task(queue_name((first + i) % queues)))
                    .collect();
                let r = client
                    .submit_batch(tasks, None)
                    .await
                    .expect("a batch submit while loading");
                ids.extend(r.ids);
            }
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.extend(h.await.expect("loader"));
    }
    (ids, start.elapsed())
}

/// p50, p99 and max of sequential timings of `op`, in ms.
fn summary(mut t: Vec<Duration>) -> (f64, f64, f64) {
    t.sort_unstable();
    let max = t.last().copied().unwrap_or_default();
    (ms(percentile(&t, 50.0)), ms(percentile(&t, 99.0)), ms(max))
}

/// Times `samples` submits, leases (each given back untimed, so the queue
/// keeps its length) and moves to the front, one at a time.
async fn latencies(
    client: &Client,
    ids: &mut Vec<u64>,
    queues: usize,
    samples: usize,
    rng: &mut StdRng,
) -> Vec<(&'static str, (f64, f64, f64))> {
    let (mut submit, mut lease, mut mv) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let queue = queue_name(rng.random_range(0..queues));
        let t = Instant::now();
        let r = client.submit(task(queue), None).await.expect("submit");
        submit.push(t.elapsed());
        ids.push(r.id);

        let t = Instant::now();
        let leases = client
            .lease(WORKER, 1, Duration::ZERO)
            .await
            .expect("lease");
        lease.push(t.elapsed());
        for l in leases {
            let id = l.task.map_or(0, |t| t.id);
            client
                .release_task(id, l.fencing_token, "bench: give it back")
                .await
                .expect("release");
        }

        let id = ids[rng.random_range(0..ids.len())];
        let t = Instant::now();
        client.move_task(id, To::Front(true)).await.expect("move");
        mv.push(t.elapsed());
    }
    vec![
        ("submit", summary(submit)),
        ("lease", summary(lease)),
        ("move_to_front", summary(mv)),
    ]
}

pub async fn scale(args: &Args) -> Vec<Value> {
    let size = args.by_size(
        Size {
            queues: 10,
            tasks: 2_000,
            samples: 5,
        },
        Size {
            queues: 100,
            tasks: 20_000,
            samples: 50,
        },
        Size {
            queues: 1000,
            tasks: 1_000_000,
            // Enough that the p99 is not one of the few worst samples, so
            // that the 1M/1k ratio holds from run to run (see
            // bench/RESULTS.md, "Scale").
            samples: 2_000,
        },
    );
    let mut rng = StdRng::seed_from_u64(4);
    let mut rows = Vec::new();
    let mut cluster = Cluster::laneq(&args.laneq_bin).await;
    let client = Client::with_deadline(&cluster.endpoints, Duration::from_secs(60));
    let spec = QueueSpec {
        depth: Some(0),
        ..Default::default()
    };
    let creates = (0..size.queues).map(|i| {
        let (client, spec) = (client.clone(), spec.clone());
        async move {
            client
                .create_queue_with(&queue_name(i), None, Some(spec))
                .await
                .expect("create a queue")
        }
    });
    futures::future::join_all(creates).await;
    // The worker listens to the first queue; moves and submits go anywhere.
    let reg = WorkerProfile {
        name: WORKER.into(),
        queues: vec![queue_name(0)],
        ..Default::default()
    };
    client.register_worker(&reg).await.expect("register");

    let (mut ids, _) = load(&client, size.queues, 0, size.queues).await;
    cluster.wait_caught_up().await;
    let rss_small = rss_kib(&cluster);
    let small = latencies(&client, &mut ids, size.queues, size.samples, &mut rng).await;

    let more = size.tasks - ids.len();
    let (loaded, took) = load(&client, size.queues, ids.len(), more).await;
    ids.extend(loaded);
    cluster.wait_caught_up().await;
    let rss_big = rss_kib(&cluster);
    let big = latencies(&client, &mut ids, size.queues, size.samples, &mut rng).await;
    let queued: u64 = client
        .list_queues(ReadConsistency::Linearizable)
        .await
        .expect("list queues")
        .iter()
        .map(|q| q.queued)
        .sum();

    for i in 0..3 {
        cluster.kill(i);
    }
    let t = Instant::now();
    for i in 0..3 {
        cluster.start(i);
    }
    cluster.wait_ready().await;
    client
        .submit(task(queue_name(0)), None)
        .await
        .expect("a submit after the restart");
    let restart = t.elapsed();
    cluster.wait_caught_up().await;
    let rss_restarted = rss_kib(&cluster);

    let per_task: Vec<f64> = rss_small
        .iter()
        .zip(&rss_big)
        .map(|(a, b)| (b.saturating_sub(*a) * 1024) as f64 / more.max(1) as f64)
        .collect();
    let per_task_restarted: Vec<f64> = rss_restarted
        .iter()
        .map(|kib| (kib * 1024) as f64 / queued.max(1) as f64)
        .collect();
    let load_rate = more as f64 / took.as_secs_f64();

    println!(
        "## 4. Scale: {} queued tasks over {} queues ({PAYLOAD} B payloads)\n",
        queued, size.queues
    );
    println!(
        "| operation | p50 / p99 / max ms at {} tasks | at {} tasks | p50 / p99 ratio |",
        size.queues, size.tasks
    );
    println!("|---|---|---|---|");
    for ((op, a), (_, b)) in small.iter().zip(&big) {
        println!(
            "| {op} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {:.2}x / {:.2}x |",
            a.0,
            a.1,
            a.2,
            b.0,
            b.1,
            b.2,
            b.0 / a.0.max(1e-9),
            b.1 / a.1.max(1e-9)
        );
        for (tasks, s) in [(size.queues, a), (size.tasks, b)] {
            rows.push(json!({
                "scenario": format!("scale/{op}"), "system": "laneq", "clients": 1,
                "tasks": tasks, "queues": size.queues,
                "p50_ms": s.0, "p99_ms": s.1, "max_ms": s.2,
            }));
        }
    }
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|b| format!("{b:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "\nloaded {more} tasks in {:.1} s ({load_rate:.0} tasks/s, batches of {BATCH} from {LOADERS} clients)",
        took.as_secs_f64()
    );
    println!(
        "RSS per queued task, nodes 1 / 2 / 3: {} B while loaded (growth from {} to {} tasks), {} B after the restart (all memory over all tasks)",
        fmt(&per_task),
        size.queues,
        size.tasks,
        fmt(&per_task_restarted)
    );
    println!(
        "whole-cluster restart after SIGKILL until a linearizable read and a write succeed: {:.2} s\n",
        restart.as_secs_f64()
    );
    rows.push(json!({
        "scenario": "scale/load", "system": "laneq", "clients": LOADERS, "tasks": more,
        "queues": size.queues, "ops_per_s": (load_rate / BATCH as f64).round(),
        "tasks_per_s": load_rate.round(), "rss_kib_before": rss_small, "rss_kib_after": rss_big,
        "rss_bytes_per_task": per_task, "p50_ms": Value::Null, "p99_ms": Value::Null,
    }));
    rows.push(json!({
        "scenario": "scale/restart", "system": "laneq", "clients": 1, "tasks": queued,
        "restart_s": restart.as_secs_f64(), "rss_kib_after_restart": rss_restarted,
        "rss_bytes_per_task_after_restart": per_task_restarted,
        "p50_ms": Value::Null, "p99_ms": Value::Null, "ops_per_s": Value::Null,
    }));
    rows
}
