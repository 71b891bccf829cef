//! Pools and their clusters.

use std::collections::BTreeSet;

use super::{Key, State};
use crate::model::limits::{CLUSTERS_PER_POOL_MAX, POOLS_MAX};
use crate::model::spec::ClusterSelector;
use crate::model::{ModelError, Pool, Reply};

impl State {
    pub(super) fn create_pool(
        &mut self,
        name: &str,
        clusters: &[String],
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        if self.pools.contains_key(name) {
            return Err(ModelError::exists(
                "name",
                format!("pool {name:?} already exists"),
            ));
        }
        if self.pools.len() >= POOLS_MAX {
            return Err(ModelError::exhausted(
                "name",
                format!("the store holds {POOLS_MAX} pools, the limit"),
            ));
        }
        let pool = Pool {
            name: name.to_string(),
            clusters: clusters.iter().cloned().collect::<BTreeSet<_>>(),
            created_ms: self.clock_ms,
            updated_ms: self.clock_ms,
            version: 1,
        };
        self.pools.insert(name.to_string(), pool);
        changed.push(Key::Pool(name.to_string()));
        Ok(Reply::Pool {
            name: name.to_string(),
        })
    }

    pub(super) fn add_cluster(
        &mut self,
        pool: &str,
        cluster: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let now = self.clock_ms;
        let p = self.pool_mut(pool)?;
        if p.clusters.contains(cluster) {
            return Err(ModelError::exists(
                "cluster",
                format!("pool {pool:?} already has cluster {cluster:?}"),
            ));
        }
        if p.clusters.len() >= CLUSTERS_PER_POOL_MAX {
            return Err(ModelError::exhausted(
                "cluster",
                format!("pool {pool:?} holds {CLUSTERS_PER_POOL_MAX} clusters, the limit"),
            ));
        }
        p.clusters.insert(cluster.to_string());
        p.updated_ms = now;
        p.version += 1;
        changed.push(Key::Pool(pool.to_string()));
        Ok(Reply::Pool {
            name: pool.to_string(),
        })
    }

    pub(super) fn remove_cluster(
        &mut self,
        pool: &str,
        cluster: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let selected_by = self.queues.values().find(|q| {
            q.pool == pool
                && matches!(&q.spec.clusters, ClusterSelector::Only(c) if c.contains(cluster))
        });
        if let Some(q) = selected_by {
            return Err(ModelError::precondition(
                "cluster",
                format!(
                    "queue {:?} selects cluster {cluster:?}; change its clusters first",
                    q.name
                ),
            ));
        }
        let now = self.clock_ms;
        let p = self.pool_mut(pool)?;
        if !p.clusters.remove(cluster) {
            return Err(ModelError::not_found(
                "cluster",
                format!("pool {pool:?} has no cluster {cluster:?}"),
            ));
        }
        p.updated_ms = now;
        p.version += 1;
        changed.push(Key::Pool(pool.to_string()));
        Ok(Reply::Pool {
            name: pool.to_string(),
        })
    }

    fn pool_mut(&mut self, name: &str) -> Result<&mut Pool, ModelError> {
        self.pools
            .get_mut(name)
            .ok_or_else(|| ModelError::not_found("pool", format!("no pool named {name:?}")))
    }
}
