//! The replicated state and its apply. Pure: see the module docs of `model`.

use std::collections::{BTreeMap, BTreeSet};

use super::order::{QueueOrder, Reranked};
use super::spec::{QueueSpec, QueueState, Resources};
use super::worker::Worker;

use super::limits::*;
use super::{
    validate_write, Command, CompactString, IdempotencyRecord, ModelError, Op, Pool, Project,
    Queue, Reply, Response, Task, TaskBody, TaskState, ACTOR_ANONYMOUS,
};

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
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// The seed of the `i`-th write of a coalesced entry: distinct per write,
/// and the same on every replica (a SplitMix64 step).
fn sub_seed(seed: u64, i: usize) -> u64 {
    let mut z = seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl State {
    /// The state before any command: the default pool, queue and project.
    pub fn new() -> Self {
        let mut state = Self {
            clock_ms: 0,
            next_task_id: 1,
            next_queue_id: DEFAULT_QUEUE_ID + 1,
            default_queue: DEFAULT_QUEUE_ID,
            next_fencing_token: 1,
            queues: BTreeMap::new(),
            pools: BTreeMap::new(),
            projects: BTreeMap::new(),
            workers: BTreeMap::new(),
            tasks: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            queue_ids: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_by_project: BTreeMap::new(),
            lease_expiry: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            queued_per_run: BTreeMap::new(),
            idempotency_by_time: BTreeSet::new(),
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

    pub fn meta(&self) -> MetaRecord {
        MetaRecord {
            clock_ms: self.clock_ms,
            next_task_id: self.next_task_id,
            next_queue_id: self.next_queue_id,
            default_queue: self.default_queue,
            next_fencing_token: self.next_fencing_token,
        }
    }

    /// The latest stamped time applied.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.get(self.queue_ids.get(name)?)
    }

    pub fn queue_by_id(&self, id: u64) -> Option<&Queue> {
        self.queues.get(&id)
    }

    /// Every queue, by name.
    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queue_ids.values().map(|id| &self.queues[id])
    }

    /// The organisation's default queue.
    pub fn default_queue(&self) -> &Queue {
        &self.queues[&self.default_queue]
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    pub fn project(&self, name: &str) -> Option<&Project> {
        self.projects.get(name)
    }

    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.projects.values()
    }

    pub fn worker(&self, name: &str) -> Option<&Worker> {
        self.workers.get(name)
    }

    /// Every worker, by name.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// Tasks of a queue with queued tasks of a project, in queue order.
    pub(crate) fn project_order(&self, queue: u64, project: &str) -> Option<&QueueOrder> {
        self.pending_by_project.get(&(queue, project.into()))
    }

    /// Projects with queued tasks in a queue, by name.
    pub(crate) fn projects_queued_in(&self, queue: u64) -> impl Iterator<Item = &str> {
        self.pending_by_project
            .range((queue, CompactString::default())..)
            .take_while(move |((q, _), _)| *q == queue)
            .map(|((_, p), _)| p.as_str())
    }

    /// Whether an expiry command would find work: a lease expired by
    /// `now_ms`, or an active worker silent since `now_ms - worker_timeout_ms`.
    pub fn expiry_due(&self, now_ms: u64, worker_timeout_ms: u64) -> bool {
        let lease_due = self
            .lease_expiry
            .first()
            .is_some_and(|&(expires, _)| expires <= now_ms);
        lease_due
            || self.workers.values().any(|w| {
                w.state == super::worker::WorkerState::Active
                    && w.last_seen_ms.saturating_add(worker_timeout_ms) <= now_ms
            })
    }

    /// Number of queues in a pool.
    pub fn queues_in_pool(&self, pool: &str) -> usize {
        self.queues.values().filter(|q| q.pool == pool).count()
    }

    /// Number of queues in every pool that has any, in one pass.
    pub fn queues_per_pool(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for q in self.queues.values() {
            *counts.entry(q.pool.as_str()).or_default() += 1;
        }
        counts
    }

    pub fn task(&self, id: u64) -> Option<&Task> {
        self.tasks.get(&id).map(|t| &**t)
    }

    /// Tasks with ids above `after`, by id.
    pub fn tasks_after(&self, after: u64) -> impl Iterator<Item = &Task> {
        self.tasks
            .range(after.saturating_add(1)..)
            .map(|(_, t)| &**t)
    }

    pub fn idempotency(&self, key: &str) -> Option<&IdempotencyRecord> {
        self.idempotency.get(key)
    }

    /// Number of queued tasks in a queue.
    pub fn queued(&self, queue: u64) -> usize {
        self.pending.get(&queue).map_or(0, QueueOrder::len)
    }

    /// Leased and running tasks of a queue.
    pub fn in_flight(&self, queue: u64) -> Option<&InFlight> {
        self.in_flight.get(&queue)
    }

    fn in_flight_tasks(&self, queue: u64) -> u64 {
        self.in_flight.get(&queue).map_or(0, |f| f.tasks)
    }

    /// The task that would be handed out next from a queue.
    pub fn next_task(&self, queue: u64) -> Option<u64> {
        self.pending.get(&queue)?.first()
    }

    /// Queued task ids of a queue in order, from 0-based `from`, at most `limit`.
    pub fn queued_range(&self, queue: u64, from: usize, limit: usize) -> Vec<u64> {
        self.pending
            .get(&queue)
            .map_or_else(Vec::new, |o| o.range(from, limit))
    }

    /// 0-based position of a queued task in its queue.
    pub fn position(&self, task: &Task) -> Option<usize> {
        if task.state != TaskState::Queued {
            return None;
        }
        self.pending.get(&task.queue)?.position(task.id, task.rank)
    }

    /// Queued tasks of a run of a project.
    pub fn queued_in_run(&self, project: &str, run: &str) -> u64 {
        self.queued_per_run
            .get(&(project.into(), run.into()))
            .copied()
            .unwrap_or(0)
    }

    // --- loading from storage: records in any order, then derived indexes ---

    pub fn load_meta(&mut self, meta: MetaRecord) {
        self.clock_ms = meta.clock_ms;
        self.next_task_id = meta.next_task_id;
        self.next_queue_id = meta.next_queue_id;
        self.default_queue = meta.default_queue;
        self.next_fencing_token = meta.next_fencing_token;
    }

    pub fn load_worker(&mut self, worker: Worker) {
        self.workers.insert(worker.name.clone(), worker);
    }

    pub fn load_pool(&mut self, pool: Pool) {
        self.pools.insert(pool.name.clone(), pool);
    }

    pub fn load_project(&mut self, project: Project) {
        self.projects.insert(project.name.clone(), project);
    }

    pub fn load_queue(&mut self, queue: Queue) {
        // The default queue's initial record is replaced, not duplicated.
        if let Some(old) = self.queues.get(&queue.id) {
            let old_name = old.name.clone();
            self.queue_ids.remove(&old_name);
        }
        self.insert_queue(queue);
    }

    /// Loads tasks in id order, so the tasks of a batch come one after the
    /// other and share their idempotency key again, as when submitted.
    pub fn load_task(&mut self, mut task: Task) {
        if let Some((_, last)) = self.tasks.last_key_value() {
            if last.idempotency_key == task.idempotency_key {
                task.idempotency_key = last.idempotency_key.clone();
            }
        }
        self.insert_task(task);
    }

    pub fn load_idempotency(&mut self, record: IdempotencyRecord) {
        self.insert_idempotency(record);
    }

    /// Applies one stamped command. Returns its response and appends to
    /// `changed` every key whose record must be persisted.
    pub fn apply(&mut self, cmd: &Command, changed: &mut Vec<Key>) -> Response {
        self.clock_ms = self.clock_ms.max(cmd.stamp.now_ms);
        changed.push(Key::Meta);
        self.expire_idempotency(changed);
        let response = match &cmd.write.op {
            // Writes the leader coalesced into one entry: each applies on its
            // own, in order, with its own key and outcome, as if it had its
            // own entry.
            Op::Each(writes) if validate_write(&cmd.write).is_ok() => {
                let replies = writes
                    .iter()
                    .enumerate()
                    .map(|(i, w)| self.apply_write(w, sub_seed(cmd.stamp.seed, i), changed))
                    .collect();
                Response {
                    result: Ok(Reply::Each(replies)),
                    replayed: false,
                }
            }
            _ => self.apply_write(&cmd.write, cmd.stamp.seed, changed),
        };
        #[cfg(debug_assertions)]
        self.check_invariants();
        response
    }

    /// Applies one client write under its idempotency key.
    fn apply_write(&mut self, write: &super::Write, seed: u64, changed: &mut Vec<Key>) -> Response {
        let key = &write.idempotency_key;
        if let Some(seen) = self.idempotency.get(key) {
            return Response {
                result: seen.result.clone(),
                replayed: true,
            };
        }
        let result = validate_write(write).and_then(|()| self.apply_op(write, seed, changed));
        // A malformed key cannot be remembered; every other outcome is, so a
        // retry answers the same even when the first attempt was refused.
        // Heartbeat batches and expiry, which nodes write by themselves
        // several times a second and which are harmless to apply twice, are
        // not remembered: their records would pile up for a day. Nor is a
        // malformed `Each` (its writes carry the keys).
        let internal = matches!(
            write.op,
            Op::WorkerHeartbeats { .. } | Op::ExpireLeases { .. } | Op::Each(_)
        );
        if !internal && crate::model::validate::idempotency_key(key).is_ok() {
            self.insert_idempotency(IdempotencyRecord {
                key: key.clone(),
                first_ms: self.clock_ms,
                result: result.clone(),
            });
            changed.push(Key::Idempotency(self.clock_ms, key.clone()));
        }
        Response {
            result,
            replayed: false,
        }
    }

    fn apply_op(
        &mut self,
        write: &super::Write,
        seed: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let actor = match write.actor.as_str() {
            "" => ACTOR_ANONYMOUS,
            a => a,
        };
        match &write.op {
            Op::CreateQueue { name, pool, spec } => self.create_queue(name, pool, spec, changed),
            Op::SubmitTasks { tasks } => {
                self.submit_tasks(tasks, actor, &write.idempotency_key, changed)
            }
            Op::UpdateQueue {
                name,
                pool,
                spec,
                expected_version,
            } => self.update_queue(name, pool.as_deref(), spec, *expected_version, changed),
            Op::DrainQueue { name } => self.drain_queue(name, changed),
            Op::ActivateQueue { name } => self.activate_queue(name, changed),
            Op::RenameQueue { name, new_name } => self.rename_queue(name, new_name, changed),
            Op::ClearQueue { name } => self.clear_queue(name, actor, changed),
            Op::DeleteQueue { name, force } => self.delete_queue(name, *force, actor, changed),
            Op::CreatePool { name, clusters } => self.create_pool(name, clusters, changed),
            Op::AddCluster { pool, cluster } => self.add_cluster(pool, cluster, changed),
            Op::RemoveCluster { pool, cluster } => self.remove_cluster(pool, cluster, changed),
            Op::CreateProject { name, settings } => self.create_project(name, settings, changed),
            Op::UpdateProject {
                name,
                settings,
                expected_version,
            } => self.update_project(name, settings, *expected_version, changed),
            Op::SetDefaultQueue { queue } => {
                let id = self.queue_id("queue", queue)?;
                self.default_queue = id;
                Ok(Reply::Config)
            }
            Op::CancelTask { id, reason } => self.cancel_task(*id, actor, reason, changed),
            Op::DequeueTask { id, reason } => self.dequeue_task(*id, actor, reason, changed),
            Op::MoveTask { id, to } => self.move_task(*id, to, actor, changed),
            Op::RegisterWorker(r) => self.register_worker(r, changed),
            Op::LeaseTasks {
                worker,
                max_tasks,
                ttl_ms,
            } => self.lease_tasks(worker, *max_tasks, *ttl_ms, seed, changed),
            Op::WorkerHeartbeats { reports, ttl_ms } => self.heartbeats(reports, *ttl_ms, changed),
            Op::StartTask { id, fencing_token } => self.start_task(*id, *fencing_token, changed),
            Op::ReportProgress {
                id,
                fencing_token,
                iteration,
            } => self.report_progress(*id, *fencing_token, *iteration, changed),
            Op::CompleteTask {
                id,
                fencing_token,
                succeeded,
                exit_code,
                condition,
            } => self.complete_task(
                *id,
                *fencing_token,
                *succeeded,
                *exit_code,
                condition,
                changed,
            ),
            Op::ReleaseTask {
                id,
                fencing_token,
                reason,
            } => self.release_task(*id, *fencing_token, actor, reason, changed),
            Op::ExpireLeases { worker_timeout_ms } => {
                self.expire_leases(*worker_timeout_ms, changed)
            }
            // `apply` takes well-formed ones apart; validation refuses the rest.
            Op::Each(_) => Err(ModelError::invalid("op", "coalesced writes do not nest")),
        }
    }

    /// The id of a queue named in field `field`.
    fn queue_id(&self, field: &str, name: &str) -> Result<u64, ModelError> {
        self.queue_ids
            .get(name)
            .copied()
            .ok_or_else(|| ModelError::not_found(field, format!("no queue named {name:?}")))
    }

    fn insert_queue(&mut self, queue: Queue) {
        self.pending.entry(queue.id).or_default();
        self.queue_ids.insert(queue.name.clone(), queue.id);
        self.next_queue_id = self.next_queue_id.max(queue.id + 1);
        self.queues.insert(queue.id, queue);
    }

    /// Records the ranks a queue change assigned, so they are persisted.
    /// Also places each task in its project's order with its new rank, so a
    /// task entering a queue is indexed by the rerank its insertion reports.
    /// All leave the project order before any comes back: a new rank may be
    /// another task's old one.
    fn rerank(&mut self, reranked: Reranked, changed: &mut Vec<Key>) {
        for &(id, rank) in &reranked {
            let task = self.tasks.get_mut(&id).expect("a reranked task exists");
            let old = std::mem::replace(&mut task.rank, rank);
            let key = (task.queue, task.project.clone());
            if let Some(by_project) = self.pending_by_project.get_mut(&key) {
                // False for a task entering the queue: it was in no order here.
                by_project.remove(id, old);
            }
        }
        for (id, rank) in reranked {
            let task = &self.tasks[&id];
            self.pending_by_project
                .entry((task.queue, task.project.clone()))
                .or_default()
                .insert_with_rank(id, rank);
            changed.push(Key::Task(id));
        }
    }

    /// Takes a task out of its project's order (it left its queue's order).
    fn unindex_project(&mut self, queue: u64, project: &str, id: u64, rank: u128) {
        let key = (queue, CompactString::from(project));
        if let Some(order) = self.pending_by_project.get_mut(&key) {
            order.remove(id, rank);
            if order.is_empty() {
                self.pending_by_project.remove(&key);
            }
        }
    }

    fn insert_task(&mut self, task: Task) {
        if task.state == TaskState::Queued {
            self.pending
                .entry(task.queue)
                .or_default()
                .insert_with_rank(task.id, task.rank);
            self.pending_by_project
                .entry((task.queue, task.project.clone()))
                .or_default()
                .insert_with_rank(task.id, task.rank);
        }
        if let Some(expires) = task.execution.as_ref().and_then(|e| e.lease_expires_ms) {
            if task.state.in_flight() {
                self.lease_expiry.insert((expires, task.id));
            }
        }
        self.count(&task, true);
        self.next_task_id = self.next_task_id.max(task.id + 1);
        self.tasks.insert(task.id, Box::new(task));
    }

    /// Adds a task to (or removes it from) the derived counters of its state,
    /// except the queue order, which callers keep with its ranks.
    fn count(&mut self, t: &Task, add: bool) {
        count(&mut self.in_flight, &mut self.queued_per_run, t, add);
    }

    fn insert_idempotency(&mut self, record: IdempotencyRecord) {
        self.idempotency_by_time
            .insert((record.first_ms, record.key.clone()));
        self.idempotency.insert(record.key.clone(), record);
    }

    /// Forgets keys older than the retention, a bounded number per apply.
    fn expire_idempotency(&mut self, changed: &mut Vec<Key>) {
        let horizon = self.clock_ms.saturating_sub(IDEMPOTENCY_RETENTION_MS);
        for _ in 0..IDEMPOTENCY_PRUNE_PER_APPLY {
            let Some((first_ms, key)) = self.idempotency_by_time.first().cloned() else {
                break;
            };
            if first_ms >= horizon {
                break;
            }
            self.idempotency_by_time.pop_first();
            self.idempotency.remove(&key);
            changed.push(Key::Idempotency(first_ms, key));
        }
    }

    /// Checks the invariants that must hold after every apply. Panics on a
    /// violation: a diverged state machine must stop, not serve.
    ///
    /// Every derived index is rebuilt from the records and compared, so the
    /// counts match the contents, the positions in each queue are a
    /// permutation, and no task is in two queues.
    pub fn check_invariants(&self) {
        let default = self
            .queues
            .get(&DEFAULT_QUEUE_ID)
            .expect("the default queue must exist");
        assert_eq!(
            default.name, DEFAULT_QUEUE,
            "the default queue keeps its name"
        );
        assert_eq!(
            default.state,
            QueueState::Active,
            "the default queue is always active"
        );
        assert!(
            self.pools.contains_key(DEFAULT_POOL),
            "the default pool must exist"
        );
        assert!(
            self.projects.contains_key(DEFAULT_PROJECT),
            "the default project must exist"
        );
        assert!(
            self.queues.contains_key(&self.default_queue),
            "the organisation's default queue must exist"
        );
        assert_eq!(self.queue_ids.len(), self.queues.len());
        for q in self.queues.values() {
            assert_eq!(self.queue_ids.get(&q.name), Some(&q.id), "queue name index");
            assert!(
                self.pools.contains_key(&q.pool),
                "queue {} in unknown pool {}",
                q.name,
                q.pool
            );
            assert!(q.id < self.next_queue_id, "queue ids only grow");
            if q.state == QueueState::Drained {
                assert_eq!(self.queued(q.id) as u64 + self.in_flight_tasks(q.id), 0);
            }
            if let Some(kind) = q.clearing {
                assert!(
                    self.queued(q.id) > 0,
                    "queue {}: a clear with nothing left",
                    q.name
                );
                if kind == crate::model::Clearing::Delete {
                    assert_eq!(self.in_flight_tasks(q.id), 0, "queue {}: deleting", q.name);
                }
            }
        }
        for p in self.projects.values() {
            for q in p.default_queue.iter().chain(&p.allowed_queues) {
                assert!(
                    self.queues.contains_key(q),
                    "project {} names queue {q}",
                    p.name
                );
            }
        }

        let mut rebuilt = Self::new();
        rebuilt.queues.clear();
        rebuilt.queue_ids.clear();
        rebuilt.pending.clear();
        for q in self.queues.values() {
            rebuilt.insert_queue(q.clone());
        }
        for t in self.tasks.values() {
            assert!(
                t.state.terminal() || self.queues.contains_key(&t.queue),
                "task {} is {} in unknown queue {}",
                t.id,
                t.state.as_str(),
                t.queue
            );
            assert!(!t.timeline.is_empty() && t.timeline.len() <= TIMELINE_MAX);
            rebuilt.insert_task((**t).clone());
        }
        assert_eq!(rebuilt.in_flight, self.in_flight, "in-flight counts");
        assert_eq!(
            rebuilt.lease_expiry, self.lease_expiry,
            "lease expiry index"
        );
        assert_eq!(
            rebuilt.pending_by_project, self.pending_by_project,
            "per-project orders"
        );
        for w in self.workers.values() {
            assert!(
                self.pools.contains_key(&w.pool),
                "worker {} in unknown pool",
                w.name
            );
            for t in &w.tasks {
                let task = &self.tasks[t];
                assert!(
                    task.state.in_flight(),
                    "worker {} holds task {t}, which is {}",
                    w.name,
                    task.state.as_str()
                );
                assert_eq!(
                    task.worker(),
                    Some(w.name.as_str()),
                    "task {t} names its worker"
                );
            }
        }
        for t in self.tasks.values().filter(|t| t.state.in_flight()) {
            let w = t.worker().and_then(|w| self.workers.get(w));
            assert!(
                w.is_some_and(|w| w.tasks.contains(&t.id)),
                "in-flight task {} is held",
                t.id
            );
            assert!(
                t.fencing_token() < self.next_fencing_token,
                "fencing tokens only grow"
            );
        }
        assert_eq!(
            rebuilt.queued_per_run, self.queued_per_run,
            "per-run counts"
        );
        assert_eq!(
            self.pending.keys().collect::<Vec<_>>(),
            self.queues.keys().collect::<Vec<_>>()
        );
        for (queue, order) in &self.pending {
            order.check_invariants();
            let ours: Vec<(u64, u128)> = order.iter().collect();
            let theirs: Vec<(u64, u128)> = rebuilt.pending[queue].iter().collect();
            assert_eq!(ours, theirs, "queue {queue}: order out of date");
            for (position, &(id, rank)) in ours.iter().enumerate() {
                assert_eq!(
                    order.position(id, rank),
                    Some(position),
                    "positions are a permutation"
                );
            }
        }
        if let Some((&max_id, _)) = self.tasks.last_key_value() {
            assert!(self.next_task_id > max_id, "task ids only grow");
        }
        assert_eq!(self.idempotency.len(), self.idempotency_by_time.len());
    }
}

/// The run a task counts in for run concurrency: its project's run
/// (`project/run`; names hold no `/`), or itself alone (`#id`).
pub(crate) fn run_key(t: &Task) -> String {
    match t.run.as_str() {
        "" => format!("#{}", t.id),
        run => format!("{}/{run}", t.project),
    }
}

/// [`State::count`] over the counters alone, so that a caller can hold a
/// task of `State::tasks` mutably meanwhile.
fn count(
    in_flight: &mut BTreeMap<u64, InFlight>,
    queued_per_run: &mut BTreeMap<(CompactString, CompactString), u64>,
    t: &Task,
    add: bool,
) {
    fn bump(n: &mut u64, add: bool) {
        *n = if add { *n + 1 } else { *n - 1 };
    }
    if t.state == TaskState::Queued && !t.run.is_empty() {
        let key = (t.project.clone(), t.run.clone());
        let n = queued_per_run.entry(key.clone()).or_default();
        bump(n, add);
        if *n == 0 {
            queued_per_run.remove(&key);
        }
    }
    if t.state.in_flight() {
        let f = in_flight.entry(t.queue).or_default();
        bump(&mut f.tasks, add);
        let run = run_key(t);
        let n = f.runs.entry(run.clone()).or_default();
        bump(n, add);
        if *n == 0 {
            f.runs.remove(&run);
        }
        for (name, amount) in &t.resources {
            let sum = f.resources.entry(name.clone()).or_default();
            *sum = if add { *sum + amount } else { *sum - amount };
            if *sum == 0 {
                f.resources.remove(name);
            }
        }
        if f.tasks == 0 {
            in_flight.remove(&t.queue);
        }
    }
}

mod pools;
mod projects;
mod queues;
mod tasks;
#[cfg(test)]
pub(crate) mod tests;
mod workers;
