//! `laneq.v1.Queues`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::{model_status, node_status};
use super::{convert, read_barrier};
use crate::model::{Op, Reply, Write};
use crate::proto::v1::queues_server::Queues;
use crate::proto::v1::*;
use crate::raft::RaftNode;

pub struct QueuesApi {
    pub(super) node: Arc<RaftNode>,
}

/// The idempotency key of a request, or an error naming the field.
pub(super) fn idempotency_key(meta: Option<WriteMeta>) -> Result<String, Status> {
    let key = meta.map(|m| m.idempotency_key).unwrap_or_default();
    if key.is_empty() {
        return Err(Status::invalid_argument(
            "meta.idempotency_key: every write needs one, so that a retry is applied once",
        ));
    }
    Ok(key)
}

impl QueuesApi {
    /// Proposes a change to one queue and answers with the queue after it.
    async fn change(&self, meta: Option<WriteMeta>, op: Op) -> Result<Option<Queue>, Status> {
        let write = Write {
            idempotency_key: idempotency_key(meta)?,
            op,
        };
        crate::model::validate_write(&write).map_err(model_status)?;
        let response = self.node.write(write).await.map_err(node_status)?;
        match response.result.map_err(model_status)? {
            Reply::QueueChanged { name } | Reply::QueueCreated { name } => {
                let state = self.node.sm().state();
                Ok(state.queue(&name).map(|q| convert::queue(&state, q)))
            }
            other => Err(Status::failed_precondition(format!(
                "meta.idempotency_key: already used for another kind of write ({other:?})"
            ))),
        }
    }
}

#[tonic::async_trait]
impl Queues for QueuesApi {
    async fn update_queue(
        &self,
        req: Request<UpdateQueueRequest>,
    ) -> Result<Response<UpdateQueueResponse>, Status> {
        let req = req.into_inner();
        let op = Op::UpdateQueue {
            name: req.name,
            pool: req.pool,
            spec: convert::spec_from_proto(req.spec).map_err(model_status)?,
            expected_version: req.expected_version,
        };
        let queue = self.change(req.meta, op).await?;
        Ok(Response::new(UpdateQueueResponse { queue }))
    }

    async fn drain_queue(
        &self,
        req: Request<DrainQueueRequest>,
    ) -> Result<Response<DrainQueueResponse>, Status> {
        let req = req.into_inner();
        let queue = self
            .change(req.meta, Op::DrainQueue { name: req.name })
            .await?;
        Ok(Response::new(DrainQueueResponse { queue }))
    }

    async fn activate_queue(
        &self,
        req: Request<ActivateQueueRequest>,
    ) -> Result<Response<ActivateQueueResponse>, Status> {
        let req = req.into_inner();
        let queue = self
            .change(req.meta, Op::ActivateQueue { name: req.name })
            .await?;
        Ok(Response::new(ActivateQueueResponse { queue }))
    }

    async fn create_queue(
        &self,
        req: Request<CreateQueueRequest>,
    ) -> Result<Response<CreateQueueResponse>, Status> {
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
        Ok(Response::new(CreateQueueResponse { queue }))
    }

    async fn get_queue(
        &self,
        req: Request<GetQueueRequest>,
    ) -> Result<Response<GetQueueResponse>, Status> {
        let req = req.into_inner();
        crate::model::validate::name("name", &req.name).map_err(model_status)?;
        read_barrier(&self.node, req.consistency).await?;
        let state = self.node.sm().state();
        let queue = state
            .queue(&req.name)
            .ok_or_else(|| Status::not_found(format!("name: no queue named {:?}", req.name)))?;
        Ok(Response::new(GetQueueResponse {
            queue: Some(convert::queue(&state, queue)),
        }))
    }

    async fn list_queues(
        &self,
        req: Request<ListQueuesRequest>,
    ) -> Result<Response<ListQueuesResponse>, Status> {
        read_barrier(&self.node, req.into_inner().consistency).await?;
        let state = self.node.sm().state();
        let queues = state.queues().map(|q| convert::queue(&state, q)).collect();
        Ok(Response::new(ListQueuesResponse { queues }))
    }
}
