//! `laneq.v1.Pools`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::model_status;
use super::{key_reused, propose, read_barrier};
use crate::model::{Op, Reply};
use crate::proto::v1 as pb;
use crate::proto::v1::pools_server::Pools;
use crate::raft::RaftNode;

pub struct PoolsApi {
    pub(super) node: Arc<RaftNode>,
}

/// A pool on the wire; `queues` is the number of queues in it.
fn pool(p: &crate::model::Pool, queues: usize) -> pb::Pool {
    pb::Pool {
        name: p.name.clone(),
        clusters: p.clusters.iter().cloned().collect(),
        queues: queues as u64,
        created_ms: p.created_ms,
        updated_ms: p.updated_ms,
        version: p.version,
    }
}

impl PoolsApi {
    /// Proposes a pool write and answers with the pool as it is after it.
    async fn write(&self, meta: Option<pb::WriteMeta>, op: Op) -> Result<Option<pb::Pool>, Status> {
        match propose(&self.node, meta, op).await?.0 {
            Reply::Pool { name } => {
                let state = self.node.sm().state();
                Ok(state
                    .pool(&name)
                    .map(|p| pool(p, state.queues_in_pool(&name))))
            }
            other => Err(key_reused(other)),
        }
    }
}

#[tonic::async_trait]
impl Pools for PoolsApi {
    async fn create_pool(
        &self,
        req: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::CreatePoolResponse>, Status> {
        let req = req.into_inner();
        let op = Op::CreatePool {
            name: req.name,
            clusters: req.clusters,
        };
        let pool = self.write(req.meta, op).await?;
        Ok(Response::new(pb::CreatePoolResponse { pool }))
    }

    async fn get_pool(
        &self,
        req: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::GetPoolResponse>, Status> {
        let req = req.into_inner();
        crate::model::validate::name("name", &req.name).map_err(model_status)?;
        read_barrier(&self.node, req.consistency).await?;
        let state = self.node.sm().state();
        let p = state
            .pool(&req.name)
            .ok_or_else(|| Status::not_found(format!("name: no pool named {:?}", req.name)))?;
        Ok(Response::new(pb::GetPoolResponse {
            pool: Some(pool(p, state.queues_in_pool(&p.name))),
        }))
    }

    async fn list_pools(
        &self,
        req: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        read_barrier(&self.node, req.into_inner().consistency).await?;
        let state = self.node.sm().state();
        // One pass over the queues for all pools, not one per pool.
        let counts = state.queues_per_pool();
        let pools = state
            .pools()
            .map(|p| pool(p, counts.get(p.name.as_str()).copied().unwrap_or(0)))
            .collect();
        Ok(Response::new(pb::ListPoolsResponse { pools }))
    }

    async fn add_cluster(
        &self,
        req: Request<pb::AddClusterRequest>,
    ) -> Result<Response<pb::AddClusterResponse>, Status> {
        let req = req.into_inner();
        let op = Op::AddCluster {
            pool: req.pool,
            cluster: req.cluster,
        };
        let pool = self.write(req.meta, op).await?;
        Ok(Response::new(pb::AddClusterResponse { pool }))
    }

    async fn remove_cluster(
        &self,
        req: Request<pb::RemoveClusterRequest>,
    ) -> Result<Response<pb::RemoveClusterResponse>, Status> {
        let req = req.into_inner();
        let op = Op::RemoveCluster {
            pool: req.pool,
            cluster: req.cluster,
        };
        let pool = self.write(req.meta, op).await?;
        Ok(Response::new(pb::RemoveClusterResponse { pool }))
    }
}
