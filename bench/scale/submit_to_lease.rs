//! Issue #4's figure: the time from a submit to the lease that hands the
//! task to a waiting worker, at light load, on a real 3-node cluster.
//!
//! One worker long-polls `Lease` (on the leader, then on a follower) while
//! one client submits a task every few milliseconds; each task's latency is
//! from the start of its submit call to the arrival of the lease that
//! carries it. `cargo bench --bench submit_to_lease` prints a Markdown table
//! and writes `bench/results/submit_to_lease.json`. Run any other way (as
//! `cargo test --all-targets` does, against debug nodes) it is a small smoke
//! run that checks every task is leased exactly once, and asserts no timing.

#[path = "../../tests/it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Timings};
use laneq::proto::v1::tasks_client::TasksClient;
use laneq::proto::v1::workers_client::WorkersClient;
use laneq::proto::v1::*;
use tonic::transport::Channel;

const RESULTS: &str = "bench/results/submit_to_lease.json";

fn meta() -> Option<WriteMeta> {
    Some(WriteMeta {
        idempotency_key: laneq::wire::new_idempotency_key(),
        actor: "bench".into(),
    })
}

/// When each task was leased, by id.
type Arrivals = Arc<Mutex<BTreeMap<u64, Instant>>>;

/// Long-polls for `worker` until `stop`, recording each lease's arrival.
async fn lease_loop(ch: Channel, worker: String, arrivals: Arrivals, stop: Arc<Mutex<bool>>) {
    let mut client = WorkersClient::new(ch);
    while !*stop.lock().unwrap() {
        let req = LeaseRequest {
            meta: meta(),
            worker: worker.clone(),
            max_tasks: 16,
            wait_ms: 500,
        };
        let leases = client.lease(req).await.expect("lease").into_inner().leases;
        let now = Instant::now();
        let mut seen = arrivals.lock().unwrap();
        for l in leases {
            let id = l.task.expect("a lease carries its task").id;
            assert!(seen.insert(id, now).is_none(), "task {id} leased twice");
        }
    }
}

/// Submits `n` tasks `gap` apart while a worker polls `via`; returns the
/// submit-to-lease latencies in ms.
async fn measure(c: &Cluster, via: u64, worker: &str, n: usize, gap: Duration) -> Vec<f64> {
    let ch = laneq::wire::endpoint_channel(&c.addr(via));
    let register = RegisterWorkerRequest {
        meta: meta(),
        name: worker.into(),
        ip: "127.0.0.1".into(),
        queues: vec!["default".into()],
        ..Default::default()
    };
    WorkersClient::new(ch.clone())
        .register_worker(register)
        .await
        .unwrap();
    let arrivals: Arrivals = Arc::default();
    let stop = Arc::new(Mutex::new(false));
    let poller = tokio::spawn(lease_loop(
        ch.clone(),
        worker.into(),
        arrivals.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut submits = TasksClient::new(laneq::wire::endpoint_channel(&c.addr(via)));
    let mut started = BTreeMap::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let req = SubmitTaskRequest {
            meta: meta(),
            task: Some(TaskSpec {
                command: vec!["true".into()],
                ..Default::default()
            }),
        };
        let id = submits.submit_task(req).await.unwrap().into_inner().id;
        started.insert(id, t0);
        tokio::time::sleep(gap).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "not every task was leased");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    *stop.lock().unwrap() = true;
    poller.await.unwrap();
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), n, "each task leased exactly once");
    started
        .iter()
        .map(|(id, t0)| (arrivals[id] - *t0).as_secs_f64() * 1e3)
        .collect()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (n, gap) = if measuring {
        (500, Duration::from_millis(10))
    } else {
        println!("submit_to_lease: smoke run, not a measurement (use `cargo bench --bench submit_to_lease`)");
        (20, Duration::from_millis(5))
    };
    let timings = Timings {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 200,
        election_timeout_max_ms: 400,
        ..Timings::default()
    };
    let c = Cluster::start(3, timings);
    let leader = c.init(1).await;
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    let mut rows = Vec::new();
    for (label, via, worker) in [
        ("leader", leader, "on-leader"),
        ("follower", follower, "on-follower"),
    ] {
        let mut ms = measure(&c, via, worker, n, gap).await;
        ms.sort_by(f64::total_cmp);
        rows.push((label, ms));
    }
    println!(
        "\n{n} tasks, one submitted every {} ms, one worker long-polling; 3 nodes on loopback\n",
        gap.as_millis()
    );
    println!("| worker polls | p50 (ms) | p99 (ms) | max (ms) |");
    println!("|---|---:|---:|---:|");
    let mut json = Vec::new();
    for (label, ms) in &rows {
        let (p50, p99, max) = (pct(ms, 0.5), pct(ms, 0.99), ms[ms.len() - 1]);
        println!("| the {label} | {p50:.2} | {p99:.2} | {max:.2} |");
        json.push(serde_json::json!({
            "scenario": "submit_to_lease", "system": "laneq", "clients": 1,
            "via": label, "tasks": n, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
        }));
    }
    if measuring {
        std::fs::create_dir_all("bench/results").unwrap();
        std::fs::write(RESULTS, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        println!("\nwrote {RESULTS}");
    }
}
