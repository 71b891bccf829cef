//! `laneq.v1.Queues`.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::error::model_status;
use super::{convert, key_reused, nth_write, propose, read_barrier};
use crate::model::{Op, Reply};
use crate::proto::v1::queues_server::Queues;
use crate::proto::v1::*;
use crate::raft::RaftNode;

pub struct QueuesApi {
    pub(super) node: Arc<RaftNode>,
}

impl QueuesApi {
    /// Proposes a change to one queue and answers with the queue after it.
    async fn change(&self, meta: Option<WriteMeta>, op: Op) -> Result<Option<Queue>, Status> {
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
    /// Proposes a clear or forced delete, then its following steps until no
    /// queued task remains: each command dequeues a bounded number, and the
    /// first decides it for all (see `Queue::clearing`). The n-th command's
    /// idempotency key is derived from the request's, so a retried request
    /// replays the commands that were applied and goes on from there.
    /// Returns how many tasks were dequeued in all.
    async fn until_cleared(
        &self,
        meta: Option<WriteMeta>,
        op: impl Fn() -> Op,
    ) -> Result<u64, Status> {
        let meta = meta.unwrap_or_default();
        let mut total = 0;
        for n in 0u64.. {
            let step = propose(&self.node, Some(nth_write(&meta, n)), op()).await;
            match step {
                Ok((
                    Reply::QueueCleared {
                        dequeued,
                        remaining,
                        ..
                    },
                    _,
                )) => {
                    total += dequeued;
                    if remaining == 0 {
                        break;
                    }
                }
                Ok((other, _)) => return Err(key_reused(other)),
                // The leader finished a forced delete that this request began
                // (see `run_stalled_clears`).
                Err(e) if n > 0 && e.code() == tonic::Code::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

/// How long a clear under way may go without a step before the leader takes
/// it over: its client has given up or died.
const CLEAR_RESUME_AFTER: Duration = Duration::from_secs(2);

/// On the leader: finishes every clear or forced delete that its client
/// left unfinished, so that what the first step decided always happens.
pub async fn run_stalled_clears(node: Arc<RaftNode>) {
    loop {
        tokio::time::sleep(CLEAR_RESUME_AFTER / 2).await;
        if node.status().role != "leader" {
            continue;
        }
        let stalled = node.sm().state().stalled_clears(
            crate::clock::now_ms(),
            CLEAR_RESUME_AFTER.as_millis() as u64,
        );
        for name in stalled {
            let meta = WriteMeta {
                idempotency_key: crate::client::new_idempotency_key(),
                actor: "laneq".to_string(),
            };
            let api = QueuesApi { node: node.clone() };
            let op = || Op::ClearQueue { name: name.clone() };
            match api.until_cleared(Some(meta), op).await {
                Ok(dequeued) => tracing::info!(queue = %name, dequeued, "finished a stalled clear"),
                Err(e) => {
                    tracing::warn!(queue = %name, error = %e, "finishing a stalled clear failed")
                }
            }
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

    async fn rename_queue(
        &self,
        req: Request<RenameQueueRequest>,
    ) -> Result<Response<RenameQueueResponse>, Status> {
        let req = req.into_inner();
        let op = Op::RenameQueue {
            name: req.name,
            new_name: req.new_name,
        };
        let queue = self.change(req.meta, op).await?;
        Ok(Response::new(RenameQueueResponse { queue }))
    }

    async fn clear_queue(
        &self,
        req: Request<ClearQueueRequest>,
    ) -> Result<Response<ClearQueueResponse>, Status> {
        let req = req.into_inner();
        let name = req.name;
        let dequeued = self
            .until_cleared(req.meta, || Op::ClearQueue { name: name.clone() })
            .await?;
        let state = self.node.sm().state();
        let queue = state.queue(&name).map(|q| convert::queue(&state, q));
        Ok(Response::new(ClearQueueResponse { queue, dequeued }))
    }

    async fn delete_queue(
        &self,
        req: Request<DeleteQueueRequest>,
    ) -> Result<Response<DeleteQueueResponse>, Status> {
        let req = req.into_inner();
        let (name, force) = (req.name, req.force);
        let dequeued = self
            .until_cleared(req.meta, || Op::DeleteQueue {
                name: name.clone(),
                force,
            })
            .await?;
        Ok(Response::new(DeleteQueueResponse { dequeued }))
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
