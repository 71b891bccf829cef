//! The workload: submitters, agent-like workers and an admin, each a tokio
//! task with its own seeded RNG, recording every operation in the shared
//! history (`tests/history/`). The chaos run cannot see the log, so its
//! records carry no entry, and keys only where the workload chose them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use laneq::client::workers::{Outcome as RunOutcome, WorkerProfile};
use laneq::client::{Client, ClientError, ClientOptions, ReadConsistency, TaskFilter, TlsFiles};
use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::{HeldTask, TaskSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tonic::Code;

use crate::history::{Call, History, Lease, Outcome, Record, Reply};

/// The queues the workload uses; `q2` is the one the admin drains.
pub const QUEUES: [&str; 3] = ["default", "q1", "q2"];
const DRAINED_QUEUE: &str = "q2";
/// The admin's name in the history.
const ADMIN: &str = "admin";
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

    /// Records `call` by `client`, sent at `sent_ms` and ended now.
    pub fn record(&self, client: &str, key: &str, call: Call, sent_ms: u64, outcome: &Outcome) {
        let record = Record {
            client: client.to_string(),
            key: key.to_string(),
            call,
            sent_ms,
            done_ms: self.now(),
            outcome: outcome.clone(),
            entry: None,
        };
        self.with(|h| h.records.push(record));
    }

    pub fn take(&self) -> History {
        std::mem::take(&mut *self.history.lock().unwrap())
    }
}

/// How the client saw `r`: a yes with what `reply` makes of it, or
/// whether the write behind the error definitely did not happen.
pub fn outcome_of<T>(r: &Result<T, ClientError>, reply: impl FnOnce(&T) -> Reply) -> Outcome {
    match r {
        Ok(v) => Outcome::Ok(reply(v)),
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

/// How the client saw `r`, when a yes carries nothing the checks use.
pub fn done<T>(r: &Result<T, ClientError>) -> Outcome {
    outcome_of(r, |_| Reply::Done)
}

/// The settings every workload task shares.
#[derive(Clone)]
pub struct Load {
    pub seed: u64,
    pub endpoints: Vec<String>,
    /// The admin's token, which every call of the workload carries.
    pub credentials: laneq::client::Credentials,
    pub recorder: Recorder,
    pub phase: watch::Receiver<Phase>,
    /// Mean pause between two submits of one submitter.
    pub submit_pause_ms: u64,
    /// TLS to the nodes; `None`: plaintext.
    pub tls: Option<TlsFiles>,
}

impl Load {
    fn rng(&self, stream: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream)
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn client(&self, deadline: Duration) -> Client {
        self.client_of(&self.endpoints, deadline)
    }

    fn client_of(&self, endpoints: &[String], deadline: Duration) -> Client {
        let options = ClientOptions {
            deadline,
            tls: self.tls.clone(),
            credentials: self.credentials.clone(),
        };
        Client::connect(endpoints, options).expect("the cluster's TLS files")
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
    let submitted = |ids: Vec<u64>| Reply::Submitted { ids };
    let outcome = if p.tasks == 1 {
        let r = client.submit(spec, Some(p.key.clone())).await;
        outcome_of(&r, |r| submitted(vec![r.id]))
    } else {
        let r = client
            .submit_batch(vec![spec; p.tasks], Some(p.key.clone()))
            .await;
        outcome_of(&r, |r| submitted(r.ids.clone()))
    };
    let call = Call::Submit { tasks: p.tasks };
    rec.record("submitter", &p.key, call, sent_ms, &outcome);
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
    let registration = WorkerProfile {
        name: name.clone(),
        ip: "127.0.0.1".into(),
        queues: QUEUES.iter().map(|q| q.to_string()).collect(),
        ..Default::default()
    };
    while load.phase() != Phase::Stop {
        let sent_ms = load.recorder.now();
        let r = client.register_worker(&registration).await;
        let call = Call::Register {
            worker: name.clone(),
        };
        (load.recorder).record(&name, "", call, sent_ms, &done(&r));
        if r.is_ok() {
            break;
        }
    }
    let held: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let beats = tokio::spawn(heartbeats(load.clone(), name.clone(), nodes, held.clone()));
    while load.phase() != Phase::Stop {
        let sent_ms = load.recorder.now();
        let r = client.lease(&name, 4, Duration::from_secs(1)).await;
        let outcome = outcome_of(&r, |leases| Reply::Leased {
            leases: (leases.iter())
                .filter_map(|l| {
                    let task = l.task.as_ref()?.id;
                    let token = l.fencing_token;
                    Some(Lease { task, token })
                })
                .collect(),
        });
        let call = Call::Lease {
            worker: name.clone(),
        };
        load.recorder.record(&name, "", call, sent_ms, &outcome);
        let Ok(leases) = r else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut runs = Vec::new();
        for lease in leases {
            let Some(task) = lease.task else { continue };
            let token = lease.fencing_token;
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
    let sent_ms = rec.now();
    let r = client.start_task(task, token, Vec::new()).await;
    let outcome = done(&r);
    rec.record(&worker, "", Call::Start { task, token }, sent_ms, &outcome);
    if let Outcome::Refused(_) = outcome {
        held.lock().unwrap().remove(&task);
        return;
    }
    tokio::time::sleep(Duration::from_millis(work_ms)).await;
    let key = format!("{worker}-{task}-{token}-done");
    let ran = RunOutcome {
        succeeded: true,
        exit_code: Some(0),
        condition: String::new(),
    };
    for _ in 0..5 {
        let sent_ms = rec.now();
        let r = client
            .complete_task(task, token, &ran, Some(key.clone()))
            .await;
        let outcome = done(&r);
        let succeeded = true;
        let call = Call::Complete {
            task,
            token,
            succeeded,
        };
        rec.record(&worker, &key, call, sent_ms, &outcome);
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
        .map(|n| load.client_of(std::slice::from_ref(n), Duration::from_secs(1)))
        .collect();
    for turn in 0usize.. {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent_ms = load.recorder.now();
        let tasks: Vec<HeldTask> = (held.lock().unwrap().iter())
            .map(|(&id, &fencing_token)| HeldTask {
                id,
                fencing_token,
                iteration: None,
            })
            .collect();
        let renews = tasks.iter().map(|t| (t.id, t.fencing_token)).collect();
        let r = clients[turn % clients.len()]
            .heartbeat(&worker, tasks, None)
            .await;
        let call = Call::Heartbeat {
            worker: worker.clone(),
            held: renews,
        };
        (load.recorder).record(&worker, "", call, sent_ms, &done(&r));
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
            let sent_ms = load.recorder.now();
            let r = client.set_queue_active(DRAINED_QUEUE, !q2_active).await;
            let queue = DRAINED_QUEUE.to_string();
            let call = if q2_active {
                Call::Drain { queue }
            } else {
                Call::Activate { queue }
            };
            load.recorder.record(ADMIN, "", call, sent_ms, &done(&r));
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
        let sent_ms = load.recorder.now();
        if roll < 22 {
            let r = client.cancel_task(id, "chaos admin").await;
            let call = Call::Cancel { task: id };
            load.recorder.record(ADMIN, "", call, sent_ms, &done(&r));
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
        let call = Call::Move { task: id };
        load.recorder.record(ADMIN, "", call, sent_ms, &done(&r));
    }
    reactivate(&load).await;
}

/// Once the faults stop, activates the drained queue again, retrying while
/// the outcome is unknown.
async fn reactivate(load: &Load) {
    let patient = load.client(Duration::from_secs(10));
    for _ in 0..10 {
        let sent_ms = load.recorder.now();
        let r = patient.set_queue_active(DRAINED_QUEUE, true).await;
        let outcome = done(&r);
        let queue = DRAINED_QUEUE.to_string();
        let call = Call::Activate { queue };
        load.recorder.record(ADMIN, "", call, sent_ms, &outcome);
        if !matches!(outcome, Outcome::Unknown(_)) {
            break;
        }
    }
}
