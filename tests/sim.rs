//! A seeded, deterministic simulation of a whole laneq cluster in one
//! process. Three or five real `RaftNode`s (the real `Store` on temp dirs,
//! `LogStore`, `StateMachine` and Raft, and the real write path: forwarding,
//! leader waits, cut-off detection, the coalescer, read barriers) run over a
//! simulated network that delays, reorders, loses and partitions messages,
//! while a nemesis crashes and restarts nodes and clients submit, lease, run
//! and complete tasks and read linearizably. Then everything heals and the checker (`sim/check.rs`,
//! with the properties in `history/check/` that the chaos run shares)
//! judges the replicas and the history. This binary also runs those
//! properties' own tests.
//!
//! A run is a function of its seed: one thread, tokio's paused clock,
//! openraft's random draws seeded (`laneq::raft::runtime`), and storage that
//! does its IO inline. A failure prints its seed, and
//! `LANEQ_SIM_SEED=<seed> cargo test --test sim` replays it exactly.
//!
//! Knobs: `LANEQ_SIM_SEEDS` (how many seeds), `LANEQ_SIM_FIRST_SEED` (from
//! which, 1 by default), `LANEQ_SIM_SEED` (just that one), `LANEQ_SIM_NODES`
//! (3 or 5; by default odd seeds run 3 nodes and even seeds 5),
//! `LANEQ_SIM_TRACE=1` (print every event as it happens: what the network
//! carried, what the nemesis did, what each write got).

#[path = "sim/check.rs"]
mod check;
#[path = "sim/client.rs"]
mod client;
#[path = "sim/cluster.rs"]
mod cluster;
#[path = "history/mod.rs"]
mod history;
#[path = "sim/nemesis.rs"]
mod nemesis;
#[path = "sim/net.rs"]
mod net;
#[path = "sim/peers.rs"]
mod peers;
#[path = "sim/workload.rs"]
mod workload;
#[path = "sim/world.rs"]
mod world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::Cluster;
use world::World;

/// Seeds per run by default. A seed costs about 0.9 s of CPU in a debug
/// build, so these take 70 to 90 s on two cores.
const SEEDS_DEFAULT: u64 = 150;
/// How long (simulated) the nemesis and the workload run together.
const CHAOS: Duration = Duration::from_secs(5);

/// What a seed's run produced: the trace's hash and length, and, when asked
/// for, its events.
struct Run {
    trace: String,
    events: u64,
    kept: Option<Vec<String>>,
    log_index: u64,
    writes: usize,
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

fn nodes_for(seed: u64) -> u64 {
    match env_u64("LANEQ_SIM_NODES") {
        Some(n @ (3 | 5)) => n,
        Some(n) => panic!("LANEQ_SIM_NODES={n}: the simulation runs 3 or 5 nodes"),
        None if seed % 2 == 1 => 3,
        None => 5,
    }
}

/// Runs one seed on this thread; a panic or a violation is an `Err` that
/// says how to replay it.
fn run_seed(seed: u64, keep_events: bool) -> Result<Run, String> {
    let nodes = nodes_for(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    laneq::raft::runtime::seed_thread_rng(seed);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(simulate(seed, nodes, keep_events))
    }));
    let why = match result {
        Ok(Ok(run)) => return Ok(run),
        Ok(Err(violations)) => violations,
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".to_string()),
    };
    Err(format!(
        "seed {seed} ({nodes} nodes) failed: {why}\n  replay: LANEQ_SIM_SEED={seed} \
         LANEQ_SIM_NODES={nodes} cargo test --test sim seeds_keep -- --nocapture \
         (add LANEQ_SIM_TRACE=1 to see its events)"
    ))
}

async fn simulate(seed: u64, nodes: u64, keep_events: bool) -> Result<Run, String> {
    let world = Arc::new(World::new(seed, nodes, keep_events));
    let mut cluster = Cluster::start(world.clone()).await;
    workload::setup(&world).await?;
    let workload = workload::spawn(&world);
    nemesis::run(&mut cluster, CHAOS).await;
    cluster.heal().await;
    world.stop();
    for task in workload {
        task.await.expect("a workload task panicked");
    }
    // The healed cluster must take a write again.
    let mut last = client::Client::patient(world.clone(), "after-heal");
    let task = laneq::model::NewTask {
        command: vec!["true".into()],
        ..Default::default()
    };
    let op = laneq::model::Op::SubmitTasks { tasks: vec![task] };
    match last.write(op).await {
        Some((r, _)) if r.result.is_ok() => {}
        other => {
            let stopped = cluster.stopped();
            return Err(format!(
                "the healed cluster takes no write ({other:?}); {stopped:?}"
            ));
        }
    }
    let log_index = cluster.converge().await?;
    let replicas = cluster.states();
    let reloaded = cluster.reload().await;
    let history = world.history.lock().unwrap().clone();
    let violations = check::check(&history, &replicas, &reloaded);
    if !violations.is_empty() {
        return Err(violations.join("\n  "));
    }
    let (trace, events, kept) = world.trace();
    Ok(Run {
        trace,
        events,
        kept,
        log_index,
        writes: history.records.len(),
    })
}

/// The seeds to run: `LANEQ_SIM_SEED` alone, or `LANEQ_SIM_SEEDS` of them
/// from `LANEQ_SIM_FIRST_SEED` (1) on.
fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("LANEQ_SIM_SEED") {
        return vec![seed];
    }
    let first = env_u64("LANEQ_SIM_FIRST_SEED").unwrap_or(1);
    let count = env_u64("LANEQ_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT);
    (first..first + count).collect()
}

#[test]
fn seeds_keep_every_guarantee() {
    let seeds = seeds();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(seeds.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { break };
                let seed_started = Instant::now();
                match run_seed(seed, false) {
                    Ok(run) => eprintln!(
                        "sim seed {seed}: ok in {:?}: {} writes, log index {}, {} events, \
                         trace {}",
                        seed_started.elapsed(),
                        run.writes,
                        run.log_index,
                        run.events,
                        &run.trace[..16]
                    ),
                    Err(e) => {
                        eprintln!("{e}");
                        failures.lock().unwrap().push(e);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "sim: {} seed(s) in {:?} on {threads} thread(s), {} failed",
        seeds.len(),
        started.elapsed(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Two runs of a seed are the same run: the trace (every message delivered
/// or lost, every nemesis step, every write's outcome, each at its
/// simulated time) hashes the same. Seeds 41 and 42 run 3 and 5 nodes.
#[test]
fn a_seed_replays_the_same_trace() {
    let seeds = match env_u64("LANEQ_SIM_SEED") {
        Some(seed) => vec![seed],
        None => vec![41, 42],
    };
    for seed in seeds {
        let first = run_seed(seed, true).unwrap_or_else(|e| panic!("{e}"));
        let second = run_seed(seed, true).unwrap_or_else(|e| panic!("{e}"));
        assert!(first.events > 500, "seed {seed} recorded its run");
        if first.trace == second.trace {
            continue;
        }
        let (a, b) = (first.kept.unwrap(), second.kept.unwrap());
        let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        panic!(
            "seed {seed} ran twice with different traces ({} and {} events); they part at \
             event {at}:\n  first:  {:?}\n  second: {:?}",
            first.events,
            second.events,
            a.get(at),
            b.get(at)
        );
    }
}
