//! The workload: submitters, agent-like workers and an admin, each a tokio
//! task with its own seeded RNG, recording every operation in the history.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use laneq::client::workers::{Outcome as RunOutcome, Registration};
use laneq::client::{Client, ClientError, ReadConsistency, TaskFilter};
use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::{HeldTask, TaskSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tonic::Code;

use crate::history::{Grant, History, Outcome, Submit, TaskOp, TaskOpKind};

/// The queues the workload uses; `q2` is the one the admin drains.
pub const QUEUES: [&str; 3] = ["default", "q1", "q2"];
const DRAINED_QUEUE: &str = "q2";
/// Attempts at one submit key before it is left unknown.
const SUBMIT_TRIES: u32 = 6;

/// Where the run is: faults and load; healed, finishing the work; stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Faults,
    Drain,
    Stop,
}

/// The shared history and the run's clock.
#[derive(Clone)]
pub struct Recorder {
    began: Instant,
    history: Arc<Mutex<History>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            began: Instant::now(),
            history: Arc::default(),
        }
    }

    /// Milliseconds since the run began.
    pub fn now(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut History) -> T) -> T {
        f(&mut self.history.lock().unwrap())
    }

    pub fn take(&self) -> History {
        std::mem::take(&mut *self.history.lock().unwrap())
    }
}

/// Whether the write behind `e` definitely did not happen.
pub fn outcome_of<T>(r: &Result<T, ClientError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => match e.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal => Outcome::Unknown(e.to_string()),
            _ => Outcome::Refused(e.to_string()),
        },
    }
}

/// The settings every workload task shares.
#[derive(Clone)]
pub struct Load {
    pub seed: u64,
    pub endpoints: Vec<String>,
    pub recorder: Recorder,
    pub phase: watch::Receiver<Phase>,
    /// Mean pause between two submits of one submitter.
    pub submit_pause_ms: u64,
}

impl Load {
    fn rng(&self, stream: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream)
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn client(&self, deadline: Duration) -> Client {
        Client::with_deadline(&self.endpoints, deadline)
    }
}

struct Pending {
    key: String,
    queue: &'static str,
    tasks: usize,
    tries: u32,
    due_ms: u64,
}

/// Submits tasks (one, or a batch of five) at a steady pace while faults
/// run; retries every unknown outcome with the same key, and once the
/// cluster heals, retries them until each is known.
pub async fn submitter(load: Load, index: u64) {
    let mut rng = load.rng(100 + index);
    let client = load.client(Duration::from_secs(3));
    let mut retries: VecDeque<Pending> = VecDeque::new();
    let mut n = 0u64;
    while load.phase() == Phase::Faults {
        let pause = rng.random_range(load.submit_pause_ms / 2..=load.submit_pause_ms * 3 / 2);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let now = load.recorder.now();
        let mut p = match retries.front() {
            Some(p) if p.due_ms <= now => retries.pop_front().expect("front"),
            _ => {
                n += 1;
                Pending {
                    key: format!("s{}-{index}-{n}", load.seed),
                    queue: QUEUES[rng.random_range(0..QUEUES.len())],
                    tasks: if rng.random_ratio(1, 10) { 5 } else { 1 },
                    tries: 0,
                    due_ms: 0,
                }
            }
        };
        if let Outcome::Unknown(_) = submit(&client, &load.recorder, &mut p).await {
            if p.tries < SUBMIT_TRIES {
                p.due_ms = load.recorder.now() + 200;
                retries.push_back(p);
            }
        }
    }
    // Healed: every unknown key gets retried until the cluster answers.
    let patient = load.client(Duration::from_secs(10));
    for mut p in retries {
        while p.tries < SUBMIT_TRIES + 4 {
            if !matches!(
                submit(&patient, &load.recorder, &mut p).await,
                Outcome::Unknown(_)
            ) {
                break;
            }
        }
    }
}

async fn submit(client: &Client, rec: &Recorder, p: &mut Pending) -> Outcome {
    p.tries += 1;
    let spec = TaskSpec {
        queue: p.queue.to_string(),
        name: p.key.clone(),
        command: vec!["true".into()],
        payload: vec![7; 64],
        ..Default::default()
    };
    let sent_ms = rec.now();
    let (outcome, ids) = if p.tasks == 1 {
        let r = client.submit(spec, Some(p.key.clone())).await;
        (outcome_of(&r), r.map(|r| vec![r.id]).unwrap_or_default())
    } else {
        let r = client
            .submit_batch(vec![spec; p.tasks], Some(p.key.clone()))
            .await;
        (outcome_of(&r), r.map(|r| r.ids).unwrap_or_default())
    };
    let done_ms = rec.now();
    rec.with(|h| {
        h.count("submit", &outcome);
        h.submits.push(Submit {
            key: p.key.clone(),
            tasks: p.tasks,
            sent_ms,
            done_ms,
            outcome: outcome.clone(),
            ids,
        });
    });
    outcome
}

/// An agent-like worker: leases up to four tasks at a time through any
/// node, starts and completes each with its fencing token, and heartbeats
/// the tasks it holds to every node in turn (followers too). It works while
/// faults run and while the cluster drains.
pub async fn worker(load: Load, index: u64, nodes: Vec<String>) {
    let name = format!("w{index}");
    let mut rng = load.rng(200 + index);
    let client = load.client(Duration::from_secs(4));
    let registration = Registration {
        name: name.clone(),
        ip: "127.0.0.1".into(),
        queues: QUEUES.iter().map(|q| q.to_string()).collect(),
        ..Default::default()
    };
    while load.phase() != Phase::Stop {
        let r = client.register_worker(&registration).await;
        load.recorder.with(|h| h.count("register", &outcome_of(&r)));
        if r.is_ok() {
            break;
        }
    }
    let held: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let beats = tokio::spawn(heartbeats(load.clone(), name.clone(), nodes, held.clone()));
    while load.phase() != Phase::Stop {
        let sent_ms = load.recorder.now();
        let r = client.lease(&name, 4, Duration::from_secs(1)).await;
        let done_ms = load.recorder.now();
        load.recorder.with(|h| h.count("lease", &outcome_of(&r)));
        let Ok(leases) = r else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut runs = Vec::new();
        for lease in leases {
            let Some(task) = lease.task else { continue };
            let token = lease.fencing_token;
            load.recorder.with(|h| {
                h.grants.push(Grant {
                    task: task.id,
                    worker: name.clone(),
                    token,
                    sent_ms,
                    done_ms,
                })
            });
            held.lock().unwrap().insert(task.id, token);
            let work_ms = rng.random_range(0..40);
            runs.push(tokio::spawn(run_task(
                load.clone(),
                client.clone(),
                name.clone(),
                (task.id, token),
                work_ms,
                held.clone(),
            )));
        }
        for run in runs {
            let _ = run.await;
        }
    }
    beats.abort();
}

/// Starts, "runs" and completes one leased task, recording each call.
async fn run_task(
    load: Load,
    client: Client,
    worker: String,
    (task, token): (u64, u64),
    work_ms: u64,
    held: Arc<Mutex<HashMap<u64, u64>>>,
) {
    let rec = &load.recorder;
    let op = |kind, sent_ms, outcome: &Outcome| TaskOp {
        kind,
        task,
        worker: worker.clone(),
        token,
        sent_ms,
        done_ms: rec.now(),
        outcome: outcome.clone(),
    };
    let sent_ms = rec.now();
    let r = client.start_task(task, token).await;
    let outcome = outcome_of(&r);
    rec.with(|h| {
        h.count("start", &outcome);
        h.task_ops.push(op(TaskOpKind::Start, sent_ms, &outcome));
    });
    if let Outcome::Refused(_) = outcome {
        held.lock().unwrap().remove(&task);
        return;
    }
    tokio::time::sleep(Duration::from_millis(work_ms)).await;
    let key = format!("{worker}-{task}-{token}-done");
    let done = RunOutcome {
        succeeded: true,
        exit_code: Some(0),
        condition: String::new(),
    };
    for _ in 0..5 {
        let sent_ms = rec.now();
        let r = client
            .complete_task(task, token, &done, Some(key.clone()))
            .await;
        let outcome = outcome_of(&r);
        rec.with(|h| {
            h.count("complete", &outcome);
            h.task_ops.push(op(TaskOpKind::Complete, sent_ms, &outcome));
        });
        if !matches!(outcome, Outcome::Unknown(_)) || load.phase() == Phase::Stop {
            break;
        }
    }
    held.lock().unwrap().remove(&task);
}

/// Renews the worker's leases every half second, through each node in turn.
async fn heartbeats(
    load: Load,
    worker: String,
    nodes: Vec<String>,
    held: Arc<Mutex<HashMap<u64, u64>>>,
) {
    let clients: Vec<Client> = (nodes.iter())
        .map(|n| Client::with_deadline(std::slice::from_ref(n), Duration::from_secs(1)))
        .collect();
    for turn in 0usize.. {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let tasks: Vec<HeldTask> = (held.lock().unwrap().iter())
            .map(|(&id, &fencing_token)| HeldTask {
                id,
                fencing_token,
                iteration: None,
            })
            .collect();
        let r = clients[turn % clients.len()]
            .heartbeat(&worker, tasks, None)
            .await;
        load.recorder
            .with(|h| h.count("heartbeat", &outcome_of(&r)));
    }
}

/// Moves queued tasks about, between queues too, cancels a few, and drains
/// and reactivates `q2`. Once the faults stop, it reactivates every queue.
pub async fn admin(load: Load) {
    let mut rng = load.rng(300);
    let client = load.client(Duration::from_secs(3));
    let mut q2_active = true;
    while load.phase() == Phase::Faults {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..600))).await;
        let roll = rng.random_range(0..100);
        if roll < 15 {
            let r = client.set_queue_active(DRAINED_QUEUE, !q2_active).await;
            let kind = if q2_active { "drain" } else { "activate" };
            load.recorder.with(|h| h.count(kind, &outcome_of(&r)));
            if r.is_ok() {
                q2_active = !q2_active;
            }
            continue;
        }
        let queue = QUEUES[rng.random_range(0..QUEUES.len())];
        let filter = TaskFilter {
            queue: queue.into(),
            state: "queued".into(),
            page_size: 50,
            ..Default::default()
        };
        let Ok(page) = client.list_tasks(&filter, "", ReadConsistency::Stale).await else {
            continue;
        };
        if page.tasks.is_empty() {
            continue;
        }
        let ids: Vec<u64> = page.tasks.iter().map(|t| t.id).collect();
        let id = ids[rng.random_range(0..ids.len())];
        let other = ids[rng.random_range(0..ids.len())];
        if roll < 22 {
            let r = client.cancel_task(id, "chaos admin").await;
            load.recorder.with(|h| h.count("cancel", &outcome_of(&r)));
            continue;
        }
        let to = match rng.random_range(0..8) {
            0 => To::Front(true),
            1 => To::Back(true),
            2 => To::Position(rng.random_range(1..=ids.len() as u64 + 2)),
            3 => To::Forward(rng.random_range(1..5)),
            4 => To::Backward(rng.random_range(1..5)),
            5 => To::Before(other),
            6 => To::After(other),
            _ => To::Queue(QUEUES[rng.random_range(0..QUEUES.len())].into()),
        };
        let r = client.move_task(id, to).await;
        load.recorder.with(|h| h.count("move", &outcome_of(&r)));
    }
    let patient = load.client(Duration::from_secs(10));
    for _ in 0..10 {
        let r = patient.set_queue_active(DRAINED_QUEUE, true).await;
        let outcome = outcome_of(&r);
        load.recorder.with(|h| h.count("activate", &outcome));
        if !matches!(outcome, Outcome::Unknown(_)) {
            break;
        }
    }
}
