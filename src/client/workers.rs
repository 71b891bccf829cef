//! Worker calls: register, lease (a long poll), heartbeat, start, progress,
//! complete and release a task, and read workers. Every write carries one
//! idempotency key for all its retries, so a retried Lease replays the same
//! leases and a retried completion is applied once. Nothing here decides
//! what a worker does with a refusal: that is the agent's business.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{required, write_meta, Client, ClientError, ReadConsistency};
use crate::proto::v1::workers_client::WorkersClient;
use crate::proto::v1::*;

/// What a Lease leaves of the client's deadline for the reply to travel
/// back: a long poll waits at most `deadline - LEASE_REPLY_MARGIN`.
pub const LEASE_REPLY_MARGIN: Duration = Duration::from_secs(2);

/// Who a worker is and what it offers, as it registers (the client's side;
/// the replicated record is `model::worker::Registration`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerProfile {
    pub name: String,
    pub ip: String,
    /// Empty: `default`.
    pub pool: String,
    /// Empty: only queues whose selector is `*`.
    pub cluster: String,
    /// The queues it listens to, in its order.
    pub queues: Vec<String>,
    /// cpu in millicores, memory in bytes, others in units.
    pub capacity: BTreeMap<String, u64>,
    /// Most tasks at once (0: no limit but capacity).
    pub slots: u32,
}

/// How a task's command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub succeeded: bool,
    pub exit_code: Option<i32>,
    /// Why it failed; empty when it succeeded.
    pub condition: String,
}

impl Client {
    /// Registers a worker, or updates the registration of the worker with
    /// that name.
    pub async fn register_worker(&self, r: &WorkerProfile) -> Result<Worker, ClientError> {
        let req = RegisterWorkerRequest {
            meta: write_meta(None),
            name: r.name.clone(),
            ip: r.ip.clone(),
            pool: r.pool.clone(),
            cluster: r.cluster.clone(),
            queues: r.queues.clone(),
            capacity: r.capacity.clone(),
            slots: r.slots,
        };
        let resp = self.unary(req, WorkersClient::register_worker).await?;
        required(resp.worker, "register_worker", "worker")
    }

    /// Leases up to `max_tasks` tasks to `worker`, waiting up to `wait` for
    /// some (capped so that the reply fits in the client's deadline). An
    /// empty list means none came in time. A retry after a lost reply
    /// carries the same idempotency key and gets the same leases back.
    pub async fn lease(
        &self,
        worker: &str,
        max_tasks: u32,
        wait: Duration,
    ) -> Result<Vec<Lease>, ClientError> {
        let wait = wait.min(self.inner.deadline.saturating_sub(LEASE_REPLY_MARGIN));
        let req = LeaseRequest {
            meta: write_meta(None),
            worker: worker.to_string(),
            max_tasks,
            wait_ms: wait.as_millis() as u64,
        };
        let resp = self.unary_long(req, WorkersClient::lease).await?;
        Ok(resp.leases)
    }

    /// Renews the leases of the tasks `worker` holds and reports its usage.
    /// Any node takes it. The reply lists the tasks to stop.
    pub async fn heartbeat(
        &self,
        worker: &str,
        tasks: Vec<HeldTask>,
        usage: Option<Usage>,
    ) -> Result<HeartbeatResponse, ClientError> {
        let req = HeartbeatRequest {
            worker: worker.to_string(),
            tasks,
            usage,
        };
        self.unary(req, WorkersClient::heartbeat).await
    }

    /// Says that a leased task's command has started, on `gpus` (none for
    /// a task that asked for none).
    pub async fn start_task(
        &self,
        id: u64,
        fencing_token: u64,
        gpus: Vec<AssignedGpu>,
    ) -> Result<Task, ClientError> {
        let req = StartTaskRequest {
            meta: write_meta(None),
            id,
            fencing_token,
            gpus,
        };
        let resp = self.unary(req, WorkersClient::start_task).await?;
        required(resp.task, "start_task", "task")
    }

    /// Reports a running task's training iteration.
    pub async fn report_progress(
        &self,
        id: u64,
        fencing_token: u64,
        iteration: u64,
    ) -> Result<Task, ClientError> {
        let req = ReportProgressRequest {
            meta: write_meta(None),
            id,
            fencing_token,
            iteration,
        };
        let resp = self.unary(req, WorkersClient::report_progress).await?;
        required(resp.task, "report_progress", "task")
    }

    /// Reports how a task ended. Pass the same `idempotency_key` when
    /// calling again after an error, so the completion is applied once.
    /// Completions made concurrently from this process share calls (see
    /// `batch`); each keeps its own key and outcome.
    pub async fn complete_task(
        &self,
        id: u64,
        fencing_token: u64,
        outcome: &Outcome,
        idempotency_key: Option<String>,
    ) -> Result<Task, ClientError> {
        let req = CompleteTaskRequest {
            meta: write_meta(idempotency_key),
            id,
            fencing_token,
            succeeded: outcome.succeeded,
            exit_code: outcome.exit_code,
            condition: outcome.condition.clone(),
        };
        let resp = self.shared(&self.inner.completes, req).await?;
        required(resp.task, "complete_task", "task")
    }

    /// Gives a lease back: the task is queued again at the front at once,
    /// and the attempt does not count.
    pub async fn release_task(
        &self,
        id: u64,
        fencing_token: u64,
        reason: &str,
    ) -> Result<Task, ClientError> {
        let req = ReleaseTaskRequest {
            meta: write_meta(None),
            id,
            fencing_token,
            reason: reason.to_string(),
        };
        let resp = self.unary(req, WorkersClient::release_task).await?;
        required(resp.task, "release_task", "task")
    }

    pub async fn get_worker(&self, name: &str, c: ReadConsistency) -> Result<Worker, ClientError> {
        let req = GetWorkerRequest {
            name: name.to_string(),
            consistency: c.proto(),
        };
        let resp = self.unary(req, WorkersClient::get_worker).await?;
        required(resp.worker, "get_worker", "worker")
    }

    /// Removes a worker; `force` puts the tasks it holds back in their
    /// queues first (refused without it). Returns how many went back.
    pub async fn remove_worker(&self, name: &str, force: bool) -> Result<u64, ClientError> {
        let req = RemoveWorkerRequest {
            meta: write_meta(None),
            name: name.to_string(),
            force,
        };
        let resp = self.unary(req, WorkersClient::remove_worker).await?;
        Ok(resp.requeued)
    }

    pub async fn list_workers(&self, c: ReadConsistency) -> Result<Vec<Worker>, ClientError> {
        let req = ListWorkersRequest {
            consistency: c.proto(),
        };
        let resp = self.unary(req, WorkersClient::list_workers).await?;
        Ok(resp.workers)
    }
}

/// The worker agent's side of `Workers.ServeLogs`: the one stream over
/// which the cluster asks it for its tasks' logs.
impl Client {
    /// Opens a worker's `ServeLogs` stream on the node tried first (the
    /// next one after a failure): `uploads` starts with the message that
    /// names the worker. One attempt, no retry: the agent reconnects.
    pub async fn serve_logs(
        &self,
        uploads: impl futures::Stream<Item = LogUpload> + Send + 'static,
    ) -> Result<tonic::Streaming<LogAsk>, ClientError> {
        let (index, addr, channel) = self.pick();
        let mut workers: WorkersClient<_> =
            super::retry::Service::connect(channel, self.inner.credentials.clone());
        match workers.serve_logs(uploads).await {
            Ok(asks) => Ok(asks.into_inner()),
            Err(status) => {
                self.advance(index);
                tracing::debug!(node = addr, error = %status, "log stream refused");
                Err(ClientError::Status(status))
            }
        }
    }
}
