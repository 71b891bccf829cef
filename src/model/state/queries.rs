//! Reads of the state: records by name or id, and the derived counts and
//! orders the API, the dispatcher and the node's duties ask about.
//!
//! **Architecture Invariant:** `&self` only; nothing here changes the state.

use std::collections::BTreeMap;

use super::{InFlight, MetaRecord, State};
use crate::model::order::QueueOrder;
use crate::model::worker::{Worker, WorkerState};
use crate::model::{CompactString, IdempotencyRecord, Pool, Project, Queue, Task, TaskState};

impl State {
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
                w.state == WorkerState::Active
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

    /// How many idempotency keys are remembered.
    pub fn idempotency_count(&self) -> usize {
        self.idempotency.len()
    }

    /// Number of queued tasks in a queue.
    pub fn queued(&self, queue: u64) -> usize {
        self.pending.get(&queue).map_or(0, QueueOrder::len)
    }

    /// Leased and running tasks of a queue.
    pub fn in_flight(&self, queue: u64) -> Option<&InFlight> {
        self.in_flight.get(&queue)
    }

    /// How many tasks of a queue are leased or running.
    pub fn running(&self, queue: u64) -> u64 {
        self.in_flight(queue).map_or(0, |f| f.tasks)
    }

    /// How many runs of a queue have tasks in flight (the usage of its run
    /// concurrency).
    pub fn runs_active(&self, queue: u64) -> u64 {
        self.in_flight(queue).map_or(0, |f| f.runs.len() as u64)
    }

    pub(super) fn in_flight_tasks(&self, queue: u64) -> u64 {
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
}
