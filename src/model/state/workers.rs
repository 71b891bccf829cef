//! Workers and leases: registration, leasing through the dispatcher,
//! heartbeats, start, progress, completion, release and expiry. Every call
//! about a leased task must carry its current fencing token.

use std::collections::BTreeSet;

use super::{Key, State};
use crate::model::limits::{EXPIRE_MAX_PER_COMMAND, RECENT_WAITS, WORKERS_MAX};
use crate::model::worker::{
    AssignedGpu, Execution, HeartbeatReport, Registration, Worker, WorkerState,
};
use crate::model::{LeaseView, ModelError, Reply, TaskState};

/// The actor of transitions laneq makes by itself (expiry).
const SYSTEM_ACTOR: &str = "laneq";

impl State {
    pub(super) fn register_worker(
        &mut self,
        r: &Registration,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let pool = self
            .pools
            .get(&r.pool)
            .ok_or_else(|| ModelError::not_found("pool", format!("no pool named {:?}", r.pool)))?;
        if !r.cluster.is_empty() && !pool.clusters.contains(&r.cluster) {
            return Err(ModelError::not_found(
                "cluster",
                format!("pool {:?} has no cluster {:?}", r.pool, r.cluster),
            ));
        }
        let mut queues = Vec::with_capacity(r.queues.len());
        for (i, name) in r.queues.iter().enumerate() {
            let field = format!("queues[{i}]");
            let id = self.queue_id(&field, name)?;
            let q = &self.queues[&id];
            if q.pool != r.pool {
                return Err(ModelError::precondition(
                    field,
                    format!(
                        "queue {name:?} is in pool {:?}, the worker in pool {:?}; work never \
                         crosses pools",
                        q.pool, r.pool
                    ),
                ));
            }
            if !queues.contains(&id) {
                queues.push(id);
            }
        }
        let now = self.clock_ms;
        match self.workers.get_mut(&r.name) {
            Some(w) => {
                (w.ip, w.pool, w.cluster) = (r.ip.clone(), r.pool.clone(), r.cluster.clone());
                (w.queues, w.capacity, w.slots) = (queues, r.capacity.clone(), r.slots);
                (w.state, w.last_seen_ms) = (WorkerState::Active, now);
            }
            None => {
                if self.workers.len() >= WORKERS_MAX {
                    return Err(ModelError::exhausted(
                        "name",
                        format!("the store holds {WORKERS_MAX} workers, the limit"),
                    ));
                }
                let worker = Worker {
                    name: r.name.clone(),
                    ip: r.ip.clone(),
                    pool: r.pool.clone(),
                    cluster: r.cluster.clone(),
                    queues,
                    capacity: r.capacity.clone(),
                    slots: r.slots,
                    state: WorkerState::Active,
                    tasks: BTreeSet::new(),
                    registered_ms: now,
                    last_seen_ms: now,
                    usage: None,
                };
                self.workers.insert(r.name.clone(), worker);
            }
        }
        changed.push(Key::Worker(r.name.clone()));
        Ok(Reply::Worker {
            name: r.name.clone(),
        })
    }

    fn worker_mut(&mut self, name: &str) -> Result<&mut Worker, ModelError> {
        self.workers
            .get_mut(name)
            .ok_or_else(|| ModelError::not_found("worker", format!("no worker named {name:?}")))
    }

    /// Runs the dispatcher for `worker` and leases what it picks.
    pub(super) fn lease_tasks(
        &mut self,
        worker: &str,
        max_tasks: u32,
        ttl_ms: u64,
        seed: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let now = self.clock_ms;
        let w = self.worker_mut(worker)?;
        (w.state, w.last_seen_ms) = (WorkerState::Active, now);
        changed.push(Key::Worker(worker.to_string()));
        let none = std::collections::BTreeSet::new();
        let picks = crate::model::dispatch::pick(self, worker, max_tasks as usize, seed, &none);
        let mut leases = Vec::with_capacity(picks.len());
        for pick in picks {
            let token = self.next_fencing_token;
            self.next_fencing_token += 1;
            let expires = now.saturating_add(ttl_ms);
            let reason = format!("leased to {worker}");
            // Its wait in this queue: since it entered (its submit, its
            // return after a lease, or a move from another queue), which is
            // the last entry of its timeline while it is queued.
            let entered = self.tasks[&pick.task]
                .timeline
                .last()
                .map_or(now, |t| t.at_ms);
            self.history_lease(pick.queue, now.saturating_sub(entered), changed);
            self.transition(pick.task, TaskState::Leased, worker, &reason, None, changed);
            let task = self.tasks.get_mut(&pick.task).expect("picked task exists");
            task.attempt += 1;
            let exec = task.execution.get_or_insert_with(Default::default);
            **exec = Execution {
                worker: worker.to_string(),
                fencing_token: token,
                lease_expires_ms: Some(expires),
                ..Execution::default()
            };
            self.lease_expiry.insert((expires, pick.task));
            self.workers
                .get_mut(worker)
                .expect("checked above")
                .tasks
                .insert(pick.task);
            if let Some(project) = pick.round_robin {
                if let Some(q) = self.queues.get_mut(&pick.queue) {
                    q.rr_last_project = project;
                    changed.push(Key::Queue(pick.queue));
                }
            }
            self.queue_activity(pick.queue, changed);
            leases.push((pick.task, token, expires));
        }
        Ok(Reply::Leased { leases })
    }

    /// The task `id` if `token` is its current lease's and it is leased or
    /// running; a stale token is refused and changes nothing.
    fn held(&self, id: u64, token: u64) -> Result<&crate::model::Task, ModelError> {
        let task = self
            .tasks
            .get(&id)
            .ok_or_else(|| ModelError::not_found("id", format!("no task {id}")))?;
        if task.lease_view(token) != LeaseView::Current {
            return Err(ModelError::precondition(
                "fencing_token",
                format!(
                    "task {id} is {} with lease token {}; token {token} is stale",
                    task.state.as_str(),
                    task.fencing_token()
                ),
            ));
        }
        Ok(task)
    }

    /// The ids, of the (task id, fencing token) leases a worker says it
    /// holds, whose lease this replica knows to be over
    /// ([`LeaseView::Over`]), in the order given: what a heartbeat tells the
    /// worker to stop. A lease not yet applied here, or a task not yet
    /// submitted here, is not revoked; a task that existed and is gone (the
    /// retention collected it, finished) is.
    pub fn revoked(&self, held: impl IntoIterator<Item = (u64, u64)>) -> Vec<u64> {
        held.into_iter()
            .filter(|&(id, token)| match self.tasks.get(&id) {
                Some(t) => t.lease_view(token) == LeaseView::Over,
                None => id < self.next_task_id,
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// Moves a held task's lease expiry to `expires`.
    fn renew(&mut self, id: u64, expires: u64) {
        let exec = self
            .tasks
            .get_mut(&id)
            .and_then(|t| t.execution.as_mut())
            .expect("a held task has an execution");
        if let Some(old) = exec.lease_expires_ms.replace(expires) {
            self.lease_expiry.remove(&(old, id));
        }
        self.lease_expiry.insert((expires, id));
    }

    /// Ends a task's lease: off its worker and out of the expiry index.
    pub(super) fn unlease(&mut self, id: u64) {
        let task = self.tasks.get_mut(&id).expect("task exists");
        let Some(exec) = task.execution.as_mut() else {
            return;
        };
        if let Some(old) = exec.lease_expires_ms.take() {
            self.lease_expiry.remove(&(old, id));
        }
        let worker = exec.worker.clone();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.tasks.remove(&id);
        }
    }

    pub(super) fn start_task(
        &mut self,
        id: u64,
        token: u64,
        gpus: &[AssignedGpu],
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let task = self.held(id, token)?;
        if task.state != TaskState::Leased {
            return Err(ModelError::precondition(
                "id",
                format!("task {id} is already {}", task.state.as_str()),
            ));
        }
        let (queue, worker, waited) = (
            task.queue,
            task.worker().unwrap_or_default().to_string(),
            self.clock_ms.saturating_sub(task.created_ms),
        );
        let reason = match gpus {
            [] => "started".to_string(),
            gpus => {
                let indexes: Vec<String> = gpus.iter().map(|g| g.index.to_string()).collect();
                format!("started on GPU {}", indexes.join(","))
            }
        };
        self.transition(id, TaskState::Running, &worker, &reason, None, changed);
        let now = self.clock_ms;
        let exec = self.tasks.get_mut(&id).and_then(|t| t.execution.as_mut());
        let exec = exec.expect("a held task has an execution");
        exec.started_ms = Some(now);
        exec.gpus = gpus.to_vec();
        if let Some(q) = self.queues.get_mut(&queue) {
            q.recent_waits.push_back(waited);
            if q.recent_waits.len() > RECENT_WAITS {
                q.recent_waits.pop_front();
            }
            changed.push(Key::Queue(queue));
        }
        Ok(Reply::Task { id })
    }

    pub(super) fn report_progress(
        &mut self,
        id: u64,
        token: u64,
        iteration: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        self.held(id, token)?;
        let task = self.tasks.get_mut(&id).expect("held");
        task.updated_ms = self.clock_ms;
        task.execution.as_mut().expect("held").iteration = Some(iteration);
        changed.push(Key::Task(id));
        Ok(Reply::Task { id })
    }

    pub(super) fn complete_task(
        &mut self,
        id: u64,
        token: u64,
        succeeded: bool,
        exit_code: Option<i32>,
        condition: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let task = self.held(id, token)?;
        let (queue, worker) = (task.queue, task.worker().unwrap_or_default().to_string());
        self.unlease(id);
        let (to, reason, condition) = if succeeded {
            (TaskState::Succeeded, "succeeded".to_string(), None)
        } else {
            let condition = match (condition, exit_code) {
                ("", Some(code)) => format!("exit code {code}"),
                ("", None) => "failed".to_string(),
                (c, _) => c.to_string(),
            };
            (TaskState::Failed, condition.clone(), Some(condition))
        };
        self.transition(id, to, &worker, &reason, condition, changed);
        let now = self.clock_ms;
        let exec = self.tasks.get_mut(&id).and_then(|t| t.execution.as_mut());
        let exec = exec.expect("held");
        (exec.finished_ms, exec.exit_code) = (Some(now), exit_code);
        changed.push(Key::Worker(worker));
        self.queue_activity(queue, changed);
        self.settle_queue(queue, changed);
        Ok(Reply::Task { id })
    }

    pub(super) fn release_task(
        &mut self,
        id: u64,
        token: u64,
        actor: &str,
        reason: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let task = self.held(id, token)?;
        let worker = task.worker().unwrap_or_default().to_string();
        let reason = match reason {
            "" => format!("released by {worker}"),
            r => r.to_string(),
        };
        self.requeue_front(id, actor, &reason, false, changed);
        changed.push(Key::Worker(worker));
        Ok(Reply::Task { id })
    }

    /// Puts an in-flight task back at the front of its queue (or, if its
    /// queue is gone, fails it). `counts` says whether the attempt it used
    /// counts against its max attempts.
    pub(super) fn requeue_front(
        &mut self,
        id: u64,
        actor: &str,
        reason: &str,
        counts: bool,
        changed: &mut Vec<Key>,
    ) {
        self.unlease(id);
        let queue = self.tasks[&id].queue;
        if !self.queues.contains_key(&queue) {
            let condition = format!("{reason}; its queue was deleted");
            self.transition(
                id,
                TaskState::Failed,
                actor,
                &condition,
                Some(condition.clone()),
                changed,
            );
            return;
        }
        self.transition(id, TaskState::Queued, actor, reason, None, changed);
        let task = self.tasks.get_mut(&id).expect("task exists");
        if !counts {
            task.attempt = task.attempt.saturating_sub(1);
        }
        let reranked = self.pending.entry(queue).or_default().push_front(id);
        self.rerank(reranked, changed);
        self.queue_activity(queue, changed);
    }

    /// Applies gathered heartbeats: each known worker is seen now (a lost
    /// one is active again) and the leases it holds with current tokens
    /// last `ttl_ms` more. Tasks it names with stale tokens are ignored;
    /// the node that took the heartbeat told the worker to stop them.
    pub(super) fn heartbeats(
        &mut self,
        reports: &[HeartbeatReport],
        ttl_ms: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let now = self.clock_ms;
        let mut renewed = 0;
        for report in reports {
            let Some(w) = self.workers.get_mut(&report.worker) else {
                continue;
            };
            (w.state, w.last_seen_ms) = (WorkerState::Active, now);
            // A sample the history has not seen: a batch applied twice, or
            // a node passing on a report it passed on before, repeats one.
            let seen = w.usage.as_ref().map(|u| u.at_ms);
            let fresh = report.usage.as_ref().filter(|u| Some(u.at_ms) != seen);
            if report.usage.is_some() {
                w.usage = report.usage.clone();
            }
            changed.push(Key::Worker(report.worker.clone()));
            if let Some(usage) = fresh {
                self.history_usage(&report.worker, usage, changed);
            }
            for held in &report.tasks {
                let ok = self.held(held.id, held.fencing_token).is_ok()
                    && self.tasks[&held.id].worker() == Some(report.worker.as_str());
                if !ok {
                    continue;
                }
                self.renew(held.id, now.saturating_add(ttl_ms));
                if let Some(n) = held.iteration {
                    let exec = self
                        .tasks
                        .get_mut(&held.id)
                        .and_then(|t| t.execution.as_mut());
                    exec.expect("held").iteration = Some(n);
                }
                changed.push(Key::Task(held.id));
                renewed += 1;
            }
        }
        Ok(Reply::Heartbeats { renewed })
    }

    /// Expires what is due by the stamped clock, at most
    /// `EXPIRE_MAX_PER_COMMAND` of each kind: workers silent for
    /// `worker_timeout_ms` become lost and lose their leases, and leases
    /// past their expiry end. An expired task goes back to the front of its
    /// queue, or fails once it has used its max attempts.
    pub(super) fn expire_leases(
        &mut self,
        worker_timeout_ms: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let now = self.clock_ms;
        let silent: Vec<String> = self
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Active)
            .filter(|w| w.last_seen_ms.saturating_add(worker_timeout_ms) <= now)
            .map(|w| w.name.clone())
            .take(EXPIRE_MAX_PER_COMMAND)
            .collect();
        let mut tasks = 0;
        for name in &silent {
            let w = self.workers.get_mut(name).expect("listed above");
            w.state = WorkerState::Lost;
            let held: Vec<u64> = w.tasks.iter().copied().collect();
            changed.push(Key::Worker(name.clone()));
            for id in held {
                let reason = format!("worker {name} was lost (silent for {worker_timeout_ms} ms)");
                self.expire_task(id, &reason, changed);
                tasks += 1;
            }
        }
        let due: Vec<u64> = self
            .lease_expiry
            .iter()
            .take_while(|&&(expires, _)| expires <= now)
            .map(|&(_, id)| id)
            .take(EXPIRE_MAX_PER_COMMAND)
            .collect();
        for id in due {
            let worker = self.tasks[&id].worker().unwrap_or_default().to_string();
            self.expire_task(id, &format!("lease expired on worker {worker}"), changed);
            changed.push(Key::Worker(worker));
            tasks += 1;
        }
        Ok(Reply::Expired {
            tasks,
            workers_lost: silent.len() as u64,
        })
    }

    fn expire_task(&mut self, id: u64, reason: &str, changed: &mut Vec<Key>) {
        let queue = self.tasks[&id].queue;
        self.count_queue(queue, |c| c.leases_expired += 1, changed);
        let task = &self.tasks[&id];
        if task.attempt >= task.max_attempts {
            let condition = format!("{reason}; it had used all {} attempts", task.max_attempts);
            self.unlease(id);
            self.transition(
                id,
                TaskState::Failed,
                SYSTEM_ACTOR,
                &condition,
                Some(condition.clone()),
                changed,
            );
            let now = self.clock_ms;
            if let Some(exec) = self.tasks.get_mut(&id).and_then(|t| t.execution.as_mut()) {
                exec.finished_ms = Some(now);
            }
            self.settle_queue(queue, changed);
        } else {
            self.requeue_front(id, SYSTEM_ACTOR, reason, true, changed);
        }
    }
}
