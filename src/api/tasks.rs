//! `laneq.v1.Tasks`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{convert, key_reused, propose, read_barrier};
use crate::model::{Op, Reply};
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
        let op = Op::SubmitTask {
            queue: req.queue,
            command: req.command,
            payload: req.payload,
        };
        match propose(&self.node, req.meta, op).await? {
            (Reply::TaskSubmitted { id }, replayed) => Ok(Response::new(SubmitTaskResponse {
                id,
                created: !replayed,
            })),
            (other, _) => Err(key_reused(other)),
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
