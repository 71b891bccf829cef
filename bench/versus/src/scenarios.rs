//! The scenarios of issue #6, each against laneq and, where the issue asks,
//! against etcd at the same concurrency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use laneq::client::workers::{Outcome as RunOutcome, WorkerProfile};
use laneq::client::{Client, ReadConsistency};
use laneq::proto::v1::{QueueSpec, TaskSpec};
use serde_json::{json, Value};

use crate::floor::{round2, TouchSampler};
use crate::load::{closed_loop, ms, percentile, Op, Outcome};
use crate::systems::{cpu_time, Cluster};
use crate::Args;

const PAYLOAD: usize = 256;
pub(crate) const QUEUE: &str = "bench";
/// Time allowed to one etcd request before the next goes to another member.
const ATTEMPT: Duration = Duration::from_secs(2);

/// A laneq client with the bench queue created (no depth limit).
pub(crate) async fn laneq_client(c: &Cluster) -> Client {
    let client = c.client(Duration::from_secs(10));
    create_queue(&client, QUEUE).await;
    client
}

/// Creates a queue without a depth limit (if it does not exist yet).
async fn create_queue(client: &Client, name: &str) {
    let spec = QueueSpec {
        depth: Some(0),
        ..Default::default()
    };
    let _ = client.create_queue_with(name, None, Some(spec)).await;
}

fn task() -> TaskSpec {
    task_in(QUEUE)
}

fn task_in(queue: &str) -> TaskSpec {
    TaskSpec {
        queue: queue.into(),
        command: vec!["true".into()],
        payload: vec![0x61; PAYLOAD],
        ..Default::default()
    }
}

pub(crate) fn laneq_submit(client: Client) -> Op {
    Arc::new(move |_, _| {
        let client = client.clone();
        Box::pin(async move { client.submit(task(), None).await.is_ok() })
    })
}

/// etcd puts through one connection per member, as laneq's client holds
/// one channel per node: a call goes to the member that answered last, and
/// a failure or a 2 s timeout moves the next call to the next member (etcd members forward
/// proposals to their leader, so any live one will do).
async fn etcd_put(c: &Cluster) -> Op {
    let mut members = Vec::new();
    for ep in &c.endpoints {
        let client = etcd_client::Client::connect([ep], None)
            .await
            .expect("connect to etcd");
        members.push(client.kv_client());
    }
    let members = Arc::new(members);
    let preferred = Arc::new(AtomicU64::new(0));
    Arc::new(move |client_index, seq| {
        let (members, preferred) = (members.clone(), preferred.clone());
        Box::pin(async move {
            let at = preferred.load(Ordering::Relaxed);
            let mut kv = members[at as usize % members.len()].clone();
            let key = format!("bench/{client_index}/{seq}");
            // The same 2 s per attempt as laneq's client: a proposal lost
            // with its leader otherwise waits for etcd's own 7 s timeout.
            let put = kv.put(key, vec![0x61u8; PAYLOAD], None);
            let ok = matches!(tokio::time::timeout(ATTEMPT, put).await, Ok(Ok(_)));
            if !ok {
                let _ =
                    preferred.compare_exchange(at, at + 1, Ordering::Relaxed, Ordering::Relaxed);
            }
            ok
        })
    })
}

/// A closed loop, and the CPU it cost per acknowledged op, in µs: the
/// user and system time of the cluster's processes and of this load
/// generator (which drives one system at a time) over the window. Also the
/// CPU, in ms, that the other cluster (`idle`), running side by side with
/// nothing to do, used in the same window: background work left over from
/// its own windows would slow this one.
async fn closed_loop_cpu(
    cluster: &Cluster,
    idle: Option<&Cluster>,
    clients: usize,
    window: Duration,
    op: Op,
) -> (Outcome, f64, Option<f64>) {
    let mut pids = cluster_pids(cluster);
    pids.push(std::process::id());
    let idle_pids = idle.map(cluster_pids).unwrap_or_default();
    let cpu = |pids: &[u32]| pids.iter().filter_map(|&p| cpu_time(p)).sum::<Duration>();
    let (before, idle_before) = (cpu(&pids), cpu(&idle_pids));
    let o = closed_loop(clients, window, op).await;
    let used = cpu(&pids).saturating_sub(before);
    let per_op = used.as_secs_f64() * 1e6 / o.ok.max(1) as f64;
    let idle_ms = idle.map(|_| cpu(&idle_pids).saturating_sub(idle_before).as_secs_f64() * 1e3);
    (o, per_op, idle_ms)
}

fn cluster_pids(cluster: &Cluster) -> Vec<u32> {
    (0..3).filter_map(|i| cluster.pid(i)).collect()
}

/// One closed-loop window of the submit scenario, with what was measured
/// beside it.
pub(crate) struct Window {
    pub outcome: Outcome,
    /// CPU per acknowledged op, in µs (see [`closed_loop_cpu`]).
    cpu_us: f64,
    /// CPU that the idle cluster used meanwhile, in ms (none without one).
    idle_ms: Option<f64>,
    /// The first-touch cost sampled during the window, in µs per page.
    touch_us: f64,
}

/// One window of `op` on `cluster` with `clients` clients, sampling the
/// first-touch cost meanwhile; its JSON row goes into `rows`.
pub(crate) async fn submit_window(
    system: &str,
    cluster: &Cluster,
    idle: Option<&Cluster>,
    clients: usize,
    window: Duration,
    op: Op,
    rows: &mut Vec<Value>,
) -> Window {
    let touch = TouchSampler::start();
    let (outcome, cpu_us, idle_ms) = closed_loop_cpu(cluster, idle, clients, window, op).await;
    let touch_us = touch.finish();
    let mut r = row("submit", system, clients, &outcome);
    r["cpu_us_per_op"] = json!(cpu_us.round());
    r["idle_peer_cpu_ms"] = json!(idle_ms.map(f64::round));
    r["first_touch_us"] = json!(round2(touch_us));
    rows.push(r);
    Window {
        outcome,
        cpu_us,
        idle_ms,
        touch_us,
    }
}

fn row(scenario: &str, system: &str, clients: usize, o: &Outcome) -> Value {
    json!({
        "scenario": scenario, "system": system, "clients": clients,
        "ops_per_s": o.per_s().round(), "p50_ms": o.pct_ms(50.0), "p99_ms": o.pct_ms(99.0),
        "p999_ms": o.pct_ms(99.9), "errors": o.errors,
    })
}

/// Scenario 1: single submits of a 256 B payload against etcd puts of a
/// 256 B value, at 1, 16, 64 and 256 clients; then laneq's batch submits.
pub async fn submit(args: &Args) -> Vec<Value> {
    let counts = &args.clients;
    let mut rows = Vec::new();
    let mut windows: HashMap<(&str, usize), Window> = HashMap::new();
    let mut batches: Vec<(usize, Outcome)> = Vec::new();
    // Both clusters run side by side (the idle one costs next to nothing),
    // and each client count runs on laneq then at once on etcd: a change in
    // the machine's speed during the run then shifts both, not the ratio
    // (see bench/RESULTS.md, "Reading the figures").
    let etcd = if args.laneq_only {
        None
    } else {
        let etcd = Cluster::etcd(&args.etcd_bin, false).await;
        let op = etcd_put(&etcd).await;
        Some((etcd, op))
    };
    {
        let laneq = Cluster::laneq(&args.laneq_bin).await;
        let op = laneq_submit(laneq_client(&laneq).await);
        let term_before = laneq.term().await;
        let window = args.window();
        for &c in counts {
            let idle = etcd.as_ref().map(|(etcd, _)| etcd);
            let w = submit_window("laneq", &laneq, idle, c, window, op.clone(), &mut rows).await;
            windows.insert(("laneq", c), w);
            if let Some((etcd, op)) = &etcd {
                let idle = Some(&laneq);
                let w = submit_window("etcd", etcd, idle, c, window, op.clone(), &mut rows).await;
                windows.insert(("etcd", c), w);
            }
        }
        let client = laneq_client(&laneq).await;
        for batch in [100usize, 1000] {
            let client = client.clone();
            let op: Op = Arc::new(move |_, _| {
                let client = client.clone();
                Box::pin(
                    async move { client.submit_batch(vec![task(); batch], None).await.is_ok() },
                )
            });
            let o = closed_loop(4, args.window(), op).await;
            let mut r = row(&format!("submit_batch_{batch}"), "laneq", 4, &o);
            r["tasks_per_s"] = json!((o.per_s() * batch as f64).round());
            rows.push(r);
            batches.push((batch, o));
        }
        // Under full load a node must not miss heartbeats: a new term here
        // would be a spurious election.
        let elections = laneq.term().await.saturating_sub(term_before);
        println!("laneq elections during the submit runs (new terms): {elections}\n");
        rows.push(
            json!({"scenario": "submit", "system": "laneq", "elections_under_load": elections}),
        );
    }
    if args.laneq_only {
        println!("## 1. Submit (laneq alone), 256 B, one request per call\n");
        println!(
            "| clients | laneq ops/s | p50 / p99 / p999 ms | CPU µs per op | first touch µs |"
        );
        println!("|---:|---:|---|---:|---:|");
        for &c in counts {
            let w = &windows[&("laneq", c)];
            let l = &w.outcome;
            println!(
                "| {c} | {:.0} | {:.2} / {:.2} / {:.2} | {:.0} | {:.2} |",
                l.per_s(),
                l.pct_ms(50.0),
                l.pct_ms(99.0),
                l.pct_ms(99.9),
                w.cpu_us,
                w.touch_us
            );
        }
        return rows;
    }
    drop(etcd);
    println!("## 1. Submit (laneq) against put (etcd), 256 B, one request per call\n");
    println!("| clients | laneq ops/s | etcd ops/s | ratio | laneq p50 / p99 / p999 ms | etcd p50 / p99 / p999 ms | CPU µs per op, laneq / etcd |");
    println!("|---:|---:|---:|---:|---|---|---|");
    for &c in counts {
        let (lw, ew) = (&windows[&("laneq", c)], &windows[&("etcd", c)]);
        let (l, e) = (&lw.outcome, &ew.outcome);
        println!(
            "| {c} | {:.0} | {:.0} | {:.2}x | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {:.0} / {:.0} |",
            l.per_s(),
            e.per_s(),
            l.per_s() / e.per_s().max(1e-9),
            l.pct_ms(50.0),
            l.pct_ms(99.0),
            l.pct_ms(99.9),
            e.pct_ms(50.0),
            e.pct_ms(99.0),
            e.pct_ms(99.9),
            lw.cpu_us,
            ew.cpu_us
        );
    }
    println!(
        "\nCPU per op: user + system time of the three nodes and of this load generator over \
         the window, divided by the acknowledged ops ({} cores in all).",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // One figure of a system's windows per client count, "a / b / c", with
    // `decimals` decimals.
    let per_count = |system: &str, figure: fn(&Window) -> f64, decimals: usize| {
        let each: Vec<String> = (counts.iter())
            .map(|&c| format!("{:.*}", decimals, figure(&windows[&(system, c)])))
            .collect();
        each.join(" / ")
    };
    let idle_ms = |w: &Window| w.idle_ms.unwrap_or(0.0);
    let touch_us = |w: &Window| w.touch_us;
    let at_counts = (counts.iter().map(usize::to_string).collect::<Vec<_>>()).join(" / ");
    println!(
        "CPU the idle cluster used during the other's windows, ms at {at_counts} clients: \
         etcd during laneq's {}; laneq during etcd's {}.",
        per_count("laneq", idle_ms, 0),
        per_count("etcd", idle_ms, 0)
    );
    println!(
        "CPU time of a first write to a fresh 4 KiB page, sampled during each window, µs at \
         {at_counts} clients: during laneq's {}; during etcd's {}.",
        per_count("laneq", touch_us, 2),
        per_count("etcd", touch_us, 2)
    );
    for (batch, o) in &batches {
        println!(
            "\nlaneq batch submits of {batch} tasks, 4 clients: {:.0} tasks/s (p50 {:.2} ms per batch)",
            o.per_s() * *batch as f64,
            o.pct_ms(50.0)
        );
    }
    println!();
    rows
}

/// Scenario 2: submit, lease and complete with worker loops in this
/// process; tasks/s at full speed, then submit-to-lease latency at half of
/// it. etcd runs its queue recipe: enqueue is a put under a prefix, dequeue
/// reads the oldest key and deletes it in a transaction that fails if
/// another worker took it first.
pub async fn end_to_end(args: &Args) -> Vec<Value> {
    let (submitters, workers) = (16usize, 8usize);
    let mut rows = Vec::new();
    let laneq = Cluster::laneq(&args.laneq_bin).await;
    let client = laneq_client(&laneq).await;
    let full = laneq_pipeline(&client, submitters, workers, None, args.window()).await;
    let half_rate = full.done_per_s / 2.0;
    let half = laneq_pipeline(&client, submitters, workers, Some(half_rate), args.window()).await;
    drop(laneq);
    let etcd = Cluster::etcd(&args.etcd_bin, false).await;
    let etcd_rate = etcd_queue(&etcd, submitters, workers, args.window()).await;
    drop(etcd);
    println!(
        "## 2. End to end: submit, lease, complete ({submitters} submitters, {workers} workers)\n"
    );
    println!("| system | load | tasks/s done | submit→lease p50 | p99 |\n|---|---|---:|---:|---:|");
    for (label, r) in [("100% (closed loop)", &full), ("50% of that rate", &half)] {
        println!(
            "| laneq | {label} | {:.0} | {:.2} ms | {:.2} ms |",
            r.done_per_s, r.p50_ms, r.p99_ms
        );
        rows.push(
            json!({"scenario": "e2e", "system": "laneq", "clients": submitters,
            "workers": workers, "load": label, "ops_per_s": r.done_per_s.round(),
            "p50_ms": r.p50_ms, "p99_ms": r.p99_ms}),
        );
    }
    println!("| etcd (queue recipe) | closed loop | {etcd_rate:.0} | | |");
    println!(
        "\nlaneq / etcd tasks/s: {:.2}x\n",
        full.done_per_s / etcd_rate.max(1e-9)
    );
    rows.push(
        json!({"scenario": "e2e", "system": "etcd", "clients": submitters,
        "workers": workers, "load": "closed loop", "ops_per_s": etcd_rate.round()}),
    );
    rows
}

struct Pipeline {
    done_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn laneq_pipeline(
    client: &Client,
    submitters: usize,
    workers: usize,
    rate: Option<f64>,
    window: Duration,
) -> Pipeline {
    let stop = Arc::new(AtomicBool::new(false));
    // When each task was sent, by the sequence number in its payload: known
    // before the submit, so a task leased before its submit is answered
    // still counts (keyed by id, such tasks were missed).
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let waits: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let seq = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    // Each run has its own queue, so that it starts without a backlog.
    let tag = if rate.is_some() { "half" } else { "full" };
    let queue = format!("e2e-{tag}");
    create_queue(client, &queue).await;
    for w in 0..workers {
        let (client, stop, sent, waits, done) = (
            client.clone(),
            stop.clone(),
            sent.clone(),
            waits.clone(),
            done.clone(),
        );
        let name = format!("bench-{tag}-{w}");
        let queue = queue.clone();
        handles.push(tokio::spawn(async move {
            let reg = WorkerProfile {
                name: name.clone(),
                queues: vec![queue],
                ..Default::default()
            };
            if client.register_worker(&reg).await.is_err() {
                return;
            }
            let ok = RunOutcome {
                succeeded: true,
                exit_code: Some(0),
                condition: String::new(),
            };
            while !stop.load(Ordering::Relaxed) {
                let Ok(leases) = client.lease(&name, 32, Duration::from_millis(500)).await else {
                    continue;
                };
                let now = Instant::now();
                // The completions of one lease batch go out together, as a
                // worker with that many slots would send them.
                let mut completions = Vec::new();
                for l in leases {
                    let Some(t) = l.task else { continue };
                    let at = seq_of(&t.payload).and_then(|n| sent.lock().expect("sent").remove(&n));
                    if let Some(at) = at {
                        waits.lock().expect("waits").push(now - at);
                    }
                    let (client, ok, done) = (client.clone(), ok.clone(), done.clone());
                    completions.push(tokio::spawn(async move {
                        let r = client.complete_task(t.id, l.fencing_token, &ok, None).await;
                        if r.is_ok() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                for c in completions {
                    let _ = c.await;
                }
            }
        }));
    }
    let start = Instant::now();
    for s in 0..submitters {
        let (client, stop, sent, seq) = (client.clone(), stop.clone(), sent.clone(), seq.clone());
        let queue = queue.clone();
        let pause = rate.map(|r| Duration::from_secs_f64(submitters as f64 / r.max(1.0)));
        handles.push(tokio::spawn(async move {
            let mut next = Instant::now() + Duration::from_millis(s as u64);
            while !stop.load(Ordering::Relaxed) {
                if let Some(p) = pause {
                    tokio::time::sleep_until(next.into()).await;
                    next += p;
                }
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let mut task = task_in(&queue);
                task.payload[..8].copy_from_slice(&n.to_le_bytes());
                sent.lock().expect("sent").insert(n, Instant::now());
                if client.submit(task, None).await.is_err() {
                    sent.lock().expect("sent").remove(&n);
                }
            }
        }));
    }
    let per_s = measure_window(window, start, &done, &stop, handles).await;
    let mut w = std::mem::take(&mut *waits.lock().expect("waits"));
    w.sort_unstable();
    Pipeline {
        done_per_s: per_s,
        p50_ms: ms(percentile(&w, 50.0)),
        p99_ms: ms(percentile(&w, 99.0)),
    }
}

/// The sequence number the end-to-end scenario puts in a task's payload.
fn seq_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

async fn etcd_queue(c: &Cluster, submitters: usize, workers: usize, window: Duration) -> f64 {
    let client = etcd_client::Client::connect(&c.endpoints, None)
        .await
        .expect("connect to etcd");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for s in 0..submitters {
        let (mut kv, stop) = (client.kv_client(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = kv
                    .put(format!("q/{s:03}-{n:012}"), vec![0x61u8; PAYLOAD], None)
                    .await;
                n += 1;
            }
        }));
    }
    let start = Instant::now();
    for _ in 0..workers {
        let (mut kv, stop, done) = (client.kv_client(), stop.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let oldest = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1);
            while !stop.load(Ordering::Relaxed) {
                let Ok(r) = kv.get("q/", Some(oldest.clone())).await else {
                    continue;
                };
                let Some(first) = r.kvs().first() else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let key = first.key().to_vec();
                let take = Txn::new()
                    .when([Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        first.mod_revision(),
                    )])
                    .and_then([TxnOp::delete(key, None)]);
                if kv.txn(take).await.is_ok_and(|t| t.succeeded()) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    measure_window(window, start, &done, &stop, handles).await
}

/// Lets the load run for `window`, then stops it and waits for its tasks;
/// returns what `done` counted per second since `start`.
async fn measure_window(
    window: Duration,
    start: Instant,
    done: &AtomicU64,
    stop: &AtomicBool,
    handles: Vec<tokio::task::JoinHandle<()>>,
) -> f64 {
    tokio::time::sleep(window).await;
    let counted = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    counted as f64 / elapsed.as_secs_f64()
}

/// Scenario 3: a steady submit load, then SIGKILL of the leader, `kills`
/// times: the time from the kill to the first acknowledged write sent after
/// it, and how many writes came back unknown (an error) meanwhile.
pub async fn failover(args: &Args) -> Vec<Value> {
    let kills = args.by_size(1, 3, 10);
    let mut rows = Vec::new();
    println!("## 3. Failover: SIGKILL of the leader under a steady write load, {kills} times\n");
    println!("| system | p50 | p99 | max | unknown writes |\n|---|---:|---:|---:|---:|");
    for system in ["laneq", "etcd", "etcd (10/100 ms)"] {
        let mut cluster = match system {
            "laneq" => Cluster::laneq(&args.laneq_bin).await,
            "etcd" => Cluster::etcd(&args.etcd_bin, false).await,
            _ => Cluster::etcd(&args.etcd_bin, true).await,
        };
        let op = match system {
            "laneq" => {
                // One attempt per write, as with etcd: the client's own
                // retries would hide the unknown outcomes.
                let client = laneq_client(&cluster).await;
                laneq_submit(client)
            }
            _ => etcd_put(&cluster).await,
        };
        let (times, unknown) = kill_leader_loop(&mut cluster, op, kills).await;
        let mut sorted = times.clone();
        sorted.sort_unstable();
        println!(
            "| {system} | {:.0} ms | {:.0} ms | {:.0} ms | {unknown} |",
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 99.0)),
            ms(*sorted.last().unwrap_or(&Duration::ZERO))
        );
        rows.push(
            json!({"scenario": "failover", "system": system, "clients": 4,
            "kills": kills, "p50_ms": ms(percentile(&sorted, 50.0)),
            "p99_ms": ms(percentile(&sorted, 99.0)),
            "max_ms": ms(*sorted.last().unwrap_or(&Duration::ZERO)),
            "unknown_writes": unknown,
            "each_ms": times.iter().map(|t| ms(*t)).collect::<Vec<_>>()}),
        );
    }
    println!();
    rows
}

async fn kill_leader_loop(cluster: &mut Cluster, op: Op, kills: usize) -> (Vec<Duration>, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    // (sent, answered, ok) of every write.
    let log: Arc<Mutex<Vec<(Instant, Instant, bool)>>> = Arc::default();
    let mut load = Vec::new();
    for c in 0..4 {
        let (op, stop, log) = (op.clone(), stop.clone(), log.clone());
        load.push(tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(10), op(c, seq)).await,
                    Ok(true)
                );
                log.lock().expect("log").push((t, Instant::now(), ok));
                if !ok {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seq += 1;
            }
        }));
    }
    let mut times = Vec::new();
    let mut unknown = 0;
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(leader) = cluster.leader().await else {
            continue;
        };
        let killed_at = Instant::now();
        cluster.kill(leader);
        let first = loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let log = log.lock().expect("log");
            let first = (log.iter())
                .filter(|(sent, _, ok)| *ok && *sent >= killed_at)
                .map(|(_, done, _)| *done)
                .min();
            if let Some(done) = first {
                break done;
            }
            if killed_at.elapsed() > Duration::from_secs(60) {
                break killed_at + Duration::from_secs(60);
            }
        };
        times.push(first - killed_at);
        unknown += (log.lock().expect("log").iter())
            .filter(|(sent, _, ok)| !*ok && *sent >= killed_at && *sent <= first)
            .count() as u64;
        cluster.start(leader);
        cluster.wait_ready().await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in load {
        let _ = h.await;
    }
    (times, unknown)
}

/// Scenario 5: 10,000 simulated workers heartbeat every 5 s through the
/// followers; each node's CPU and the Raft entries per second they cause.
pub async fn heartbeats(args: &Args) -> Vec<Value> {
    let workers: usize = args.by_size(200, 10_000, 10_000);
    let window = Duration::from_secs(args.by_size(2, 10, 30));
    let cluster = Cluster::laneq(&args.laneq_bin).await;
    let b = heartbeat_load(&cluster, workers, window, false).await;
    println!(
        "## 5. Heartbeats: {workers} workers every {:?}, sent to the followers\n",
        HEARTBEAT_PERIOD
    );
    b.print_cpu();
    println!(
        "\n{:.0} heartbeats/s answered; {:.1} Raft entries/s\n",
        b.beats_per_s, b.entries_per_s
    );
    vec![
        json!({"scenario": "heartbeats", "system": "laneq", "clients": HEARTBEAT_SENDERS,
        "workers": workers, "ops_per_s": b.beats_per_s.round(),
        "raft_entries_per_s": b.entries_per_s, "leader_cpu_pct": b.cpu[b.leader],
        "follower_cpu_pct": b.follower_cpu()}),
    ]
}

/// How often each simulated worker heartbeats.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);
/// How many tasks of this process send the heartbeats.
pub const HEARTBEAT_SENDERS: usize = 50;

/// What a heartbeat load cost the cluster.
pub struct Beats {
    /// Each node's CPU over the window, in % of one core.
    pub cpu: Vec<Option<f64>>,
    /// The leader's position in `cpu`.
    pub leader: usize,
    pub beats_per_s: f64,
    pub entries_per_s: f64,
}

impl Beats {
    pub fn follower_cpu(&self) -> Vec<Option<f64>> {
        (self.cpu.iter().enumerate())
            .filter(|(i, _)| *i != self.leader)
            .map(|(_, c)| *c)
            .collect()
    }

    pub fn print_cpu(&self) {
        println!("| node | role | CPU (% of one core) |\n|---:|---|---:|");
        for (i, c) in self.cpu.iter().enumerate() {
            println!(
                "| {} | {} | {} |",
                i + 1,
                if i == self.leader {
                    "leader"
                } else {
                    "follower"
                },
                c.map_or("?".into(), |c| format!("{c:.1}%"))
            );
        }
    }
}

/// A usage sample that moves with `n`, so that a history keeps a new
/// minimum, maximum and mean in every interval: one GPU, as an agent on a
/// GPU machine reports.
fn usage_sample(n: u64) -> laneq::proto::v1::Usage {
    let wave = n * 37 % 1000;
    laneq::proto::v1::Usage {
        cpu_pct: Some(wave as f64 / 10.0),
        memory_used_bytes: Some(8 << 30 | wave << 20),
        memory_total_bytes: Some(64 << 30),
        gpus: vec![laneq::proto::v1::GpuUsage {
            index: 0,
            name: "NVIDIA H100".into(),
            util_pct: (1000 - wave) as f64 / 10.0,
            memory_used_bytes: 20 << 30 | wave << 20,
            memory_total_bytes: 80 << 30,
        }],
        net_rx_bytes_per_s: Some(wave << 10),
        net_tx_bytes_per_s: Some(wave << 9),
        at_ms: laneq::clock::now_ms(),
    }
}

/// Registers `workers` workers on `cluster`, then has them heartbeat every
/// [`HEARTBEAT_PERIOD`] through the followers for `window`, with a usage
/// sample in each heartbeat if `usage`.
pub async fn heartbeat_load(
    cluster: &Cluster,
    workers: usize,
    window: Duration,
    usage: bool,
) -> Beats {
    let client = laneq_client(cluster).await;
    let leader = cluster.leader().await.expect("a leader");
    let followers: Vec<String> = (cluster.endpoints.iter().enumerate())
        .filter(|(i, _)| *i != leader)
        .map(|(_, e)| e.clone())
        .collect();
    let names: Vec<String> = (0..workers).map(|i| format!("sim-{i:05}")).collect();
    register_workers(&client, &names, window).await;
    let status = |i: usize| {
        let ep = cluster.endpoints[i].clone();
        async move { Client::node_status(&ep, Duration::from_secs(2)).await.ok() }
    };
    let log_before = status(leader).await.map_or(0, |s| s.last_log_index);
    let cpu_before: Vec<_> = (0..3).map(|i| cluster.pid(i).and_then(cpu_time)).collect();
    let start = Instant::now();
    let per = workers / HEARTBEAT_SENDERS;
    let mut handles = Vec::new();
    let sent = Arc::new(AtomicU64::new(0));
    for s in 0..HEARTBEAT_SENDERS {
        let ep = followers[s % followers.len()].clone();
        let names = names[s * per..(s + 1) * per].to_vec();
        let sent = sent.clone();
        handles.push(tokio::spawn(async move {
            let c = Client::with_deadline(&[ep], Duration::from_secs(5));
            let gap = HEARTBEAT_PERIOD / per as u32;
            let mut next = Instant::now() + gap * s as u32 / HEARTBEAT_SENDERS as u32;
            'outer: for round in 0u64.. {
                for n in &names {
                    tokio::time::sleep_until(next.into()).await;
                    next += gap;
                    if start.elapsed() >= window {
                        break 'outer;
                    }
                    let sample = usage.then(|| usage_sample(round * 131 + s as u64));
                    if c.heartbeat(n, vec![], sample).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let elapsed = start.elapsed();
    let log_after = status(leader).await.map_or(0, |s| s.last_log_index);
    let cpu = (0..3)
        .map(|i| {
            let after = cluster.pid(i).and_then(cpu_time)?;
            let before = cpu_before[i]?;
            Some((after - before).as_secs_f64() / elapsed.as_secs_f64() * 100.0)
        })
        .collect();
    let _ = client.list_queues(ReadConsistency::Stale).await;
    Beats {
        cpu,
        leader,
        beats_per_s: sent.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        entries_per_s: (log_after - log_before) as f64 / elapsed.as_secs_f64(),
    }
}

/// Registers every worker in `names`, 64 at a time, for as long as the
/// measurement after it takes (`window`).
async fn register_workers(client: &Client, names: &[String], window: Duration) {
    let register: Op = {
        let (client, names) = (client.clone(), Arc::new(names.to_vec()));
        let next = Arc::new(AtomicU64::new(0));
        Arc::new(move |_, _| {
            let (client, names, next) = (client.clone(), names.clone(), next.clone());
            Box::pin(async move {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(name) = names.get(i) else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return true;
                };
                let reg = WorkerProfile {
                    name: name.clone(),
                    queues: vec![QUEUE.into()],
                    ..Default::default()
                };
                client.register_worker(&reg).await.is_ok()
            })
        })
    };
    let _ = closed_loop(64, window, register).await;
}
