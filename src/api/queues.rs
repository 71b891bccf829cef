//! `laneq.v1.Queues`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::{model_status, node_status};
use super::{convert, key_reused, propose, read_barrier, require_key};
use crate::duties::{until_cleared, ClearError};
use crate::model::{Op, Reply};
use crate::proto::v1 as pb;
use crate::proto::v1::queues_server::Queues;
use crate::raft::RaftNode;

pub struct QueuesApi {
    pub(super) node: Arc<RaftNode>,
}

impl QueuesApi {
    /// Proposes a change to one queue and answers with the queue after it.
    async fn change(
        &self,
        meta: Option<pb::WriteMeta>,
        op: Op,
    ) -> Result<Option<pb::Queue>, Status> {
        match propose(&self.node, meta, op).await?.0 {
            Reply::QueueChanged { name } | Reply::QueueCreated { name } => {
                let state = self.node.sm().state();
                Ok(state.queue(&name).map(|q| convert::queue(&state, q)))
            }
            other => Err(key_reused(other)),
        }
    }
}

impl QueuesApi {
    /// Runs a clear or forced delete to its end (see `duties::until_cleared`)
    /// under the request's idempotency key.
    async fn until_cleared(
        &self,
        meta: Option<pb::WriteMeta>,
        op: impl Fn() -> Op,
    ) -> Result<u64, Status> {
        let meta = meta.unwrap_or_default();
        require_key(&meta)?;
        until_cleared(&self.node, &meta.idempotency_key, &meta.actor, op)
            .await
            .map_err(|e| match e {
                ClearError::Node(e) => node_status(e),
                ClearError::Refused(e) => model_status(e),
                ClearError::KeyReused(other) => key_reused(other),
            })
    }
}

#[tonic::async_trait]
impl Queues for QueuesApi {
    async fn update_queue(
        &self,
        req: Request<pb::UpdateQueueRequest>,
    ) -> Result<Response<pb::UpdateQueueResponse>, Status> {
        let req = req.into_inner();
        let op = Op::UpdateQueue {
            name: req.name,
            pool: req.pool,
            spec: convert::spec_from_proto(req.spec).map_err(model_status)?,
            expected_version: req.expected_version,
        };
        let queue = self.change(req.meta, op).await?;
        Ok(Response::new(pb::UpdateQueueResponse { queue }))
    }

    async fn drain_queue(
        &self,
        req: Request<pb::DrainQueueRequest>,
    ) -> Result<Response<pb::DrainQueueResponse>, Status> {
        let req = req.into_inner();
        let queue = self
            .change(req.meta, Op::DrainQueue { name: req.name })
            .await?;
        Ok(Response::new(pb::DrainQueueResponse { queue }))
    }

    async fn activate_queue(
        &self,
        req: Request<pb::ActivateQueueRequest>,
    ) -> Result<Response<pb::ActivateQueueResponse>, Status> {
        let req = req.into_inner();
        let queue = self
            .change(req.meta, Op::ActivateQueue { name: req.name })
            .await?;
        Ok(Response::new(pb::ActivateQueueResponse { queue }))
    }

    async fn rename_queue(
        &self,
        req: Request<pb::RenameQueueRequest>,
    ) -> Result<Response<pb::RenameQueueResponse>, Status> {
        let req = req.into_inner();
        let op = Op::RenameQueue {
            name: req.name,
            new_name: req.new_name,
        };
        let queue = self.change(req.meta, op).await?;
        Ok(Response::new(pb::RenameQueueResponse { queue }))
    }

    async fn clear_queue(
        &self,
        req: Request<pb::ClearQueueRequest>,
    ) -> Result<Response<pb::ClearQueueResponse>, Status> {
        let req = req.into_inner();
        let name = req.name;
        let dequeued = self
            .until_cleared(req.meta, || Op::ClearQueue { name: name.clone() })
            .await?;
        let state = self.node.sm().state();
        let queue = state.queue(&name).map(|q| convert::queue(&state, q));
        Ok(Response::new(pb::ClearQueueResponse { queue, dequeued }))
    }

    async fn delete_queue(
        &self,
        req: Request<pb::DeleteQueueRequest>,
    ) -> Result<Response<pb::DeleteQueueResponse>, Status> {
        let req = req.into_inner();
        let (name, force) = (req.name, req.force);
        let dequeued = self
            .until_cleared(req.meta, || Op::DeleteQueue {
                name: name.clone(),
                force,
            })
            .await?;
        Ok(Response::new(pb::DeleteQueueResponse { dequeued }))
    }

    async fn set_queue_retention(
        &self,
        req: Request<pb::SetQueueRetentionRequest>,
    ) -> Result<Response<pb::SetQueueRetentionResponse>, Status> {
        let req = req.into_inner();
        let op = Op::SetQueueRetention {
            name: req.name,
            age_ms: rule(req.age_ms),
            count: rule(req.count),
        };
        let queue = self.change(req.meta, op).await?;
        Ok(Response::new(pb::SetQueueRetentionResponse { queue }))
    }

    async fn create_queue(
        &self,
        req: Request<pb::CreateQueueRequest>,
    ) -> Result<Response<pb::CreateQueueResponse>, Status> {
        let req = req.into_inner();
        let op = Op::CreateQueue {
            name: req.name,
            pool: if req.pool.is_empty() {
                crate::model::DEFAULT_POOL.to_string()
            } else {
                req.pool
            },
            spec: convert::spec_from_proto(req.spec).map_err(model_status)?,
        };
        let queue = self.change(req.meta, op).await?;
        Ok(Response::new(pb::CreateQueueResponse { queue }))
    }

    async fn get_queue(
        &self,
        req: Request<pb::GetQueueRequest>,
    ) -> Result<Response<pb::GetQueueResponse>, Status> {
        let req = req.into_inner();
        crate::model::validate::name("name", &req.name).map_err(model_status)?;
        read_barrier(&self.node, req.consistency).await?;
        let state = self.node.sm().state();
        let queue = state
            .queue(&req.name)
            .ok_or_else(|| Status::not_found(format!("name: no queue named {:?}", req.name)))?;
        Ok(Response::new(pb::GetQueueResponse {
            queue: Some(convert::queue(&state, queue)),
        }))
    }

    async fn list_queues(
        &self,
        req: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        read_barrier(&self.node, req.into_inner().consistency).await?;
        let state = self.node.sm().state();
        let queues = state.queues().map(|q| convert::queue(&state, q)).collect();
        Ok(Response::new(pb::ListQueuesResponse { queues }))
    }
}

/// A rule change as the model takes it: unset keeps the rule, `default`
/// follows the organisation's again, a value sets it.
fn rule(r: Option<pb::RetentionRule>) -> Option<Option<u64>> {
    use pb::retention_rule::Rule;
    match r?.rule? {
        Rule::Default(_) => Some(None),
        Rule::Value(v) => Some(Some(v)),
    }
}
