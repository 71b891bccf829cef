//! Creating queues.

use super::{Key, State};
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
}
