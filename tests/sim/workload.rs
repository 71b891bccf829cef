//! What the simulated users do: two submitters submit, cancel, dequeue and
//! move tasks; two workers lease, start, run and complete them (sometimes
//! stalling past their lease, or giving a lease back) while they heartbeat;
//! an operator drains, activates and clears the second queue; and an expiry
//! loop expires leases, as the leader's does. Every write goes through a
//! [`Client`] and lands in the history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use laneq::model::spec::QueueSpec;
use laneq::model::worker::{HeartbeatReport, HeldTask, Registration};
use laneq::model::{MoveTo, NewTask, Op, Reply, Response};
use rand::seq::IndexedRandom;
use rand::Rng;
use tokio::task::JoinHandle;

use super::client::Client;
use super::world::World;

pub const WORKERS: [&str; 2] = ["w1", "w2"];
const SUBMITTERS: [&str; 2] = ["s1", "s2"];
const LEASE_TTL_MS: u64 = 1500;
const WORKER_TIMEOUT_MS: u64 = 3000;
const HEARTBEAT_EVERY: Duration = Duration::from_millis(300);
const EXPIRY_EVERY: Duration = Duration::from_millis(250);

/// Creates a second queue and registers the workers. The network is
/// healthy then, so every write must succeed.
pub async fn setup(world: &Arc<World>) -> Result<(), String> {
    let mut client = Client::new(world.clone(), "setup");
    let mut ops = vec![Op::CreateQueue {
        name: "gpu".into(),
        pool: "default".into(),
        spec: QueueSpec {
            action_concurrency: 2,
            ..QueueSpec::default()
        },
    }];
    ops.extend(WORKERS.iter().map(|w| {
        Op::RegisterWorker(Registration {
            name: w.to_string(),
            ip: "10.0.0.1".into(),
            pool: "default".into(),
            queues: vec!["gpu".into(), "default".into()],
            slots: 2,
            ..Registration::default()
        })
    }));
    for op in ops {
        match client.write(op.clone()).await {
            Some((Response { result: Ok(_), .. }, _)) => {}
            other => return Err(format!("setup write {op:?} failed: {other:?}")),
        }
    }
    Ok(())
}

/// Starts the submitters, the workers and the expiry loop. They run until
/// [`World::stop`], then finish the write in hand.
pub fn spawn(world: &Arc<World>) -> Vec<JoinHandle<()>> {
    let mut tasks: Vec<JoinHandle<()>> = SUBMITTERS
        .iter()
        .map(|name| tokio::spawn(submitter(world.clone(), name)))
        .collect();
    tasks.extend(
        WORKERS
            .iter()
            .map(|name| tokio::spawn(worker(world.clone(), name))),
    );
    tasks.push(tokio::spawn(operator(world.clone())));
    tasks.push(tokio::spawn(expiry(world.clone())));
    tasks.push(tokio::spawn(reader(world.clone())));
    tasks
}

async fn pause(world: &World, from_ms: u64, to_ms: u64) {
    let ms = world.rand(|r| r.random_range(from_ms..to_ms));
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn submitter(world: Arc<World>, name: &'static str) {
    let mut client = Client::new(world.clone(), name);
    let mut submitted: Vec<u64> = Vec::new();
    while !world.stopping() {
        let op = next_op(&world, &submitted);
        if let Some((r, _)) = client.write(op).await {
            if let Ok(Reply::TasksSubmitted { ids }) = r.result {
                submitted.extend(ids);
            }
        }
        pause(&world, 10, 80).await;
    }
}

/// Mostly a submit of one to three tasks; otherwise a cancel, dequeue or
/// move of a task this submitter made (in whatever state it is now).
fn next_op(world: &World, submitted: &[u64]) -> Op {
    world.rand(|r| {
        let roll = r.random_range(0..100);
        let Some(&id) = submitted.choose(r).filter(|_| roll >= 70) else {
            let tasks = (0..r.random_range(1..=3))
                .map(|_| NewTask {
                    queue: ["", "default", "gpu"].choose(r).unwrap().to_string(),
                    run: ["", "r1", "r2"].choose(r).unwrap().to_string(),
                    name: "train".into(),
                    command: vec!["train.py".into()],
                    max_attempts: [0, 1, 2].choose(r).copied().unwrap(),
                    ..NewTask::default()
                })
                .collect();
            return Op::SubmitTasks { tasks };
        };
        let reason = "sim".to_string();
        match roll {
            70..80 => Op::CancelTask { id, reason },
            80..88 => Op::DequeueTask { id, reason },
            _ => {
                let to = [
                    MoveTo::Front,
                    MoveTo::Back,
                    MoveTo::Forward(1),
                    MoveTo::Position(0),
                    MoveTo::Queue("gpu".into()),
                    MoveTo::Queue("default".into()),
                ];
                Op::MoveTask {
                    id,
                    to: to.choose(r).unwrap().clone(),
                }
            }
        }
    })
}

/// A worker's tasks and tokens, and whether it is stalled (then it sends no
/// heartbeats either, like a paused process).
#[derive(Default)]
struct Held {
    tasks: Mutex<BTreeMap<u64, u64>>,
    stalled: AtomicBool,
}

async fn worker(world: Arc<World>, name: &'static str) {
    let held = Arc::new(Held::default());
    let beats = tokio::spawn(heartbeats(world.clone(), name, held.clone()));
    let mut client = Client::new(world.clone(), name);
    while !world.stopping() {
        let op = Op::LeaseTasks {
            worker: name.to_string(),
            max_tasks: 2,
            ttl_ms: LEASE_TTL_MS,
        };
        let leases = match client.write(op).await {
            Some((
                Response {
                    result: Ok(Reply::Leased { leases }),
                    ..
                },
                _,
            )) => leases,
            _ => Vec::new(),
        };
        if leases.is_empty() {
            pause(&world, 50, 150).await;
        }
        for &(id, token, _) in &leases {
            held.tasks.lock().unwrap().insert(id, token);
        }
        for (id, token, _) in leases {
            run_task(&world, &mut client, &held, id, token).await;
            held.tasks.lock().unwrap().remove(&id);
        }
    }
    beats.await.expect("heartbeat loop");
}

/// Starts, runs and completes (or releases) one leased task. Now and then
/// the worker stalls past its lease first, so that its token is stale by
/// the time it reports.
async fn run_task(world: &World, client: &mut Client, held: &Held, id: u64, token: u64) {
    if world.chance(100) {
        held.stalled.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(LEASE_TTL_MS * 2)).await;
        held.stalled.store(false, Ordering::Relaxed);
    }
    let fencing_token = token;
    client.write(Op::StartTask { id, fencing_token }).await;
    if world.chance(300) {
        let iteration = 1;
        let op = Op::ReportProgress {
            id,
            fencing_token,
            iteration,
        };
        client.write(op).await;
    }
    pause(world, 0, 300).await;
    let op = if world.chance(100) {
        let reason = String::new();
        Op::ReleaseTask {
            id,
            fencing_token,
            reason,
        }
    } else {
        let succeeded = world.chance(800);
        Op::CompleteTask {
            id,
            fencing_token,
            succeeded,
            exit_code: Some(if succeeded { 0 } else { 1 }),
            condition: String::new(),
        }
    };
    client.write(op).await;
}

async fn heartbeats(world: Arc<World>, name: &'static str, held: Arc<Held>) {
    let mut client = Client::new(world.clone(), &format!("{name}-hb"));
    while !world.stopping() {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        if held.stalled.load(Ordering::Relaxed) {
            continue;
        }
        let tasks = held.tasks.lock().unwrap().clone();
        let report = HeartbeatReport {
            worker: name.to_string(),
            tasks: tasks
                .into_iter()
                .map(|(id, fencing_token)| HeldTask {
                    id,
                    fencing_token,
                    iteration: None,
                })
                .collect(),
            usage: None,
        };
        let op = Op::WorkerHeartbeats {
            reports: vec![report],
            ttl_ms: LEASE_TTL_MS,
        };
        client.write(op).await;
    }
}

/// Now and then drains the second queue (its leased tasks finish, new
/// submits are refused), activates it again or clears what it has queued.
async fn operator(world: Arc<World>) {
    let mut client = Client::new(world.clone(), "operator");
    while !world.stopping() {
        pause(&world, 300, 900).await;
        let name = "gpu".to_string();
        let op = match world.rand(|r| r.random_range(0..3)) {
            0 => Op::DrainQueue { name },
            1 => Op::ActivateQueue { name },
            _ => Op::ClearQueue { name },
        };
        client.write(op).await;
    }
}

async fn expiry(world: Arc<World>) {
    let mut client = Client::new(world.clone(), "expiry");
    while !world.stopping() {
        tokio::time::sleep(EXPIRY_EVERY).await;
        let op = Op::ExpireLeases {
            worker_timeout_ms: WORKER_TIMEOUT_MS,
        };
        client.write(op).await;
    }
}

/// Now and then reads the applied index linearizably, at any node.
async fn reader(world: Arc<World>) {
    let mut client = Client::new(world.clone(), "reader");
    while !world.stopping() {
        pause(&world, 50, 250).await;
        client.read().await;
    }
}
