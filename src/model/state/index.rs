//! The derived indexes of the state: queue ids by name, each queue's order
//! and its split by project, lease expiries, in-flight and per-run counts,
//! finished tasks by the time they finished.
//! Apply keeps them in step with the records through these functions.
//!
//! **Architecture Invariant:** an index holds nothing that the records do not
//! imply: `check_invariants` rebuilds each from the records and compares.

use std::collections::BTreeMap;

use super::{InFlight, Key, State};
use crate::model::order::Reranked;
use crate::model::{CompactString, ModelError, Queue, Task, TaskState};

impl State {
    /// The id of a queue named in field `field`.
    pub(super) fn queue_id(&self, field: &str, name: &str) -> Result<u64, ModelError> {
        self.queue_ids
            .get(name)
            .copied()
            .ok_or_else(|| ModelError::not_found(field, format!("no queue named {name:?}")))
    }

    pub(super) fn insert_queue(&mut self, queue: Queue) {
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
    pub(super) fn rerank(&mut self, reranked: Reranked, changed: &mut Vec<Key>) {
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
    pub(super) fn unindex_project(&mut self, queue: u64, project: &str, id: u64, rank: u128) {
        let key = (queue, CompactString::from(project));
        if let Some(order) = self.pending_by_project.get_mut(&key) {
            order.remove(id, rank);
            if order.is_empty() {
                self.pending_by_project.remove(&key);
            }
        }
    }

    pub(super) fn insert_task(&mut self, task: Task) {
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
        if let Some(at_ms) = task.finished_ms() {
            self.finished
                .entry(task.queue)
                .or_default()
                .insert((at_ms, task.id));
        }
        self.count(&task, true);
        self.next_task_id = self.next_task_id.max(task.id + 1);
        self.tasks.insert(task.id, Box::new(task));
    }

    /// Adds a task to (or removes it from) the derived counters of its state,
    /// except the queue order, which callers keep with its ranks.
    pub(super) fn count(&mut self, t: &Task, add: bool) {
        count(&mut self.in_flight, &mut self.queued_per_run, t, add);
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
pub(super) fn count(
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
