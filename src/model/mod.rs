//! The replicated queue model: domain types, commands and their pure,
//! deterministic apply.
//!
//! **Architecture Invariant:** nothing here reads a clock, a random source, the
//! environment or any IO, and nothing here knows about openraft, tonic or
//! RocksDB. Time and seeds arrive stamped inside each [`Command`] by the leader.
//! The same log therefore yields the same state on every replica.

pub mod error;
pub mod limits;
pub mod order;
pub mod spec;
mod state;
pub mod validate;

pub use error::{ErrorKind, ModelError};
use limits::CLUSTERS_PER_POOL_MAX;
pub use state::{Key, MetaRecord, State, DEFAULT_POOL, DEFAULT_QUEUE};

use serde::{Deserialize, Serialize};

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
    pub op: Op,
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
    SubmitTask {
        queue: String,
        command: Vec<String>,
        payload: Vec<u8>,
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
            Op::SubmitTask { queue, .. } => write!(f, "submit-task {queue}"),
            Op::CreatePool { name, .. } => write!(f, "create-pool {name}"),
            Op::AddCluster { pool, cluster } => write!(f, "add-cluster {cluster} to {pool}"),
            Op::RemoveCluster { pool, cluster } => {
                write!(f, "remove-cluster {cluster} from {pool}")
            }
            Op::DrainQueue { name } => write!(f, "drain-queue {name}"),
            Op::ActivateQueue { name } => write!(f, "activate-queue {name}"),
            Op::UpdateQueue { name, .. } => write!(f, "update-queue {name}"),
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
    TaskSubmitted {
        id: u64,
    },
    /// A queue's state or settings changed.
    QueueChanged {
        name: String,
    },
    /// A pool was created or its clusters changed.
    Pool {
        name: String,
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

/// Checks a write's shape without looking at any state. Shared by the API
/// (before proposing) and by apply.
pub fn validate_write(write: &Write) -> Result<(), ModelError> {
    validate::idempotency_key(&write.idempotency_key)?;
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
        Op::DrainQueue { name } | Op::ActivateQueue { name } => validate::name("name", name),
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
        Op::SubmitTask {
            queue,
            command,
            payload,
        } => {
            validate::name("queue", queue)?;
            validate::command(command)?;
            validate::payload(payload)
        }
    }
}

/// The life of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    Queued,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
        }
    }
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
    pub name: String,
    pub pool: String,
    pub spec: spec::QueueSpec,
    pub state: spec::QueueState,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Bumped on every change; later used for read-modify-write checks.
    pub version: u64,
}

/// The unit that is queued and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    pub queue: String,
    pub state: TaskState,
    pub command: Vec<String>,
    pub payload: Vec<u8>,
    pub created_ms: u64,
    pub idempotency_key: String,
    /// Order within the queue: lower runs first (see [`order::QueueOrder`]).
    pub rank: u128,
}

/// What an idempotency key remembers: when it was first used and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    pub first_ms: u64,
    pub result: Result<Reply, ModelError>,
}
