//! `laneq.v1.Workers`: registration, leases (a long poll), heartbeats and
//! task reports. Heartbeats go into the node's batch and lease polls reserve
//! what they found, both in `crate::duties`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::error::model_status;
use super::{
    convert, key_reused, nth_write, propose, propose_each, read_barrier, refused, require_key,
    write_of,
};
use crate::duties::WorkerHub;
use crate::model::worker::{HeartbeatReport, HeldTask, Registration};
use crate::model::{Op, Reply, DEFAULT_POOL};
use crate::proto::v1 as pb;
use crate::proto::v1::workers_server::Workers;
use crate::raft::RaftNode;

/// Longest a lease call may wait for work.
const LEASE_WAIT_MAX: Duration = Duration::from_secs(60);

pub struct WorkersApi {
    pub(super) node: Arc<RaftNode>,
    pub(super) hub: Arc<WorkerHub>,
    pub(super) logs: Arc<super::logs::Logs>,
}

impl WorkersApi {
    async fn task_change(
        &self,
        meta: Option<pb::WriteMeta>,
        op: Op,
    ) -> Result<Option<pb::Task>, Status> {
        let reply = propose(&self.node, meta, op).await?.0;
        self.changed_task(reply)
    }

    /// The task a change to one task answers with (without its body: the
    /// worker has it).
    fn changed_task(&self, reply: Reply) -> Result<Option<pb::Task>, Status> {
        match reply {
            Reply::Task { id } => {
                let state = self.node.sm().state();
                Ok(state.task(id).map(|t| convert::task(&state, t, None)))
            }
            other => Err(key_reused(other)),
        }
    }

    /// Leases for `worker` if the dispatcher, run on this node's state,
    /// finds anything; `attempt` derives the idempotency key of the write.
    async fn try_lease(
        &self,
        meta: &pb::WriteMeta,
        worker: &str,
        max_tasks: u32,
        attempt: u64,
    ) -> Result<Vec<pb::Lease>, Status> {
        let meta = nth_write(meta, attempt);
        let op = Op::LeaseTasks {
            worker: worker.to_string(),
            max_tasks,
            ttl_ms: self.hub.settings.lease_ttl_ms,
        };
        match propose(&self.node, Some(meta), op).await?.0 {
            Reply::Leased { leases } => {
                let state = self.node.sm().state();
                Ok(leases
                    .into_iter()
                    .filter_map(|(id, token, expires)| {
                        let t = state.task(id)?;
                        let body = self.node.sm().task_body(id).ok().flatten();
                        Some(pb::Lease {
                            task: Some(convert::task(&state, t, body)),
                            fencing_token: token,
                            expires_ms: expires,
                        })
                    })
                    .collect())
            }
            other => Err(key_reused(other)),
        }
    }
}

impl WorkersApi {
    /// A retried request first replays what its key (and the keys derived
    /// from it) already leased, so a lost answer loses no lease. Returns
    /// what the last replayed attempt leased (nothing when none was made or
    /// none leased anything) and the number of the next attempt.
    async fn replay(
        &self,
        meta: &pb::WriteMeta,
        worker: &str,
        max_tasks: u32,
    ) -> Result<(Vec<pb::Lease>, u64), Status> {
        let mut attempt = 0;
        loop {
            let key = nth_write(meta, attempt).idempotency_key;
            if self.node.sm().state().idempotency(&key).is_none() {
                return Ok((Vec::new(), attempt));
            }
            let leases = self.try_lease(meta, worker, max_tasks, attempt).await?;
            attempt += 1;
            if !leases.is_empty() {
                return Ok((leases, attempt));
            }
        }
    }
}

#[tonic::async_trait]
impl Workers for WorkersApi {
    type ServeLogsStream = super::logs::AskStream;

    async fn serve_logs(
        &self,
        req: Request<tonic::Streaming<pb::LogUpload>>,
    ) -> Result<Response<Self::ServeLogsStream>, Status> {
        self.logs
            .serve_logs(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn register_worker(
        &self,
        req: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let req = req.into_inner();
        let registration = Registration {
            name: req.name,
            ip: req.ip,
            pool: match req.pool.as_str() {
                "" => DEFAULT_POOL.to_string(),
                _ => req.pool,
            },
            cluster: req.cluster,
            queues: req.queues,
            capacity: req.capacity.into_iter().collect(),
            slots: req.slots,
        };
        match propose(&self.node, req.meta, Op::RegisterWorker(registration))
            .await?
            .0
        {
            Reply::Worker { name } => {
                let state = self.node.sm().state();
                let worker = state.worker(&name).map(|w| convert::worker(&state, w));
                Ok(Response::new(pb::RegisterWorkerResponse { worker }))
            }
            other => Err(key_reused(other)),
        }
    }

    /// A long poll. The dispatcher is first run on this node's state; only
    /// when it finds work is a lease written (and the dispatcher run again,
    /// authoritatively, in apply). Otherwise it waits for the next applied
    /// change, until `wait_ms`.
    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let req = req.into_inner();
        let meta = req.meta.unwrap_or_default();
        require_key(&meta)?;
        let max_tasks = req.max_tasks.max(1);
        let wait = Duration::from_millis(req.wait_ms).min(LEASE_WAIT_MAX);
        let deadline = Instant::now() + wait;
        let (leases, mut attempt) = self.replay(&meta, &req.worker, max_tasks).await?;
        if !leases.is_empty() {
            return Ok(Response::new(pb::LeaseResponse { leases }));
        }
        loop {
            // Before looking, so that a release while we look still wakes us.
            let released = self.hub.reservations.released();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            let applied = self.node.sm().applied().index;
            let (known, reserved) = {
                let state = self.node.sm().state();
                let known = state.worker(&req.worker).is_some();
                let reserved = known.then(|| {
                    self.hub
                        .reservations
                        .reserve(&state, &req.worker, max_tasks)
                });
                (known, reserved)
            };
            let found = reserved.as_ref().is_some_and(|r| r.found());
            if !known && attempt == 0 {
                // Let apply give the authoritative refusal (it may be a replay).
                let leases = self
                    .try_lease(&meta, &req.worker, max_tasks, attempt)
                    .await?;
                return Ok(Response::new(pb::LeaseResponse { leases }));
            }
            if found {
                let leases = self
                    .try_lease(&meta, &req.worker, max_tasks, attempt)
                    .await?;
                attempt += 1;
                drop(reserved);
                if !leases.is_empty() {
                    return Ok(Response::new(pb::LeaseResponse { leases }));
                }
                continue;
            }
            drop(reserved);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Response::new(pb::LeaseResponse { leases: vec![] }));
            }
            // Wait for anything new to be applied, or for reserved tasks to
            // be let go, then look again.
            let _waiting = self.hub.reservations.waiting();
            tokio::select! {
                _ = self
                    .node
                    .sm()
                    .wait_applied(applied + 1, left.min(Duration::from_secs(1))) => {}
                () = released => {}
            }
        }
    }

    /// Taken by any node: the report waits in this node's batch, and the
    /// answer, from this node's state, names the tasks the worker must stop.
    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        let report = HeartbeatReport {
            worker: req.worker,
            tasks: (req.tasks.iter())
                .map(|h| HeldTask {
                    id: h.id,
                    fencing_token: h.fencing_token,
                    iteration: h.iteration,
                })
                .collect(),
            usage: req.usage.map(convert::usage_from_proto),
        };
        report.validate().map_err(model_status)?;
        let revoked = {
            let state = self.node.sm().state();
            if state.worker(&report.worker).is_none() {
                return Err(Status::not_found(format!(
                    "worker: no worker named {:?}; register first",
                    report.worker
                )));
            }
            super::auth::authorize_heartbeat(&state, &report.worker)?;
            // Only what this node knows to be over (`model::LeaseView`).
            state.revoked(report.tasks.iter().map(|h| (h.id, h.fencing_token)))
        };
        self.hub.heartbeats.gather(report);
        Ok(Response::new(pb::HeartbeatResponse {
            revoked,
            batched_within_ms: self.hub.settings.heartbeat_batch_ms,
        }))
    }

    async fn start_task(
        &self,
        req: Request<pb::StartTaskRequest>,
    ) -> Result<Response<pb::StartTaskResponse>, Status> {
        let req = req.into_inner();
        let op = Op::StartTaskOn {
            id: req.id,
            fencing_token: req.fencing_token,
            gpus: req.gpus.into_iter().map(convert::gpu_from_proto).collect(),
        };
        let task = self.task_change(req.meta, op).await?;
        Ok(Response::new(pb::StartTaskResponse { task }))
    }

    async fn report_progress(
        &self,
        req: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        let req = req.into_inner();
        let op = Op::ReportProgress {
            id: req.id,
            fencing_token: req.fencing_token,
            iteration: req.iteration,
        };
        let task = self.task_change(req.meta, op).await?;
        Ok(Response::new(pb::ReportProgressResponse { task }))
    }

    async fn complete_task(
        &self,
        req: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let (meta, op) = complete_op(req.into_inner());
        let task = self.task_change(meta, op).await?;
        Ok(Response::new(pb::CompleteTaskResponse { task }))
    }

    async fn complete_each(
        &self,
        req: Request<pb::CompleteEachRequest>,
    ) -> Result<Response<pb::CompleteEachResponse>, Status> {
        let completes = req.into_inner().completes;
        let writes = completes
            .into_iter()
            .map(|c| {
                let (meta, op) = complete_op(c);
                write_of(meta, op)
            })
            .collect();
        let outcomes = propose_each(&self.node, "completes", writes)
            .await?
            .into_iter()
            .map(|r| {
                let done = r.and_then(|r| self.changed_task(r.result.map_err(model_status)?));
                pb::CompleteOutcome {
                    outcome: Some(match done {
                        Ok(task) => {
                            pb::complete_outcome::Outcome::Completed(pb::CompleteTaskResponse {
                                task,
                            })
                        }
                        Err(status) => pb::complete_outcome::Outcome::Refused(refused(&status)),
                    }),
                }
            })
            .collect();
        Ok(Response::new(pb::CompleteEachResponse { outcomes }))
    }

    async fn release_task(
        &self,
        req: Request<pb::ReleaseTaskRequest>,
    ) -> Result<Response<pb::ReleaseTaskResponse>, Status> {
        let req = req.into_inner();
        let op = Op::ReleaseTask {
            id: req.id,
            fencing_token: req.fencing_token,
            reason: req.reason,
        };
        let task = self.task_change(req.meta, op).await?;
        Ok(Response::new(pb::ReleaseTaskResponse { task }))
    }

    async fn remove_worker(
        &self,
        req: Request<pb::RemoveWorkerRequest>,
    ) -> Result<Response<pb::RemoveWorkerResponse>, Status> {
        let req = req.into_inner();
        let op = Op::RemoveWorker {
            name: req.name,
            force: req.force,
        };
        match super::propose(&self.node, req.meta, op).await?.0 {
            Reply::WorkerRemoved { requeued, .. } => {
                Ok(Response::new(pb::RemoveWorkerResponse { requeued }))
            }
            other => Err(super::key_reused(other)),
        }
    }

    async fn get_worker(
        &self,
        req: Request<pb::GetWorkerRequest>,
    ) -> Result<Response<pb::GetWorkerResponse>, Status> {
        let req = req.into_inner();
        read_barrier(&self.node, req.consistency).await?;
        let state = self.node.sm().state();
        let worker = state
            .worker(&req.name)
            .ok_or_else(|| Status::not_found(format!("name: no worker named {:?}", req.name)))?;
        Ok(Response::new(pb::GetWorkerResponse {
            worker: Some(convert::worker(&state, worker)),
        }))
    }

    async fn list_workers(
        &self,
        req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        read_barrier(&self.node, req.into_inner().consistency).await?;
        let state = self.node.sm().state();
        let workers = state
            .workers()
            .map(|w| convert::worker(&state, w))
            .collect();
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }
}

/// The write of one completion: its meta and op.
fn complete_op(req: pb::CompleteTaskRequest) -> (Option<pb::WriteMeta>, Op) {
    let op = Op::CompleteTask {
        id: req.id,
        fencing_token: req.fencing_token,
        succeeded: req.succeeded,
        exit_code: req.exit_code,
        condition: req.condition,
    };
    (req.meta, op)
}
