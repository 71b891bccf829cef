//! The replicated queue model: domain types, commands and their pure,
//! deterministic apply.
//!
//! **Architecture Invariant:** nothing here reads a clock, a random source, the
//! environment or any IO, and nothing here knows about openraft, tonic or
//! RocksDB. Time and seeds arrive stamped inside each [`Command`] by the leader.
//! The same log therefore yields the same state on every replica.

mod dispatch;
pub mod error;
pub mod limits;
pub mod order;
pub mod spec;
pub(crate) mod state;
pub mod validate;
pub mod worker;

pub use error::{ErrorKind, ModelError};
use limits::CLUSTERS_PER_POOL_MAX;
/// The tasks the dispatcher would lease to `worker` now, other than those in
/// `reserved` (a read-only preview; the lease itself runs the dispatcher
/// again inside apply).
pub fn dispatch_preview(
    state: &State,
    worker: &str,
    max_tasks: u32,
    reserved: &std::collections::BTreeSet<u64>,
) -> Vec<u64> {
    dispatch::pick(state, worker, max_tasks as usize, 0, reserved)
        .into_iter()
        .map(|p| p.task)
        .collect()
}

pub use state::{
    InFlight, Key, MetaRecord, State, DEFAULT_POOL, DEFAULT_PROJECT, DEFAULT_QUEUE,
    DEFAULT_QUEUE_ID,
};

use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use compact_str::CompactString;

/// A task's transitions: the first (its submit) lives inside the task.
pub type Timeline = smallvec::SmallVec<[Transition; 1]>;

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
            Op::Each(writes) => writes.iter().map(Write::approx_bytes).sum(),
            _ => 0,
        }
    }
}

/// The operations a client can ask for. New variants go at the end: the
/// variant's index is part of the log's encoding.
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
    /// Client writes in one log entry: those the leader coalesced under
    /// load, or the submits of one `SubmitEach` call. Each applies on its
    /// own, in order, under its own idempotency key, and gets its own
    /// response ([`Reply::Each`]); one refused does not touch the others.
    /// Nodes build these; the API has no way to send one as such.
    Each(Vec<Write>),
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

/// One entry of the replicated log: a client write stamped by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub stamp: Stamp,
    pub write: Write,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.write.op {
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
            Op::Each(writes) => write!(f, "coalesced {} writes", writes.len()),
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
    /// The responses of an [`Op::Each`]'s writes, in order.
    Each(Vec<Response>),
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

/// Checks a write's shape without looking at any state. Shared by the API
/// (before proposing) and by apply.
pub fn validate_write(write: &Write) -> Result<(), ModelError> {
    validate::idempotency_key(&write.idempotency_key)?;
    validate::text("actor", &write.actor, limits::ACTOR_MAX_BYTES)?;
    match &write.op {
        Op::CreateQueue { name, pool, spec } => {
            validate::name("name", name)?;
            validate::name("pool", pool)?;
            spec.validate()
        }
        Op::CreatePool { name, clusters } => {
            validate::name("name", name)?;
            if clusters.len() > CLUSTERS_PER_POOL_MAX {
                return Err(ModelError::invalid(
                    "clusters",
                    format!(
                        "{} clusters; a pool holds at most {CLUSTERS_PER_POOL_MAX}",
                        clusters.len()
                    ),
                ));
            }
            clusters
                .iter()
                .enumerate()
                .try_for_each(|(i, c)| validate::name(&format!("clusters[{i}]"), c))
        }
        Op::DrainQueue { name }
        | Op::ActivateQueue { name }
        | Op::ClearQueue { name }
        | Op::DeleteQueue { name, .. } => validate::name("name", name),
        Op::RenameQueue { name, new_name } => {
            validate::name("name", name)?;
            validate::name("new_name", new_name)
        }
        Op::UpdateQueue {
            name, pool, spec, ..
        } => {
            validate::name("name", name)?;
            if let Some(pool) = pool {
                validate::name("pool", pool)?;
            }
            spec.validate()
        }
        Op::AddCluster { pool, cluster } | Op::RemoveCluster { pool, cluster } => {
            validate::name("pool", pool)?;
            validate::name("cluster", cluster)
        }
        Op::SubmitTasks { tasks } => {
            if tasks.is_empty() {
                return Err(ModelError::invalid(
                    "tasks",
                    "a submit needs at least one task",
                ));
            }
            if tasks.len() > limits::BATCH_MAX_TASKS {
                return Err(ModelError::invalid(
                    "tasks",
                    format!(
                        "{} tasks; a batch holds at most {}",
                        tasks.len(),
                        limits::BATCH_MAX_TASKS
                    ),
                ));
            }
            let batch = tasks.len() > 1;
            tasks.iter().enumerate().try_for_each(|(i, t)| {
                t.validate().map_err(|e| match batch {
                    true => e.within(&format!("tasks[{i}]")),
                    false => e,
                })
            })
        }
        Op::CreateProject { name, settings } | Op::UpdateProject { name, settings, .. } => {
            validate::name("name", name)?;
            settings.validate()
        }
        Op::SetDefaultQueue { queue } => validate::name("queue", queue),
        Op::CancelTask { reason, .. } | Op::DequeueTask { reason, .. } => {
            validate::text("reason", reason, limits::REASON_MAX_BYTES)
        }
        Op::MoveTask { to, .. } => match to {
            MoveTo::Queue(q) => validate::name("queue", q),
            _ => Ok(()),
        },
        Op::RegisterWorker(r) => r.validate(),
        Op::LeaseTasks {
            worker,
            max_tasks,
            ttl_ms,
        } => {
            validate::name("worker", worker)?;
            if !(1..=limits::LEASE_MAX_TASKS).contains(max_tasks) {
                return Err(ModelError::invalid(
                    "max_tasks",
                    format!(
                        "{max_tasks} is out of range; use 1 to {}",
                        limits::LEASE_MAX_TASKS
                    ),
                ));
            }
            validate_ttl("ttl_ms", *ttl_ms)
        }
        Op::WorkerHeartbeats { reports, ttl_ms } => {
            validate_ttl("ttl_ms", *ttl_ms)?;
            if reports.len() > limits::HEARTBEAT_BATCH_MAX {
                return Err(ModelError::invalid(
                    "reports",
                    format!(
                        "{} reports; the limit is {}",
                        reports.len(),
                        limits::HEARTBEAT_BATCH_MAX
                    ),
                ));
            }
            reports.iter().try_for_each(|r| {
                validate::name("worker", &r.worker)?;
                if r.tasks.len() > limits::HEARTBEAT_TASKS_MAX {
                    return Err(ModelError::invalid(
                        "tasks",
                        format!(
                            "{} tasks; the limit is {}",
                            r.tasks.len(),
                            limits::HEARTBEAT_TASKS_MAX
                        ),
                    ));
                }
                Ok(())
            })
        }
        Op::StartTask { .. } | Op::ReportProgress { .. } => Ok(()),
        Op::CompleteTask { condition, .. } => {
            validate::text("condition", condition, limits::REASON_MAX_BYTES)
        }
        Op::ReleaseTask { reason, .. } => {
            validate::text("reason", reason, limits::REASON_MAX_BYTES)
        }
        Op::ExpireLeases { worker_timeout_ms } => {
            validate_ttl("worker_timeout_ms", *worker_timeout_ms)
        }
        Op::Each(writes) => {
            if writes.len() > limits::COALESCED_WRITES_MAX {
                return Err(ModelError::invalid(
                    "writes",
                    format!(
                        "{} writes; one entry coalesces at most {}",
                        writes.len(),
                        limits::COALESCED_WRITES_MAX
                    ),
                ));
            }
            if writes.iter().any(|w| matches!(w.op, Op::Each(_))) {
                return Err(ModelError::invalid(
                    "writes",
                    "coalesced writes do not nest",
                ));
            }
            // Each write is validated as it applies: one malformed write is
            // refused alone.
            Ok(())
        }
    }
}

fn validate_ttl(field: &str, ms: u64) -> Result<(), ModelError> {
    if !(limits::TTL_MIN_MS..=limits::TTL_MAX_MS).contains(&ms) {
        return Err(ModelError::invalid(
            field,
            format!(
                "{ms} ms is out of range; use {} to {} ms",
                limits::TTL_MIN_MS,
                limits::TTL_MAX_MS
            ),
        ));
    }
    Ok(())
}

impl NewTask {
    /// Checks the shape of every field (not whether the queue or project exist).
    pub fn validate(&self) -> Result<(), ModelError> {
        if !self.queue.is_empty() {
            validate::name("queue", &self.queue)?;
        }
        if !self.project.is_empty() {
            validate::name("project", &self.project)?;
        }
        if !self.run.is_empty() {
            validate::name("run", &self.run)?;
        }
        validate::text("name", &self.name, limits::TASK_NAME_MAX_BYTES)?;
        validate::command(&self.command)?;
        validate::payload(&self.payload)?;
        spec::resources("resources", &self.resources)?;
        if self.max_attempts > limits::MAX_ATTEMPTS_MAX {
            return Err(ModelError::invalid(
                "max_attempts",
                format!(
                    "{} is out of range; use 1 to {} (0 for the default, {})",
                    self.max_attempts,
                    limits::MAX_ATTEMPTS_MAX,
                    limits::MAX_ATTEMPTS_DEFAULT
                ),
            ));
        }
        validate::labels(&self.labels)
    }
}

impl ProjectSettings {
    pub fn validate(&self) -> Result<(), ModelError> {
        if !self.default_queue.is_empty() {
            validate::name("default_queue", &self.default_queue)?;
        }
        if self.allowed_queues.len() > limits::ALLOWED_QUEUES_MAX {
            return Err(ModelError::invalid(
                "allowed_queues",
                format!(
                    "{} queues; the limit is {}",
                    self.allowed_queues.len(),
                    limits::ALLOWED_QUEUES_MAX
                ),
            ));
        }
        for q in &self.allowed_queues {
            validate::name("allowed_queues", q)?;
        }
        validate::text(
            "description",
            &self.description,
            spec::DESCRIPTION_MAX_BYTES,
        )
    }
}

/// The life of a task: queued → leased → running → succeeded | failed |
/// canceled, and queued → dequeued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskState {
    Queued,
    Leased,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Dequeued,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Leased,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::Dequeued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Leased => "leased",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Dequeued => "dequeued",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, ModelError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
                ModelError::invalid(
                    field,
                    format!("{s:?} is not a task state; use one of {}", all.join(", ")),
                )
            })
    }

    /// Leased or running: holds a worker and counts against concurrency.
    pub fn in_flight(self) -> bool {
        matches!(self, TaskState::Leased | TaskState::Running)
    }

    pub fn terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Canceled | TaskState::Dequeued
        )
    }
}

/// One entry of a task's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: u64,
    /// The state entered (a move between queues stays `queued`).
    pub state: TaskState,
    pub actor: CompactString,
    pub reason: CompactString,
}

/// A task's command line and payload: written to storage once, at submit,
/// and kept out of memory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskBody {
    pub command: Vec<String>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Who submits: a default queue and, optionally, the only queues it may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    /// Queue id; None: the organisation's default queue.
    pub default_queue: Option<u64>,
    /// Queue ids; empty: every queue.
    pub allowed_queues: std::collections::BTreeSet<u64>,
    pub max_queued_per_run: u64,
    pub description: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub version: u64,
}

/// An isolation boundary (a cluster pool): it holds clusters, and work never
/// crosses pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    /// Execution targets in this pool (Kubernetes clusters, racks, ...).
    pub clusters: std::collections::BTreeSet<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Bumped on every change.
    pub version: u64,
}

/// A named scheduling lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Stable across renames; tasks and projects refer to queues by id.
    pub id: u64,
    pub name: String,
    pub pool: String,
    pub spec: spec::QueueSpec,
    pub state: spec::QueueState,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When a task last entered, left or moved within the queue.
    pub activity_ms: u64,
    /// Bumped on every change of its settings, name or state (not of its
    /// contents); the read-modify-write check of updates.
    pub version: u64,
    /// How long the most recently started tasks waited, in ms, oldest first
    /// (at most [`limits::RECENT_WAITS`]).
    pub recent_waits: std::collections::VecDeque<u64>,
    /// Round-robin fairness: the project served last.
    pub rr_last_project: String,
    /// A clear or forced delete under way. From the command that starts it,
    /// the queue's queued tasks are as good as gone: none is leased, moved or
    /// canceled, nothing enters the queue, and the following commands
    /// dequeue them, at most [`limits::CLEAR_MAX_PER_COMMAND`] each. The
    /// leader finishes one that its client left (see `api::queues`).
    pub clearing: Option<Clearing>,
}

/// What a clear under way ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clearing {
    /// The queue stays, empty of queued tasks.
    Clear,
    /// The queue is deleted (`queue delete --force`).
    Delete,
}

impl Clearing {
    pub fn as_str(self) -> &'static str {
        match self {
            Clearing::Clear => "clear",
            Clearing::Delete => "delete",
        }
    }
}

/// The unit that is queued and run. Its command line and payload live in
/// storage ([`TaskBody`]), not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    /// Queue id.
    pub queue: u64,
    pub project: CompactString,
    pub run: CompactString,
    pub name: CompactString,
    pub state: TaskState,
    pub resources: spec::Resources,
    pub max_attempts: u32,
    /// Leases so far.
    pub attempt: u32,
    pub labels: std::collections::BTreeMap<String, String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Shared by the tasks of one batch (and again after a reload: see
    /// `State::load_task`).
    pub idempotency_key: Arc<str>,
    /// Order within the queue: lower runs first (see [`order::QueueOrder`]).
    pub rank: u128,
    /// Every transition, oldest first (at most [`limits::TIMELINE_MAX`]:
    /// past that the oldest after the first are dropped).
    pub timeline: Timeline,
    /// Why a task failed or was canceled.
    pub condition: Option<String>,
    pub payload_bytes: u32,
    /// Its leases and run, once it has been leased.
    pub execution: Option<Box<worker::Execution>>,
}

impl Task {
    /// The token of the current lease (0: never leased).
    pub fn fencing_token(&self) -> u64 {
        self.execution.as_ref().map_or(0, |e| e.fencing_token)
    }

    /// The worker of the current or last lease.
    pub fn worker(&self) -> Option<&str> {
        self.execution.as_ref().map(|e| e.worker.as_str())
    }
}

/// What an idempotency key remembers: when it was first used and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    pub first_ms: u64,
    pub result: Result<Reply, ModelError>,
}
