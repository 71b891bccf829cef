//! What a client asks for and what it gets back: a [`Write`] (its [`Op`] and
//! idempotency key), the [`Command`] the leader stamps and logs (one write,
//! or a batch of them: [`Writes`]), and the [`Response`] apply returns.
//!
//! **Architecture Invariant:** these types are the log's encoding. Fields and
//! enum variants keep their order (new variants go at the end, and `Op`'s
//! index 25 is a batch's on the log: see `layout`), and nothing here looks
//! at the state: shape checks live in `validate`, effects in `state`.

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::{limits, Queue};
use std::collections::BTreeSet;

use super::{spec, token, worker, ModelError};

/// What the leader stamps into a command before proposing it. Apply uses these
/// instead of a clock or a random source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stamp {
    /// The leader's wall clock when it proposed the command, in ms since the epoch.
    pub now_ms: u64,
    /// A seed for any choice that must look random but replay identically.
    pub seed: u64,
}

/// A client's write as it arrives at any node: not yet stamped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// A retried write with the same key is applied once.
    pub idempotency_key: String,
    /// Who asks (a user or a service); goes into task timelines. Empty means
    /// [`ACTOR_ANONYMOUS`].
    pub actor: String,
    pub op: Op,
}

/// The actor of a write that names none.
pub const ACTOR_ANONYMOUS: &str = "anonymous";

impl Write {
    /// Roughly its encoded size: payloads and command lines, plus a fixed
    /// allowance per task and per write for the other fields. What bounds
    /// coalesced entries and append messages is this estimate, not an
    /// encoding done twice.
    pub fn approx_bytes(&self) -> usize {
        256 + match &self.op {
            Op::SubmitTasks { tasks } => tasks
                .iter()
                .map(|t| {
                    256 + t.payload.len() + t.command.iter().map(|c| c.len() + 8).sum::<usize>()
                })
                .sum(),
            _ => 0,
        }
    }
}

/// The operations a client can ask for. New variants go at the end: the
/// variant's index is part of the log's encoding. Index 25 is a batch's on
/// the log (`layout::BATCH_VARIANT`), held by [`Op::BatchSlot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    CreateQueue {
        name: String,
        /// The pool the queue belongs to, for good.
        pool: String,
        spec: spec::QueueSpec,
    },
    /// Submits one or more tasks atomically: all are accepted or none.
    SubmitTasks {
        tasks: Vec<NewTask>,
    },
    CreatePool {
        name: String,
        clusters: Vec<String>,
    },
    AddCluster {
        pool: String,
        cluster: String,
    },
    RemoveCluster {
        pool: String,
        cluster: String,
    },
    /// Stop admitting submissions; in-flight work finishes, then `drained`.
    DrainQueue {
        name: String,
    },
    /// Put a draining or drained queue back in rotation.
    ActivateQueue {
        name: String,
    },
    /// Replace a queue's settings, if it is still at `expected_version`
    /// (read-modify-write: a concurrent edit is refused, not overwritten).
    UpdateQueue {
        name: String,
        /// If given, must be the queue's pool: a pool is fixed for good.
        pool: Option<String>,
        spec: spec::QueueSpec,
        expected_version: u64,
    },
    RenameQueue {
        name: String,
        new_name: String,
    },
    /// Queued tasks of the queue become `dequeued`. The first command
    /// decides it for all of them (see [`Queue::clearing`]) and each dequeues
    /// at most [`limits::CLEAR_MAX_PER_COMMAND`]; the same command goes on
    /// with a clear or forced delete under way.
    ClearQueue {
        name: String,
    },
    /// Deletes an empty queue; `force` dequeues its queued tasks first, as
    /// [`Op::ClearQueue`] does: the queue is deleted by the command that
    /// dequeues the last.
    DeleteQueue {
        name: String,
        force: bool,
    },
    CreateProject {
        name: String,
        settings: ProjectSettings,
    },
    /// Replace a project's settings, if it is still at `expected_version`.
    UpdateProject {
        name: String,
        settings: ProjectSettings,
        expected_version: u64,
    },
    /// The organisation's default queue, for tasks whose project has none.
    SetDefaultQueue {
        queue: String,
    },
    /// A queued, leased or running task becomes `canceled`.
    CancelTask {
        id: u64,
        reason: String,
    },
    /// A queued task leaves its queue as `dequeued`.
    DequeueTask {
        id: u64,
        reason: String,
    },
    /// Reorders a queued task within its queue, or moves it to another.
    MoveTask {
        id: u64,
        to: MoveTo,
    },
    /// Registers a worker, or updates the one with that name.
    RegisterWorker(worker::Registration),
    /// The dispatcher, run inside apply, leases up to `max_tasks` tasks to
    /// `worker`, each for `ttl_ms`.
    LeaseTasks {
        worker: String,
        max_tasks: u32,
        ttl_ms: u64,
    },
    /// Heartbeats that a node gathered: renews the leases of the tasks each
    /// worker holds with their current tokens, for `ttl_ms`.
    WorkerHeartbeats {
        reports: Vec<worker::HeartbeatReport>,
        ttl_ms: u64,
    },
    StartTask {
        id: u64,
        fencing_token: u64,
    },
    ReportProgress {
        id: u64,
        fencing_token: u64,
        iteration: u64,
    },
    CompleteTask {
        id: u64,
        fencing_token: u64,
        succeeded: bool,
        exit_code: Option<i32>,
        condition: String,
    },
    /// Gives a lease back: the task is queued again at the front, and the
    /// attempt does not count.
    ReleaseTask {
        id: u64,
        fencing_token: u64,
        reason: String,
    },
    /// Expires the leases whose time (by the stamp) has passed, and marks
    /// workers silent for `worker_timeout_ms` lost, expiring their leases.
    ExpireLeases {
        worker_timeout_ms: u64,
    },
    /// Index 25, a batch's on the log (`layout::BATCH_VARIANT`): never an
    /// operation. It holds the place so that the operations after it keep
    /// their indexes; validation refuses it.
    #[doc(hidden)]
    BatchSlot,
    /// Stores a new token under `name`, with the SHA-256 of its secret (the
    /// caller made the secret and keeps it; the log never sees it). A
    /// `bootstrap` token is the first admin's: it is refused once any token
    /// exists, so that `cluster init` hands out the first admin once.
    CreateToken {
        name: String,
        role: token::Role,
        projects: BTreeSet<String>,
        pools: BTreeSet<String>,
        #[serde(with = "serde_bytes")]
        secret_sha256: Vec<u8>,
        /// Expires this long after it is created; 0: never.
        ttl_ms: u64,
        bootstrap: bool,
    },
    /// Deletes a token: it stops being accepted on every node at once.
    RevokeToken {
        name: String,
    },
    /// Starts a leased task on the GPUs its worker gave it (none for a task
    /// that asked for none). What nodes propose since GPUs are recorded;
    /// [`Op::StartTask`], from logs written before, starts on none.
    StartTaskOn {
        id: u64,
        fencing_token: u64,
        gpus: Vec<worker::AssignedGpu>,
    },
    /// Changes the organisation's retention (see `retention`); a field left
    /// `None` keeps its value, 0 turns a rule off.
    SetRetention {
        age_ms: Option<u64>,
        count: Option<u64>,
        lost_worker_ttl_ms: Option<u64>,
    },
    /// Changes a queue's own retention rules: `None` keeps a rule as it is,
    /// `Some(None)` makes it follow the organisation's again, `Some(Some(n))`
    /// sets it (0: off).
    SetQueueRetention {
        name: String,
        age_ms: Option<Option<u64>>,
        count: Option<Option<u64>>,
    },
    /// On the leader: removes finished tasks that the retention lets go and
    /// lost workers past their TTL, by the stamped time, at most
    /// [`limits::COLLECT_MAX_PER_COMMAND`] tasks; the leader repeats while
    /// [`Reply::Collected`] says more remains.
    CollectExpired,
    /// Removes a worker. Refused while it holds tasks, unless `force`,
    /// which first puts them back at the front of their queues (the
    /// attempt does not count).
    RemoveWorker {
        name: String,
        force: bool,
    },
}

/// A task as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewTask {
    /// Empty: the project's default queue, else the organisation's.
    pub queue: String,
    /// Empty: the `default` project.
    pub project: String,
    /// Groups the tasks of one workflow or experiment; may be empty.
    pub run: String,
    pub name: String,
    pub command: Vec<String>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub resources: spec::Resources,
    /// 0: [`limits::MAX_ATTEMPTS_DEFAULT`].
    pub max_attempts: u32,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Where a task moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveTo {
    Front,
    Back,
    /// This many places towards the front.
    Forward(u64),
    /// This many places towards the back.
    Backward(u64),
    /// A 0-based position (clamped to the queue's length).
    Position(u64),
    /// Just before another queued task of the same queue.
    Before(u64),
    /// Just after another queued task of the same queue.
    After(u64),
    /// To the back of another queue of the same pool.
    Queue(String),
}

/// A project's settings, with queues named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProjectSettings {
    /// Where its tasks go without `--queue`; empty: the organisation's default.
    pub default_queue: String,
    /// If not empty, the only queues it may submit to.
    pub allowed_queues: std::collections::BTreeSet<String>,
    /// Most tasks one run may have queued at once; 0 means unlimited.
    pub max_queued_per_run: u64,
    pub description: String,
}

/// One entry of the replicated log: client writes stamped by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub stamp: Stamp,
    pub writes: Writes,
}

/// What one log entry carries (its encoding is in `layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writes {
    /// One client write.
    One(Write),
    /// Independent client writes in one entry: those the leader coalesced
    /// under load, or those of one `SubmitEach` or `CompleteEach` call. Each
    /// applies on its own, in order, under its own idempotency key, and gets
    /// its own response ([`Reply::Batch`]); one refused does not touch the
    /// others. At most [`limits::COALESCED_WRITES_MAX`].
    Batch(Vec<Write>),
}

impl Writes {
    /// Roughly their encoded size (see [`Write::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        match self {
            Writes::One(write) => write.approx_bytes(),
            Writes::Batch(writes) => 256 + writes.iter().map(Write::approx_bytes).sum::<usize>(),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.writes {
            Writes::One(write) => write.op.fmt(f),
            Writes::Batch(writes) => write!(f, "batch of {} writes", writes.len()),
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::CreateQueue { name, pool, .. } => write!(f, "create-queue {name} in {pool}"),
            Op::SubmitTasks { tasks } => write!(f, "submit {} task(s)", tasks.len()),
            Op::CreatePool { name, .. } => write!(f, "create-pool {name}"),
            Op::AddCluster { pool, cluster } => write!(f, "add-cluster {cluster} to {pool}"),
            Op::RemoveCluster { pool, cluster } => {
                write!(f, "remove-cluster {cluster} from {pool}")
            }
            Op::DrainQueue { name } => write!(f, "drain-queue {name}"),
            Op::ActivateQueue { name } => write!(f, "activate-queue {name}"),
            Op::UpdateQueue { name, .. } => write!(f, "update-queue {name}"),
            Op::RenameQueue { name, new_name } => write!(f, "rename-queue {name} to {new_name}"),
            Op::ClearQueue { name } => write!(f, "clear-queue {name}"),
            Op::DeleteQueue { name, force } => write!(f, "delete-queue {name} force={force}"),
            Op::CreateProject { name, .. } => write!(f, "create-project {name}"),
            Op::UpdateProject { name, .. } => write!(f, "update-project {name}"),
            Op::SetDefaultQueue { queue } => write!(f, "set-default-queue {queue}"),
            Op::CancelTask { id, .. } => write!(f, "cancel-task {id}"),
            Op::DequeueTask { id, .. } => write!(f, "dequeue-task {id}"),
            Op::MoveTask { id, to } => write!(f, "move-task {id} {to:?}"),
            Op::RegisterWorker(r) => write!(f, "register-worker {}", r.name),
            Op::LeaseTasks { worker, .. } => write!(f, "lease-tasks {worker}"),
            Op::WorkerHeartbeats { reports, .. } => write!(f, "heartbeats {}", reports.len()),
            Op::StartTask { id, .. } => write!(f, "start-task {id}"),
            Op::ReportProgress { id, .. } => write!(f, "report-progress {id}"),
            Op::CompleteTask { id, .. } => write!(f, "complete-task {id}"),
            Op::ReleaseTask { id, .. } => write!(f, "release-task {id}"),
            Op::ExpireLeases { .. } => write!(f, "expire-leases"),
            Op::BatchSlot => write!(f, "batch-slot"),
            Op::CreateToken { name, role, .. } => {
                write!(f, "create-token {name} ({})", role.as_str())
            }
            Op::RevokeToken { name } => write!(f, "revoke-token {name}"),
            Op::StartTaskOn { id, .. } => write!(f, "start-task {id}"),
            Op::SetRetention { .. } => write!(f, "set-retention"),
            Op::SetQueueRetention { name, .. } => write!(f, "set-queue-retention {name}"),
            Op::CollectExpired => write!(f, "collect-expired"),
            Op::RemoveWorker { name, force } => write!(f, "remove-worker {name} force={force}"),
        }
    }
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Entries that carry no client command (blank, membership).
    None,
    QueueCreated {
        name: String,
    },
    /// The ids of the submitted tasks, in the order given.
    TasksSubmitted {
        ids: Vec<u64>,
    },
    /// A queue's state or settings changed.
    QueueChanged {
        name: String,
    },
    /// A pool was created or its clusters changed.
    Pool {
        name: String,
    },
    Project {
        name: String,
    },
    /// A task changed state or place.
    Task {
        id: u64,
    },
    /// Queued tasks were dequeued (clear, or a forced delete), at most
    /// [`limits::CLEAR_MAX_PER_COMMAND`] per command. `remaining` are still
    /// to be dequeued: repeat the command (or leave it to the leader). A
    /// delete has happened when none remain.
    QueueCleared {
        name: String,
        dequeued: u64,
        remaining: u64,
    },
    /// The organisation's settings changed.
    Config,
    Worker {
        name: String,
    },
    /// Leases granted: (task id, fencing token, expiry), in dispatch order.
    Leased {
        leases: Vec<(u64, u64, u64)>,
    },
    /// Heartbeats applied; leases of tasks not listed were not renewed.
    Heartbeats {
        renewed: u64,
    },
    Expired {
        tasks: u64,
        workers_lost: u64,
    },
    /// The responses of a [`Writes::Batch`]'s writes, in order.
    Batch(Vec<Response>),
    /// A token was created or revoked.
    Token {
        name: String,
    },
    /// A collect removed `tasks` finished tasks and `workers` lost workers;
    /// `remaining` says that more is collectable at the same time.
    Collected {
        tasks: u64,
        workers: u64,
        remaining: bool,
    },
    /// A worker was removed; `requeued` of its tasks went back to their
    /// queues (a forced removal).
    WorkerRemoved {
        name: String,
        requeued: u64,
    },
}

/// The outcome of applying one log entry, as the proposer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub result: Result<Reply, ModelError>,
    /// True when the idempotency key had been seen before: this is the outcome
    /// of its first application, and nothing changed now.
    pub replayed: bool,
}

impl Response {
    pub fn none() -> Self {
        Self {
            result: Ok(Reply::None),
            replayed: false,
        }
    }
}

/// What an idempotency key remembers: when it was first used and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    pub first_ms: u64,
    pub result: Result<Reply, ModelError>,
}
