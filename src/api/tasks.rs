//! `laneq.v1.Tasks`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::{model_status, node_status};
use super::queues::idempotency_key;
use super::{convert, read_barrier};
use crate::model::{Op, Reply, Write};
use crate::proto::v1::tasks_server::Tasks;
use crate::proto::v1::*;
use crate::raft::RaftNode;

pub struct TasksApi {
    pub(super) node: Arc<RaftNode>,
}

#[tonic::async_trait]
impl Tasks for TasksApi {
    async fn submit_task(
        &self,
        req: Request<SubmitTaskRequest>,
    ) -> Result<Response<SubmitTaskResponse>, Status> {
        let req = req.into_inner();
        let write = Write {
            idempotency_key: idempotency_key(req.meta)?,
            op: Op::SubmitTask {
                queue: req.queue,
                command: req.command,
                payload: req.payload,
            },
        };
        crate::model::validate_write(&write).map_err(model_status)?;
        let response = self.node.write(write).await.map_err(node_status)?;
        let replayed = response.replayed;
        match response.result.map_err(model_status)? {
            Reply::TaskSubmitted { id } => Ok(Response::new(SubmitTaskResponse {
                id,
                created: !replayed,
            })),
            other => Err(Status::failed_precondition(format!(
                "meta.idempotency_key: already used for another kind of write ({other:?})"
            ))),
        }
    }

    async fn get_task(
        &self,
        req: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        let req = req.into_inner();
        read_barrier(&self.node, req.consistency).await?;
        let state = self.node.sm().state();
        let task = state
            .task(req.id)
            .ok_or_else(|| Status::not_found(format!("id: no task {}", req.id)))?;
        Ok(Response::new(GetTaskResponse {
            task: Some(convert::task(&state, task)),
        }))
    }
}
