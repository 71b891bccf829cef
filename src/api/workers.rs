//! `laneq.v1.Workers`: registration, leases (a long poll), heartbeats and
//! task reports; plus the two background loops every node runs: passing
//! gathered heartbeats on in batches, and (on the leader) expiring leases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::error::model_status;
use super::{
    convert, key_reused, nth_write, propose, propose_each, read_barrier, refused, require_key,
    write_of,
};
use crate::config::WorkerSettings;
use crate::model::worker::{HeartbeatReport, HeldTask, Registration};
use crate::model::{ModelError, Op, Reply, Write, DEFAULT_POOL};
use crate::proto::v1::workers_server::Workers;
use crate::proto::v1::*;
use crate::raft::RaftNode;

/// Longest a lease call may wait for work.
const LEASE_WAIT_MAX: Duration = Duration::from_secs(60);
/// How often the leader checks for expired leases and silent workers.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);

/// What a node shares between the Workers service and its loops.
pub struct WorkerHub {
    pub settings: WorkerSettings,
    /// The latest heartbeat of each worker since the last batch.
    pending: Mutex<BTreeMap<String, HeartbeatReport>>,
    /// Tasks that a lease poll of this node found and is proposing a lease
    /// for: the other polls look past them. Without this, every waiting
    /// worker saw the same new task and wrote a lease for it, and all but
    /// one of those writes leased nothing.
    reserved: Mutex<BTreeSet<u64>>,
    /// Woken when reserved tasks are let go: a lease may have taken others,
    /// and the polls that looked past them look again.
    released: tokio::sync::Notify,
    /// Lease polls of this node waiting for work now, for the node's status:
    /// what shows that a long poll is parked.
    polls_waiting: AtomicU32,
}

impl WorkerHub {
    pub fn new(settings: WorkerSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            pending: Mutex::new(BTreeMap::new()),
            reserved: Mutex::new(BTreeSet::new()),
            released: tokio::sync::Notify::new(),
            polls_waiting: AtomicU32::new(0),
        })
    }

    /// How many lease polls of this node wait for work now.
    pub fn lease_polls_waiting(&self) -> u32 {
        self.polls_waiting.load(Ordering::Relaxed)
    }

    /// Counts one lease poll as waiting until the guard drops (also when
    /// the poll is dropped mid-wait, its caller gone).
    fn poll_waiting(&self) -> PollWaiting<'_> {
        self.polls_waiting.fetch_add(1, Ordering::Relaxed);
        PollWaiting { hub: self }
    }

    /// Previews the dispatcher for `worker`, past the tasks other polls
    /// reserved, and reserves what it finds until the guard drops.
    fn reserve(&self, state: &crate::model::State, worker: &str, max_tasks: u32) -> Reserved<'_> {
        let mut reserved = self.reserved.lock().expect("reservations lock");
        let tasks = crate::model::dispatch_preview(state, worker, max_tasks, &reserved);
        reserved.extend(&tasks);
        Reserved { hub: self, tasks }
    }
}

/// Tasks one lease poll reserved; dropping it lets them go.
struct Reserved<'a> {
    hub: &'a WorkerHub,
    tasks: Vec<u64>,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        let mut reserved = self.hub.reserved.lock().expect("reservations lock");
        for id in &self.tasks {
            reserved.remove(id);
        }
        drop(reserved);
        self.hub.released.notify_waiters();
    }
}

/// One lease poll counted in `WorkerHub::polls_waiting`.
struct PollWaiting<'a> {
    hub: &'a WorkerHub,
}

impl Drop for PollWaiting<'_> {
    fn drop(&mut self) {
        self.hub.polls_waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct WorkersApi {
    pub(super) node: Arc<RaftNode>,
    pub(super) hub: Arc<WorkerHub>,
}

impl WorkersApi {
    async fn task_change(&self, meta: Option<WriteMeta>, op: Op) -> Result<Option<Task>, Status> {
        let reply = propose(&self.node, meta, op).await?.0;
        self.changed_task(reply)
    }

    /// The task a change to one task answers with (without its body: the
    /// worker has it).
    fn changed_task(&self, reply: Reply) -> Result<Option<Task>, Status> {
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
        meta: &WriteMeta,
        worker: &str,
        max_tasks: u32,
        attempt: u64,
    ) -> Result<Vec<crate::proto::v1::Lease>, Status> {
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
                        Some(crate::proto::v1::Lease {
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

#[tonic::async_trait]
impl Workers for WorkersApi {
    async fn register_worker(
        &self,
        req: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerResponse>, Status> {
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
                Ok(Response::new(RegisterWorkerResponse { worker }))
            }
            other => Err(key_reused(other)),
        }
    }

    /// A long poll. The dispatcher is first run on this node's state; only
    /// when it finds work is a lease written (and the dispatcher run again,
    /// authoritatively, in apply). Otherwise it waits for the next applied
    /// change, until `wait_ms`.
    async fn lease(&self, req: Request<LeaseRequest>) -> Result<Response<LeaseResponse>, Status> {
        let req = req.into_inner();
        let meta = req.meta.unwrap_or_default();
        require_key(&meta)?;
        let max_tasks = req.max_tasks.max(1);
        let wait = Duration::from_millis(req.wait_ms).min(LEASE_WAIT_MAX);
        let deadline = Instant::now() + wait;
        let mut attempt = 0;
        // A retried request first replays what its key (and the keys derived
        // from it) already leased, so a lost answer loses no lease.
        loop {
            let key = nth_write(&meta, attempt).idempotency_key;
            if self.node.sm().state().idempotency(&key).is_none() {
                break;
            }
            let leases = self
                .try_lease(&meta, &req.worker, max_tasks, attempt)
                .await?;
            attempt += 1;
            if !leases.is_empty() {
                return Ok(Response::new(LeaseResponse { leases }));
            }
        }
        loop {
            // Before looking, so that a release while we look still wakes us.
            let released = self.hub.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            let applied = self.node.sm().applied().index;
            let (known, reserved) = {
                let state = self.node.sm().state();
                let known = state.worker(&req.worker).is_some();
                let reserved = known.then(|| self.hub.reserve(&state, &req.worker, max_tasks));
                (known, reserved)
            };
            let found = reserved.as_ref().is_some_and(|r| !r.tasks.is_empty());
            if !known && attempt == 0 {
                // Let apply give the authoritative refusal (it may be a replay).
                let leases = self
                    .try_lease(&meta, &req.worker, max_tasks, attempt)
                    .await?;
                return Ok(Response::new(LeaseResponse { leases }));
            }
            if found {
                let leases = self
                    .try_lease(&meta, &req.worker, max_tasks, attempt)
                    .await?;
                attempt += 1;
                drop(reserved);
                if !leases.is_empty() {
                    return Ok(Response::new(LeaseResponse { leases }));
                }
                continue;
            }
            drop(reserved);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Response::new(LeaseResponse { leases: vec![] }));
            }
            // Wait for anything new to be applied, or for reserved tasks to
            // be let go, then look again.
            let _waiting = self.hub.poll_waiting();
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
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let req = req.into_inner();
        crate::model::validate::name("worker", &req.worker).map_err(model_status)?;
        if req.tasks.len() > crate::model::limits::HEARTBEAT_TASKS_MAX {
            return Err(model_status(ModelError::invalid(
                "tasks",
                format!(
                    "{} tasks; the limit is {}",
                    req.tasks.len(),
                    crate::model::limits::HEARTBEAT_TASKS_MAX
                ),
            )));
        }
        let revoked = {
            let state = self.node.sm().state();
            if state.worker(&req.worker).is_none() {
                return Err(Status::not_found(format!(
                    "worker: no worker named {:?}; register first",
                    req.worker
                )));
            }
            req.tasks
                .iter()
                .filter(|h| {
                    // Only what this node knows to be over: a newer lease, or
                    // this lease ended. A node that has not applied the lease
                    // yet (an older token) revokes nothing.
                    state.task(h.id).is_some_and(|t| {
                        let token = t.fencing_token();
                        token > h.fencing_token
                            || (token == h.fencing_token && !t.state.in_flight())
                    })
                })
                .map(|h| h.id)
                .collect()
        };
        let report = HeartbeatReport {
            worker: req.worker.clone(),
            tasks: req
                .tasks
                .iter()
                .map(|h| HeldTask {
                    id: h.id,
                    fencing_token: h.fencing_token,
                    iteration: h.iteration,
                })
                .collect(),
            usage: req.usage.map(convert::usage_from_proto),
        };
        self.hub
            .pending
            .lock()
            .expect("heartbeat batch poisoned")
            .insert(req.worker, report);
        Ok(Response::new(HeartbeatResponse {
            revoked,
            batched_within_ms: self.hub.settings.heartbeat_batch_ms,
        }))
    }

    async fn start_task(
        &self,
        req: Request<StartTaskRequest>,
    ) -> Result<Response<StartTaskResponse>, Status> {
        let req = req.into_inner();
        let op = Op::StartTask {
            id: req.id,
            fencing_token: req.fencing_token,
        };
        let task = self.task_change(req.meta, op).await?;
        Ok(Response::new(StartTaskResponse { task }))
    }

    async fn report_progress(
        &self,
        req: Request<ReportProgressRequest>,
    ) -> Result<Response<ReportProgressResponse>, Status> {
        let req = req.into_inner();
        let op = Op::ReportProgress {
            id: req.id,
            fencing_token: req.fencing_token,
            iteration: req.iteration,
        };
        let task = self.task_change(req.meta, op).await?;
        Ok(Response::new(ReportProgressResponse { task }))
    }

    async fn complete_task(
        &self,
        req: Request<CompleteTaskRequest>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        let (meta, op) = complete_op(req.into_inner());
        let task = self.task_change(meta, op).await?;
        Ok(Response::new(CompleteTaskResponse { task }))
    }

    async fn complete_each(
        &self,
        req: Request<CompleteEachRequest>,
    ) -> Result<Response<CompleteEachResponse>, Status> {
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
                CompleteOutcome {
                    outcome: Some(match done {
                        Ok(task) => {
                            complete_outcome::Outcome::Completed(CompleteTaskResponse { task })
                        }
                        Err(status) => complete_outcome::Outcome::Refused(refused(&status)),
                    }),
                }
            })
            .collect();
        Ok(Response::new(CompleteEachResponse { outcomes }))
    }

    async fn release_task(
        &self,
        req: Request<ReleaseTaskRequest>,
    ) -> Result<Response<ReleaseTaskResponse>, Status> {
        let req = req.into_inner();
        let op = Op::ReleaseTask {
            id: req.id,
            fencing_token: req.fencing_token,
            reason: req.reason,
        };
        let task = self.task_change(req.meta, op).await?;
        Ok(Response::new(ReleaseTaskResponse { task }))
    }

    async fn get_worker(
        &self,
        req: Request<GetWorkerRequest>,
    ) -> Result<Response<GetWorkerResponse>, Status> {
        let req = req.into_inner();
        read_barrier(&self.node, req.consistency).await?;
        let state = self.node.sm().state();
        let worker = state
            .worker(&req.name)
            .ok_or_else(|| Status::not_found(format!("name: no worker named {:?}", req.name)))?;
        Ok(Response::new(GetWorkerResponse {
            worker: Some(convert::worker(&state, worker)),
        }))
    }

    async fn list_workers(
        &self,
        req: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        read_barrier(&self.node, req.into_inner().consistency).await?;
        let state = self.node.sm().state();
        let workers = state
            .workers()
            .map(|w| convert::worker(&state, w))
            .collect();
        Ok(Response::new(ListWorkersResponse { workers }))
    }
}

/// The write of one completion: its meta and op.
fn complete_op(req: CompleteTaskRequest) -> (Option<WriteMeta>, Op) {
    let op = Op::CompleteTask {
        id: req.id,
        fencing_token: req.fencing_token,
        succeeded: req.succeeded,
        exit_code: req.exit_code,
        condition: req.condition,
    };
    (req.meta, op)
}

/// Every `heartbeat_batch_ms`, passes the gathered heartbeats on as one write
/// (through the leader, like any write). A batch that fails is merged back
/// under newer reports and tried again next time.
pub async fn run_heartbeat_batches(node: Arc<RaftNode>, hub: Arc<WorkerHub>) {
    let period = Duration::from_millis(hub.settings.heartbeat_batch_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let batch = std::mem::take(&mut *hub.pending.lock().expect("heartbeat batch poisoned"));
        if batch.is_empty() {
            continue;
        }
        let reports: Vec<HeartbeatReport> = batch.values().cloned().collect();
        let write = Write {
            idempotency_key: crate::client::new_idempotency_key(),
            actor: "laneq".to_string(),
            op: Op::WorkerHeartbeats {
                reports,
                ttl_ms: hub.settings.lease_ttl_ms,
            },
        };
        if let Err(e) = node.write(write).await {
            tracing::warn!(error = %e, workers = batch.len(), "passing heartbeats on failed; retrying");
            let mut pending = hub.pending.lock().expect("heartbeat batch poisoned");
            for (worker, report) in batch {
                pending.entry(worker).or_insert(report);
            }
        }
    }
}

/// On the leader: proposes an expiry whenever a lease or a worker is due. A
/// new leader first waits one lease TTL, so that workers renewing through
/// the change keep their leases.
pub async fn run_expiry(node: Arc<RaftNode>, hub: Arc<WorkerHub>) {
    let grace = Duration::from_millis(hub.settings.lease_ttl_ms);
    let mut leading_since: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep(EXPIRY_CHECK).await;
        let status = node.status();
        if status.role != "leader" {
            leading_since = None;
            continue;
        }
        let since = match leading_since {
            Some((term, at)) if term == status.term => at,
            _ => {
                leading_since = Some((status.term, Instant::now()));
                continue;
            }
        };
        if since.elapsed() < grace {
            continue;
        }
        let due = node
            .sm()
            .state()
            .expiry_due(crate::clock::now_ms(), hub.settings.worker_timeout_ms);
        if !due {
            continue;
        }
        let write = Write {
            idempotency_key: crate::client::new_idempotency_key(),
            actor: "laneq".to_string(),
            op: Op::ExpireLeases {
                worker_timeout_ms: hub.settings.worker_timeout_ms,
            },
        };
        match node.write(write).await {
            Ok(r) => {
                if let Ok(Reply::Expired {
                    tasks,
                    workers_lost,
                }) = r.result
                {
                    tracing::info!(tasks, workers_lost, "expired leases");
                }
            }
            Err(e) => tracing::warn!(error = %e, "expiring leases failed"),
        }
    }
}
