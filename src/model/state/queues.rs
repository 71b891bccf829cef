//! Queues: create, update, rename, clear, delete, drain and activate, and
//! the organisation's default queue.

use super::{Key, State, DEFAULT_QUEUE_ID};
use crate::model::limits::{CLEAR_MAX_PER_COMMAND, QUEUES_MAX};
use crate::model::spec::{ClusterSelector, QueueSpec, QueueState};
use crate::model::{Clearing, ModelError, Queue, Reply, TaskState};

impl State {
    pub(super) fn create_queue(
        &mut self,
        name: &str,
        pool: &str,
        spec: &QueueSpec,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        self.check_selector(pool, spec)?;
        if self.queue_ids.contains_key(name) {
            return Err(ModelError::exists(
                "name",
                format!("queue {name:?} already exists"),
            ));
        }
        if self.queues.len() >= QUEUES_MAX {
            return Err(ModelError::exhausted(
                "name",
                format!("the store holds {QUEUES_MAX} queues, the limit"),
            ));
        }
        let id = self.next_queue_id;
        self.insert_queue(Queue {
            id,
            name: name.to_string(),
            pool: pool.to_string(),
            spec: spec.clone(),
            state: QueueState::Active,
            created_ms: self.clock_ms,
            updated_ms: self.clock_ms,
            activity_ms: self.clock_ms,
            version: 1,
            recent_waits: Default::default(),
            rr_last_project: String::new(),
            clearing: None,
        });
        changed.push(Key::Queue(id));
        Ok(Reply::QueueCreated {
            name: name.to_string(),
        })
    }

    pub(super) fn update_queue(
        &mut self,
        name: &str,
        pool: Option<&str>,
        spec: &QueueSpec,
        expected_version: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let id = self.queue_id("name", name)?;
        let q = &self.queues[&id];
        if q.version != expected_version {
            return Err(ModelError::aborted(
                "expected_version",
                format!(
                    "queue {name:?} is at version {}, the update was based on version \
                     {expected_version}; read it again and redo the change",
                    q.version
                ),
            ));
        }
        if let Some(pool) = pool.filter(|p| *p != q.pool) {
            return Err(ModelError::precondition(
                "pool",
                format!(
                    "queue {name:?} is in pool {:?} for good; it cannot move to {pool:?}",
                    q.pool
                ),
            ));
        }
        let current_pool = q.pool.clone();
        self.check_selector(&current_pool, spec)?;
        let q = self.touch_queue(id, changed);
        q.spec = spec.clone();
        Ok(Reply::QueueChanged {
            name: name.to_string(),
        })
    }

    /// Every cluster a spec selects must be in the pool.
    fn check_selector(&self, pool: &str, spec: &QueueSpec) -> Result<(), ModelError> {
        let Some(p) = self.pools.get(pool) else {
            return Err(ModelError::not_found(
                "pool",
                format!("no pool named {pool:?}"),
            ));
        };
        if let ClusterSelector::Only(clusters) = &spec.clusters {
            if let Some(c) = clusters.iter().find(|c| !p.clusters.contains(*c)) {
                return Err(ModelError::invalid(
                    "clusters",
                    format!("pool {pool:?} has no cluster {c:?}"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn rename_queue(
        &mut self,
        name: &str,
        new_name: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let id = self.queue_id("name", name)?;
        if id == DEFAULT_QUEUE_ID {
            return Err(ModelError::precondition(
                "name",
                "the default queue cannot be renamed",
            ));
        }
        // The steps of a clear under way name the queue.
        self.check_not_clearing(id, "name")?;
        if self.queue_ids.contains_key(new_name) {
            return Err(ModelError::exists(
                "new_name",
                format!("queue {new_name:?} already exists"),
            ));
        }
        self.queue_ids.remove(name);
        self.queue_ids.insert(new_name.to_string(), id);
        self.touch_queue(id, changed).name = new_name.to_string();
        Ok(Reply::QueueChanged {
            name: new_name.to_string(),
        })
    }

    /// Every queued task becomes `dequeued`; in-flight work is untouched.
    /// Goes on with a clear or forced delete under way (see
    /// [`Queue::clearing`]).
    pub(super) fn clear_queue(
        &mut self,
        name: &str,
        actor: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let id = self.queue_id("name", name)?;
        let kind = self.queues[&id].clearing.unwrap_or(Clearing::Clear);
        Ok(self.clear_some(id, kind, actor, changed))
    }

    /// One step of a clear or forced delete: marks the queue (the first of
    /// several steps), dequeues at most `CLEAR_MAX_PER_COMMAND` of its
    /// queued tasks from the back, and ends the clear once none is left: a
    /// delete then removes the queue.
    fn clear_some(
        &mut self,
        id: u64,
        kind: Clearing,
        actor: &str,
        changed: &mut Vec<Key>,
    ) -> Reply {
        let name = self.queues[&id].name.clone();
        let queued = self.queued(id);
        if queued > CLEAR_MAX_PER_COMMAND && self.queues[&id].clearing != Some(kind) {
            self.touch_queue(id, changed).clearing = Some(kind);
        }
        let reason = match kind {
            Clearing::Clear => "the queue was cleared",
            Clearing::Delete => "the queue was deleted",
        };
        let from = queued.saturating_sub(CLEAR_MAX_PER_COMMAND);
        let ids = self.queued_range(id, from, CLEAR_MAX_PER_COMMAND);
        for &task in &ids {
            self.transition(task, TaskState::Dequeued, actor, reason, None, changed);
        }
        if !ids.is_empty() {
            self.queue_activity(id, changed);
        }
        let remaining = self.queued(id) as u64;
        if remaining == 0 {
            match kind {
                Clearing::Clear => {
                    if self.queues[&id].clearing.is_some() {
                        self.touch_queue(id, changed).clearing = None;
                    }
                    self.settle_queue(id, changed);
                }
                Clearing::Delete => {
                    self.queues.remove(&id);
                    self.queue_ids.remove(&name);
                    self.pending.remove(&id);
                    changed.push(Key::Queue(id));
                    self.forget_counters(id, changed);
                    self.forget_queue_retention(id, changed);
                }
            }
        }
        Reply::QueueCleared {
            name,
            dequeued: ids.len() as u64,
            remaining,
        }
    }

    /// Deletes a queue that holds no queued or in-flight task. With `force`,
    /// its queued tasks are dequeued first, as by a clear. Goes on with a
    /// forced delete under way. Terminal tasks keep its id.
    pub(super) fn delete_queue(
        &mut self,
        name: &str,
        force: bool,
        actor: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let id = self.queue_id("name", name)?;
        if self.queues[&id].clearing == Some(Clearing::Delete) {
            return Ok(self.clear_some(id, Clearing::Delete, actor, changed));
        }
        if id == DEFAULT_QUEUE_ID {
            return Err(ModelError::precondition(
                "name",
                "the default queue cannot be deleted",
            ));
        }
        if id == self.default_queue {
            return Err(ModelError::precondition(
                "name",
                format!(
                    "queue {name:?} is the organisation's default queue; set another first \
                     (laneq config set default-queue)"
                ),
            ));
        }
        if let Some(p) = self
            .projects
            .values()
            .find(|p| p.default_queue == Some(id) || p.allowed_queues.contains(&id))
        {
            return Err(ModelError::precondition(
                "name",
                format!(
                    "project {:?} names queue {name:?} as its default or allowed queue; \
                     update the project first",
                    p.name
                ),
            ));
        }
        let in_flight = self.in_flight_tasks(id);
        if in_flight > 0 {
            return Err(ModelError::precondition(
                "name",
                format!("queue {name:?} has {in_flight} leased or running tasks; drain it first"),
            ));
        }
        let queued = self.queued(id);
        if queued > 0 && !force {
            return Err(ModelError::precondition(
                "name",
                format!(
                    "queue {name:?} has {queued} queued tasks; clear it first, or delete with \
                     force to dequeue them"
                ),
            ));
        }
        Ok(self.clear_some(id, Clearing::Delete, actor, changed))
    }

    /// Refuses a change to queue `id`'s queued tasks, or a task entering
    /// it, while a clear is under way: those tasks are as good as dequeued.
    pub(super) fn check_not_clearing(&self, id: u64, field: &str) -> Result<(), ModelError> {
        match self.queues[&id].clearing {
            None => Ok(()),
            Some(kind) => Err(ModelError::precondition(
                field,
                format!(
                    "queue {:?} is being {}; its queued tasks are being dequeued",
                    self.queues[&id].name,
                    match kind {
                        Clearing::Clear => "cleared",
                        Clearing::Delete => "deleted",
                    }
                ),
            )),
        }
    }

    /// Queues whose clear has had no step for `idle_ms` at `now_ms`: its
    /// client is gone, and the leader goes on with it.
    pub fn stalled_clears(&self, now_ms: u64, idle_ms: u64) -> Vec<String> {
        self.queues
            .values()
            .filter(|q| q.clearing.is_some() && now_ms.saturating_sub(q.activity_ms) >= idle_ms)
            .map(|q| q.name.clone())
            .collect()
    }

    /// Draining stops submissions; the queue is `drained` once it holds no
    /// queued or running task (at once when it is empty).
    pub(super) fn drain_queue(
        &mut self,
        name: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let id = self.queue_id("name", name)?;
        if id == DEFAULT_QUEUE_ID {
            return Err(ModelError::precondition(
                "name",
                "the default queue is always active and cannot be drained",
            ));
        }
        let q = &self.queues[&id];
        if q.state != QueueState::Active {
            return Err(ModelError::precondition(
                "name",
                format!("queue {name:?} is already {}", q.state.as_str()),
            ));
        }
        self.touch_queue(id, changed).state = QueueState::Draining;
        self.settle_queue(id, changed);
        Ok(Reply::QueueChanged {
            name: name.to_string(),
        })
    }

    /// The organisation's default queue becomes `queue`.
    pub(super) fn set_default_queue(&mut self, queue: &str) -> Result<Reply, ModelError> {
        let id = self.queue_id("queue", queue)?;
        self.default_queue = id;
        Ok(Reply::Config)
    }

    pub(super) fn activate_queue(
        &mut self,
        name: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let id = self.queue_id("name", name)?;
        if self.queues[&id].state == QueueState::Active {
            return Err(ModelError::precondition(
                "name",
                format!("queue {name:?} is already active"),
            ));
        }
        self.touch_queue(id, changed).state = QueueState::Active;
        Ok(Reply::QueueChanged {
            name: name.to_string(),
        })
    }

    /// A draining queue with nothing queued or in flight becomes drained.
    pub(super) fn settle_queue(&mut self, id: u64, changed: &mut Vec<Key>) {
        let empty = self.queued(id) == 0 && self.in_flight_tasks(id) == 0;
        if empty && self.queues.get(&id).map(|q| q.state) == Some(QueueState::Draining) {
            self.touch_queue(id, changed).state = QueueState::Drained;
        }
    }

    /// Records a change to a queue's settings, name or state.
    fn touch_queue(&mut self, id: u64, changed: &mut Vec<Key>) -> &mut Queue {
        changed.push(Key::Queue(id));
        let now = self.clock_ms;
        let q = self.queues.get_mut(&id).expect("queue exists");
        q.updated_ms = now;
        q.version += 1;
        q
    }

    /// Records a change to a queue's contents (no version bump: a submit does
    /// not conflict with an edit of the settings).
    pub(super) fn queue_activity(&mut self, id: u64, changed: &mut Vec<Key>) {
        if let Some(q) = self.queues.get_mut(&id) {
            q.activity_ms = self.clock_ms;
            changed.push(Key::Queue(id));
        }
    }
}
