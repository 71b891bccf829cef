//! Creating queues, draining and activating them.

use super::{Key, State, DEFAULT_QUEUE};
use crate::model::limits::QUEUES_MAX;
use crate::model::spec::{ClusterSelector, QueueSpec, QueueState};
use crate::model::{ModelError, Queue, Reply};

impl State {
    pub(super) fn create_queue(
        &mut self,
        name: &str,
        pool: &str,
        spec: &QueueSpec,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        self.check_selector(pool, spec)?;
        if self.queues.contains_key(name) {
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
        self.insert_queue(Queue {
            name: name.to_string(),
            pool: pool.to_string(),
            spec: spec.clone(),
            state: QueueState::Active,
            created_ms: self.clock_ms,
            updated_ms: self.clock_ms,
            version: 1,
        });
        changed.push(Key::Queue(name.to_string()));
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
        let now = self.clock_ms;
        let q = self
            .queues
            .get(name)
            .ok_or_else(|| ModelError::not_found("name", format!("no queue named {name:?}")))?;
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
        let q = self.queue_mut(name)?;
        q.spec = spec.clone();
        touch(q, now);
        changed.push(Key::Queue(name.to_string()));
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

    /// Draining stops submissions; the queue is `drained` once it holds no
    /// queued or running task (at once when it is empty).
    pub(super) fn drain_queue(
        &mut self,
        name: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        if name == DEFAULT_QUEUE {
            return Err(ModelError::precondition(
                "name",
                "the default queue is always active and cannot be drained",
            ));
        }
        let empty = self.queued(name) == 0;
        let now = self.clock_ms;
        let q = self.queue_mut(name)?;
        if q.state != QueueState::Active {
            return Err(ModelError::precondition(
                "name",
                format!("queue {name:?} is already {}", q.state.as_str()),
            ));
        }
        q.state = if empty {
            QueueState::Drained
        } else {
            QueueState::Draining
        };
        touch(q, now);
        changed.push(Key::Queue(name.to_string()));
        Ok(Reply::QueueChanged {
            name: name.to_string(),
        })
    }

    pub(super) fn activate_queue(
        &mut self,
        name: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let now = self.clock_ms;
        let q = self.queue_mut(name)?;
        if q.state == QueueState::Active {
            return Err(ModelError::precondition(
                "name",
                format!("queue {name:?} is already active"),
            ));
        }
        q.state = QueueState::Active;
        touch(q, now);
        changed.push(Key::Queue(name.to_string()));
        Ok(Reply::QueueChanged {
            name: name.to_string(),
        })
    }

    fn queue_mut(&mut self, name: &str) -> Result<&mut Queue, ModelError> {
        self.queues
            .get_mut(name)
            .ok_or_else(|| ModelError::not_found("name", format!("no queue named {name:?}")))
    }
}

/// Records a change to a queue.
fn touch(q: &mut Queue, now_ms: u64) {
    q.updated_ms = now_ms;
    q.version += 1;
}
