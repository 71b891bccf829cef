//! The replicated state and its apply. Pure: see the module docs of `model`.
//!
//! This file holds the [`State`] and the records storage keeps of it; the
//! rest is split by concern: `apply` (one command in, a response and the
//! changed keys out) dispatching to one file per area (`queues`, `pools`,
//! `projects`, `tasks`, `workers`), `index` (the derived indexes those keep
//! in step), `queries` (reads), `load` (rebuilding from storage) and
//! `invariants` (the checks after every apply).
//!
//! **Architecture Invariant:** the fields of [`State`] are private; they
//! change only through apply (or load), so every replica that applies the
//! same log holds the same value, derived indexes included.

use std::collections::{BTreeMap, BTreeSet};

use super::history::{Entity, History, Row, Settings};
use super::order::QueueOrder;
use super::retention::{OrgRetention, QueueRetention};
use super::spec::{QueueSpec, QueueState, Resources};
use super::worker::Worker;
use super::{CompactString, IdempotencyRecord, Pool, Project, Queue, Task, TaskBody, Token};

mod apply;
mod history;
mod index;
mod invariants;
mod load;
mod pools;
mod projects;
mod queries;
mod queues;
mod retention;
mod tasks;
mod tokens;

pub use tokens::BOOTSTRAP_CREATOR;
#[cfg(test)]
pub(crate) mod tests;
mod workers;

pub(crate) use index::run_key;

#[cfg(test)]
pub(crate) use apply::CHECK_EACH_APPLY;

/// The name of the queue that always exists.
pub const DEFAULT_QUEUE: &str = "default";
/// The id of the default queue.
pub const DEFAULT_QUEUE_ID: u64 = 1;
/// The name of the pool that always exists.
pub const DEFAULT_POOL: &str = "default";
/// The name of the project that always exists (tasks that name none).
pub const DEFAULT_PROJECT: &str = "default";

/// A record that an apply changed, so that storage can persist exactly those.
/// A key whose record no longer exists in the state is a deletion.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// The scalar fields of [`State`] (clock, id counters, defaults).
    Meta,
    /// By queue id.
    Queue(u64),
    Pool(String),
    Task(u64),
    /// By the time of the key's first use and the key: a key that expires
    /// and comes back is a new record.
    Idempotency(u64, String),
    Project(String),
    Worker(String),
    /// A new task's command line and payload, which the state does not keep:
    /// the key carries the record itself.
    Body(u64, TaskBody),
    /// A history track, by entity (see `model::history`).
    HistoryTrack(Entity),
    /// By name.
    Token(String),
    /// A queue's cumulative counters, by queue id.
    QueueCounters(u64),
    /// The organisation's retention.
    OrgRetention,
    /// A queue's own retention rules, by queue id.
    QueueRetention(u64),
    /// A closed bucket of the history, which the state does not keep: the
    /// key carries the row. Before [`Key::HistoryExpire`] in the order, so
    /// that a batch writes a row before it drops expired ones.
    HistoryRow(Box<Row>),
    /// Drops the rows of `entity` at `step_ms` whose bucket begins before
    /// `before_ms` (past their retention).
    HistoryExpire {
        step_ms: u64,
        entity: Entity,
        before_ms: u64,
    },
}

/// Scalar fields persisted under [`Key::Meta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetaRecord {
    pub clock_ms: u64,
    pub next_task_id: u64,
    pub next_queue_id: u64,
    /// The organisation's default queue (an id).
    pub default_queue: u64,
    /// The next lease's fencing token: tokens only grow.
    pub next_fencing_token: u64,
}

/// Leased and running tasks of one queue (derived).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InFlight {
    pub tasks: u64,
    /// Runs with in-flight tasks (`project/run`), and how many each has. A
    /// task without a run is a run of its own (`#<id>`).
    pub runs: BTreeMap<String, u64>,
    /// What the in-flight tasks request, summed.
    pub resources: Resources,
}

/// The whole replicated state. Every replica holds the same value at the same
/// log index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The latest stamped time applied: never goes backwards, even when a new
    /// leader's clock is behind the old one's.
    clock_ms: u64,
    /// The log index of the entry being applied, which each task transition
    /// records; 0 outside apply, so that states that applied the same log
    /// are equal however they got there (a reload, a snapshot).
    log_index: u64,
    next_task_id: u64,
    next_queue_id: u64,
    default_queue: u64,
    next_fencing_token: u64,
    /// By id.
    queues: BTreeMap<u64, Queue>,
    /// Boxed: a B-tree node holds eleven entries and is often a third
    /// empty; empty slots of pointers cost far less than of whole tasks.
    tasks: BTreeMap<u64, Box<Task>>,
    idempotency: BTreeMap<String, IdempotencyRecord>,
    pools: BTreeMap<String, Pool>,
    projects: BTreeMap<String, Project>,
    workers: BTreeMap<String, Worker>,
    /// Access tokens by name.
    tokens: BTreeMap<String, Token>,
    /// How long finished tasks and lost workers are kept.
    retention: OrgRetention,
    /// Queues' own retention rules, by queue id (none: the organisation's).
    queue_retention: BTreeMap<u64, QueueRetention>,
    /// Derived: queue ids by name.
    queue_ids: BTreeMap<String, u64>,
    /// Derived: the queued tasks of each queue, in order (O(log n) positions).
    pending: BTreeMap<u64, QueueOrder>,
    /// Derived: the same order split by project (same ranks), for fairness.
    pending_by_project: BTreeMap<(u64, CompactString), QueueOrder>,
    /// Derived: (lease expiry, task id) of every leased or running task.
    lease_expiry: BTreeSet<(u64, u64)>,
    /// Derived: leased and running tasks of each queue.
    in_flight: BTreeMap<u64, InFlight>,
    /// Derived: queued tasks per (project, run), for runs that have a name.
    queued_per_run: BTreeMap<(CompactString, CompactString), u64>,
    /// Derived: idempotency keys by first use, for expiry.
    idempotency_by_time: BTreeSet<(u64, String)>,
    /// Derived: the finished tasks of each queue id (a deleted queue's
    /// too), as (finished time, id), oldest first: what a collect removes,
    /// in O(log n) a task.
    finished: BTreeMap<u64, BTreeSet<(u64, u64)>>,
    /// The metrics history's tracks and the per-queue counters.
    history: History,
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// The state before any command: the default pool, queue and project.
    pub fn new() -> Self {
        let mut state = Self {
            clock_ms: 0,
            log_index: 0,
            next_task_id: 1,
            next_queue_id: DEFAULT_QUEUE_ID + 1,
            default_queue: DEFAULT_QUEUE_ID,
            next_fencing_token: 1,
            queues: BTreeMap::new(),
            pools: BTreeMap::new(),
            projects: BTreeMap::new(),
            workers: BTreeMap::new(),
            tokens: BTreeMap::new(),
            retention: OrgRetention::default(),
            queue_retention: BTreeMap::new(),
            tasks: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            queue_ids: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_by_project: BTreeMap::new(),
            lease_expiry: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            queued_per_run: BTreeMap::new(),
            idempotency_by_time: BTreeSet::new(),
            finished: BTreeMap::new(),
            history: History::new(Settings::default()),
        };
        state.pools.insert(
            DEFAULT_POOL.to_string(),
            Pool {
                name: DEFAULT_POOL.to_string(),
                clusters: BTreeSet::new(),
                created_ms: 0,
                updated_ms: 0,
                version: 1,
            },
        );
        state.insert_queue(Queue {
            id: DEFAULT_QUEUE_ID,
            name: DEFAULT_QUEUE.to_string(),
            pool: DEFAULT_POOL.to_string(),
            spec: QueueSpec::default(),
            state: QueueState::Active,
            created_ms: 0,
            updated_ms: 0,
            activity_ms: 0,
            version: 1,
            recent_waits: Default::default(),
            rr_last_project: String::new(),
            clearing: None,
        });
        state.projects.insert(
            DEFAULT_PROJECT.to_string(),
            Project {
                name: DEFAULT_PROJECT.to_string(),
                default_queue: None,
                allowed_queues: BTreeSet::new(),
                max_queued_per_run: 0,
                description: String::new(),
                created_ms: 0,
                updated_ms: 0,
                version: 1,
            },
        );
        state
    }
}
