//! Loading the state from storage, one record at a time in any order (tasks
//! in id order); the derived indexes, which are never stored, are built as
//! the records come in.
//!
//! **Architecture Invariant:** loading every record that applies changed
//! gives a state equal to the one that applied them (the property tests
//! check it); nothing here decides anything.

use super::{MetaRecord, State};
use crate::model::worker::Worker;
use crate::model::{IdempotencyRecord, Pool, Project, Queue, Task};

impl State {
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
}
