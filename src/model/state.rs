//! The replicated state and its apply. Pure: see the module docs of `model`.

use std::collections::{BTreeMap, BTreeSet};

use super::order::{QueueOrder, Reranked};
use super::spec::{QueueSpec, QueueState};

use super::limits::*;
use super::{
    validate_write, Command, IdempotencyRecord, ModelError, Op, Pool, Queue, Reply, Response, Task,
    TaskState,
};

/// The name of the queue that always exists.
pub const DEFAULT_QUEUE: &str = "default";
/// The name of the pool that always exists.
pub const DEFAULT_POOL: &str = "default";

/// A record that an apply changed, so that storage can persist exactly those.
/// A key whose record no longer exists in the state is a deletion.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// The scalar fields of [`State`] (clock, id counter).
    Meta,
    Queue(String),
    Pool(String),
    Task(u64),
    Idempotency(String),
}

/// Scalar fields persisted under [`Key::Meta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetaRecord {
    pub clock_ms: u64,
    pub next_task_id: u64,
}

/// The whole replicated state. Every replica holds the same value at the same
/// log index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The latest stamped time applied: never goes backwards, even when a new
    /// leader's clock is behind the old one's.
    clock_ms: u64,
    next_task_id: u64,
    queues: BTreeMap<String, Queue>,
    tasks: BTreeMap<u64, Task>,
    idempotency: BTreeMap<String, IdempotencyRecord>,
    pools: BTreeMap<String, Pool>,
    /// Derived: the queued tasks of each queue, in order (O(log n) positions).
    pending: BTreeMap<String, QueueOrder>,
    /// Derived: idempotency keys by first use, for expiry.
    idempotency_by_time: BTreeSet<(u64, String)>,
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// The state before any command: the default queue in the default pool.
    pub fn new() -> Self {
        let mut state = Self {
            clock_ms: 0,
            next_task_id: 1,
            queues: BTreeMap::new(),
            pools: BTreeMap::new(),
            tasks: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            pending: BTreeMap::new(),
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
            name: DEFAULT_QUEUE.to_string(),
            pool: DEFAULT_POOL.to_string(),
            spec: QueueSpec::default(),
            state: QueueState::Active,
            created_ms: 0,
            updated_ms: 0,
            version: 1,
        });
        state
    }

    pub fn meta(&self) -> MetaRecord {
        MetaRecord {
            clock_ms: self.clock_ms,
            next_task_id: self.next_task_id,
        }
    }

    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.get(name)
    }

    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.values()
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
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
        self.tasks.get(&id)
    }

    pub fn idempotency(&self, key: &str) -> Option<&IdempotencyRecord> {
        self.idempotency.get(key)
    }

    /// Number of queued tasks in a queue.
    pub fn queued(&self, queue: &str) -> usize {
        self.pending.get(queue).map_or(0, QueueOrder::len)
    }

    /// The task that would be handed out next from a queue.
    pub fn next_task(&self, queue: &str) -> Option<u64> {
        self.pending.get(queue)?.first()
    }

    /// 0-based position of a queued task in its queue.
    pub fn position(&self, task: &Task) -> Option<usize> {
        if task.state != TaskState::Queued {
            return None;
        }
        self.pending.get(&task.queue)?.position(task.id)
    }

    // --- loading from storage: records in any order, then derived indexes ---

    pub fn load_meta(&mut self, meta: MetaRecord) {
        self.clock_ms = meta.clock_ms;
        self.next_task_id = meta.next_task_id;
    }

    pub fn load_pool(&mut self, pool: Pool) {
        self.pools.insert(pool.name.clone(), pool);
    }

    pub fn load_queue(&mut self, queue: Queue) {
        self.insert_queue(queue);
    }

    pub fn load_task(&mut self, task: Task) {
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

        let key = &cmd.write.idempotency_key;
        if let Some(seen) = self.idempotency.get(key) {
            return Response {
                result: seen.result.clone(),
                replayed: true,
            };
        }
        let result = validate_write(&cmd.write).and_then(|()| self.apply_op(&cmd.write, changed));
        // A malformed key cannot be remembered; every other outcome is, so a
        // retry answers the same even when the first attempt was refused.
        if crate::model::validate::idempotency_key(key).is_ok() {
            self.insert_idempotency(IdempotencyRecord {
                key: key.clone(),
                first_ms: self.clock_ms,
                result: result.clone(),
            });
            changed.push(Key::Idempotency(key.clone()));
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
        Response {
            result,
            replayed: false,
        }
    }

    fn apply_op(
        &mut self,
        write: &super::Write,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        match &write.op {
            Op::CreateQueue { name, pool, spec } => self.create_queue(name, pool, spec, changed),
            Op::SubmitTask {
                queue,
                command,
                payload,
            } => {
                let in_queue = self.queued(queue) as u64;
                let Some(q) = self.queues.get_mut(queue) else {
                    return Err(ModelError::not_found(
                        "queue",
                        format!("no queue named {queue:?}"),
                    ));
                };
                if q.state != QueueState::Active {
                    return Err(ModelError::precondition(
                        "queue",
                        format!(
                            "queue {queue:?} is {} and takes no new tasks",
                            q.state.as_str()
                        ),
                    ));
                }
                if q.spec.depth > 0 && in_queue >= q.spec.depth {
                    return Err(ModelError::exhausted(
                        "queue",
                        format!(
                            "queue {queue:?} is full: {in_queue} tasks queued or running, depth {}",
                            q.spec.depth
                        ),
                    ));
                }
                q.updated_ms = self.clock_ms;
                q.version += 1;
                changed.push(Key::Queue(queue.clone()));
                let id = self.next_task_id;
                self.next_task_id += 1;
                self.tasks.insert(
                    id,
                    Task {
                        id,
                        queue: queue.clone(),
                        state: TaskState::Queued,
                        command: command.clone(),
                        payload: payload.clone(),
                        created_ms: self.clock_ms,
                        idempotency_key: write.idempotency_key.clone(),
                        rank: 0,
                    },
                );
                let reranked = self.pending.entry(queue.clone()).or_default().push_back(id);
                self.rerank(reranked, changed);
                Ok(Reply::TaskSubmitted { id })
            }
            Op::UpdateQueue {
                name,
                pool,
                spec,
                expected_version,
            } => self.update_queue(name, pool.as_deref(), spec, *expected_version, changed),
            Op::DrainQueue { name } => self.drain_queue(name, changed),
            Op::ActivateQueue { name } => self.activate_queue(name, changed),
            Op::CreatePool { name, clusters } => self.create_pool(name, clusters, changed),
            Op::AddCluster { pool, cluster } => self.add_cluster(pool, cluster, changed),
            Op::RemoveCluster { pool, cluster } => self.remove_cluster(pool, cluster, changed),
        }
    }

    fn insert_queue(&mut self, queue: Queue) {
        self.pending.entry(queue.name.clone()).or_default();
        self.queues.insert(queue.name.clone(), queue);
    }

    /// Records the ranks a queue change assigned, so they are persisted.
    fn rerank(&mut self, reranked: Reranked, changed: &mut Vec<Key>) {
        for (id, rank) in reranked {
            self.tasks
                .get_mut(&id)
                .expect("a reranked task exists")
                .rank = rank;
            changed.push(Key::Task(id));
        }
    }

    fn insert_task(&mut self, task: Task) {
        if task.state == TaskState::Queued {
            self.pending
                .entry(task.queue.clone())
                .or_default()
                .insert_with_rank(task.id, task.rank);
        }
        self.next_task_id = self.next_task_id.max(task.id + 1);
        self.tasks.insert(task.id, task);
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
            changed.push(Key::Idempotency(key));
        }
    }

    /// Checks the invariants that must hold after every apply. Panics on a
    /// violation: a diverged state machine must stop, not serve.
    pub fn check_invariants(&self) {
        assert!(
            self.queues.contains_key(DEFAULT_QUEUE),
            "the default queue must exist"
        );
        assert!(
            self.pools.contains_key(DEFAULT_POOL),
            "the default pool must exist"
        );
        assert_eq!(
            self.queues[DEFAULT_QUEUE].state,
            QueueState::Active,
            "the default queue is always active"
        );
        for q in self.queues.values() {
            assert!(
                self.pools.contains_key(&q.pool),
                "queue {} in unknown pool {}",
                q.name,
                q.pool
            );
        }
        let mut queued = 0;
        for (name, order) in &self.pending {
            assert!(
                self.queues.contains_key(name),
                "pending list of unknown queue {name}"
            );
            order.check_invariants();
            for (id, rank) in order.iter() {
                let task = self.tasks.get(&id).expect("pending task must exist");
                assert_eq!(
                    (task.rank, &task.queue),
                    (rank, name),
                    "pending index out of date"
                );
                assert_eq!(task.state, TaskState::Queued);
                queued += 1;
            }
        }
        let queued_tasks = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Queued)
            .count();
        assert_eq!(
            queued, queued_tasks,
            "every queued task is in exactly one queue"
        );
        if let Some((&max_id, _)) = self.tasks.last_key_value() {
            assert!(self.next_task_id > max_id, "task ids only grow");
        }
        assert_eq!(self.idempotency.len(), self.idempotency_by_time.len());
    }
}

mod pools;
mod queues;
#[cfg(test)]
mod tests;
