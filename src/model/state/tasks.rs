//! Tasks: submit (atomic batches), cancel, dequeue, and moves within and
//! between queues.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Key, State, DEFAULT_PROJECT};
use crate::model::limits::{MAX_ATTEMPTS_DEFAULT, TIMELINE_MAX};
use crate::model::spec::QueueState;
use crate::model::{ModelError, MoveTo, NewTask, Reply, Task, TaskBody, TaskState, Transition};

impl State {
    /// Admits every task or none: all checks run against the state plus the
    /// earlier tasks of the same batch, before anything changes.
    pub(super) fn submit_tasks(
        &mut self,
        tasks: &[NewTask],
        actor: &str,
        key: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let batch = tasks.len() > 1;
        let mut per_queue: BTreeMap<u64, u64> = BTreeMap::new();
        let mut per_run: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut targets = Vec::with_capacity(tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            let queue = self.admit(t, &per_queue, &per_run).map_err(|e| {
                if batch {
                    e.within(&format!("tasks[{i}]"))
                } else {
                    e
                }
            })?;
            *per_queue.entry(queue).or_default() += 1;
            if !t.run.is_empty() {
                *per_run.entry((project_of(t), &t.run)).or_default() += 1;
            }
            targets.push(queue);
        }
        let mut ids = Vec::with_capacity(tasks.len());
        let shared_key: Arc<str> = key.into();
        for (t, queue) in tasks.iter().zip(targets) {
            let id = self.next_task_id;
            self.next_task_id += 1;
            let task = self.queued_task(id, queue, t, actor, &shared_key);
            self.count(&task, true);
            self.tasks.insert(id, Box::new(task));
            changed.push(Key::Body(
                id,
                TaskBody {
                    command: t.command.clone(),
                    payload: t.payload.clone(),
                },
            ));
            let reranked = self.pending.entry(queue).or_default().push_back(id);
            self.rerank(reranked, changed);
            ids.push(id);
        }
        for (&queue, &n) in &per_queue {
            self.queue_activity(queue, changed);
            self.count_queue(queue, |c| c.submitted += n, changed);
        }
        Ok(Reply::TasksSubmitted { ids })
    }

    /// Task `id` as submitted to `queue`: queued, its submit the first
    /// transition of its timeline.
    fn queued_task(&self, id: u64, queue: u64, t: &NewTask, actor: &str, key: &Arc<str>) -> Task {
        Task {
            id,
            queue,
            project: project_of(t).into(),
            run: t.run.as_str().into(),
            name: t.name.as_str().into(),
            state: TaskState::Queued,
            resources: t.resources.clone(),
            max_attempts: match t.max_attempts {
                0 => MAX_ATTEMPTS_DEFAULT,
                n => n,
            },
            attempt: 0,
            labels: t.labels.clone(),
            created_ms: self.clock_ms,
            updated_ms: self.clock_ms,
            idempotency_key: key.clone(),
            rank: 0,
            timeline: smallvec::smallvec![Transition {
                at_ms: self.clock_ms,
                state: TaskState::Queued,
                actor: actor.into(),
                reason: "submitted".into(),
                index: self.log_index,
            }],
            condition: None,
            payload_bytes: t.payload.len() as u32,
            execution: None,
        }
    }

    /// Checks one task of a submit and returns the id of its queue.
    fn admit(
        &self,
        t: &NewTask,
        per_queue: &BTreeMap<u64, u64>,
        per_run: &BTreeMap<(&str, &str), u64>,
    ) -> Result<u64, ModelError> {
        let project_name = project_of(t);
        let project = self.projects.get(project_name).ok_or_else(|| {
            ModelError::not_found("project", format!("no project named {project_name:?}"))
        })?;
        let queue = match t.queue.as_str() {
            "" => project.default_queue.unwrap_or(self.default_queue),
            name => self.queue_id("queue", name)?,
        };
        self.check_allowed(project_name, queue)?;
        self.check_not_clearing(queue, "queue")?;
        let q = &self.queues[&queue];
        if q.state != QueueState::Active {
            return Err(ModelError::precondition(
                "queue",
                format!(
                    "queue {:?} is {} and takes no new tasks",
                    q.name,
                    q.state.as_str()
                ),
            ));
        }
        self.check_depth(queue, per_queue.get(&queue).copied().unwrap_or(0))?;
        let limit = project.max_queued_per_run;
        if limit > 0 && !t.run.is_empty() {
            let queued = self.queued_in_run(project_name, &t.run)
                + per_run
                    .get(&(project_name, t.run.as_str()))
                    .copied()
                    .unwrap_or(0);
            if queued >= limit {
                return Err(ModelError::exhausted(
                    "run",
                    format!(
                        "run {:?} of project {project_name:?} has {queued} tasks queued, \
                         the project's limit per run",
                        t.run
                    ),
                ));
            }
        }
        Ok(queue)
    }

    /// A project with allowed queues may use no other.
    fn check_allowed(&self, project: &str, queue: u64) -> Result<(), ModelError> {
        let p = &self.projects[project];
        if p.allowed_queues.is_empty() || p.allowed_queues.contains(&queue) {
            return Ok(());
        }
        let allowed: Vec<&str> = p
            .allowed_queues
            .iter()
            .map(|id| self.queues[id].name.as_str())
            .collect();
        Err(ModelError::denied(
            "queue",
            format!(
                "project {project:?} may not use queue {:?}; its allowed queues are {}",
                self.queues[&queue].name,
                allowed.join(", ")
            ),
        ))
    }

    /// A queue takes `adding` more tasks only within its depth (queued plus
    /// in flight).
    fn check_depth(&self, queue: u64, adding: u64) -> Result<(), ModelError> {
        let q = &self.queues[&queue];
        let held = self.queued(queue) as u64 + self.in_flight_tasks(queue) + adding;
        if q.spec.depth > 0 && held >= q.spec.depth {
            return Err(ModelError::exhausted(
                "queue",
                format!(
                    "queue {:?} is full: {held} tasks queued or running, depth {}",
                    q.name, q.spec.depth
                ),
            ));
        }
        Ok(())
    }

    /// Moves a task to `to`, keeping every index and the timeline. A task
    /// that leaves `queued` leaves its queue's order; entering `queued` is
    /// the caller's business (it chooses the place).
    pub(super) fn transition(
        &mut self,
        id: u64,
        to: TaskState,
        actor: &str,
        reason: &str,
        condition: Option<String>,
        changed: &mut Vec<Key>,
    ) {
        let now = self.clock_ms;
        let task = self.tasks.get_mut(&id).expect("task exists");
        debug_assert!(
            !task.state.terminal(),
            "a finished task never changes state"
        );
        super::index::count(&mut self.in_flight, &mut self.queued_per_run, task, false);
        let left_queue = task.state == TaskState::Queued && to != TaskState::Queued;
        if left_queue {
            self.pending
                .get_mut(&task.queue)
                .expect("a queued task's queue exists")
                .remove(id, task.rank);
        }
        task.state = to;
        task.updated_ms = now;
        if condition.is_some() {
            task.condition = condition;
        }
        record(task, now, self.log_index, actor, reason);
        super::index::count(&mut self.in_flight, &mut self.queued_per_run, task, true);
        let queue = task.queue;
        if let Some(at_ms) = task.finished_ms() {
            self.finished.entry(queue).or_default().insert((at_ms, id));
        }
        if left_queue {
            let (project, rank) = (task.project.clone(), task.rank);
            self.unindex_project(queue, &project, id, rank);
        }
        self.count_finished(queue, to, changed);
        changed.push(Key::Task(id));
    }

    fn task_in(&self, id: u64, what: &str, states: &[TaskState]) -> Result<&Task, ModelError> {
        let task = self
            .tasks
            .get(&id)
            .ok_or_else(|| ModelError::not_found("id", format!("no task {id}")))?;
        if !states.contains(&task.state) {
            return Err(ModelError::precondition(
                "id",
                format!("task {id} is {}; only a {what}", task.state.as_str()),
            ));
        }
        Ok(task)
    }

    pub(super) fn cancel_task(
        &mut self,
        id: u64,
        actor: &str,
        reason: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let queue = self
            .task_in(
                id,
                "queued, leased or running task can be canceled",
                &[TaskState::Queued, TaskState::Leased, TaskState::Running],
            )?
            .queue;
        if self.tasks[&id].state == TaskState::Queued {
            self.check_not_clearing(queue, "id")?;
        }
        let reason = match reason {
            "" => format!("canceled by {actor}"),
            r => r.to_string(),
        };
        // A leased or running task loses its lease: the worker's next
        // heartbeat is told to stop it, and its token is stale from now on.
        if let Some(worker) = self.tasks[&id].worker().map(str::to_string) {
            if self.tasks[&id].state.in_flight() {
                self.unlease(id);
                changed.push(Key::Worker(worker));
            }
        }
        self.transition(
            id,
            TaskState::Canceled,
            actor,
            &reason,
            Some(reason.clone()),
            changed,
        );
        self.queue_activity(queue, changed);
        self.settle_queue(queue, changed);
        Ok(Reply::Task { id })
    }

    pub(super) fn dequeue_task(
        &mut self,
        id: u64,
        actor: &str,
        reason: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let queue = self
            .task_in(id, "queued task can be dequeued", &[TaskState::Queued])?
            .queue;
        self.check_not_clearing(queue, "id")?;
        let reason = match reason {
            "" => "dequeued",
            r => r,
        };
        self.transition(id, TaskState::Dequeued, actor, reason, None, changed);
        self.queue_activity(queue, changed);
        self.settle_queue(queue, changed);
        Ok(Reply::Task { id })
    }

    pub(super) fn move_task(
        &mut self,
        id: u64,
        to: &MoveTo,
        actor: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let task = self.task_in(id, "queued task can be moved", &[TaskState::Queued])?;
        let (queue, rank) = (task.queue, task.rank);
        self.check_not_clearing(queue, "id")?;
        if let MoveTo::Queue(target) = to {
            return self.move_to_queue(id, target, actor, changed);
        }
        let target = self.move_target(id, queue, rank, to)?;
        let reranked = self
            .pending
            .get_mut(&queue)
            .expect("queue exists")
            .move_to(id, rank, target as usize)
            .expect("a queued task is in its queue");
        if !reranked.is_empty() {
            self.rerank(reranked, changed);
            self.queue_activity(queue, changed);
        }
        Ok(Reply::Task { id })
    }

    /// The 0-based position that `to` (not a move to another queue) names
    /// for task `id`, queued in `queue` at `rank`.
    fn move_target(&self, id: u64, queue: u64, rank: u128, to: &MoveTo) -> Result<u64, ModelError> {
        let order = &self.pending[&queue];
        let current = order
            .position(id, rank)
            .expect("a queued task is in its queue") as u64;
        let last = order.len() as u64 - 1;
        let neighbour = |field: &str, other: u64| -> Result<u64, ModelError> {
            if other == id {
                return Err(ModelError::invalid(
                    field,
                    "a task cannot move next to itself",
                ));
            }
            match self.tasks.get(&other) {
                None => Err(ModelError::not_found(field, format!("no task {other}"))),
                Some(o) if o.state != TaskState::Queued || o.queue != queue => {
                    Err(ModelError::precondition(
                        field,
                        format!("task {other} is not queued in the same queue as task {id}"),
                    ))
                }
                Some(o) => Ok(order.position(other, o.rank).expect("queued") as u64),
            }
        };
        Ok(match *to {
            MoveTo::Front => 0,
            MoveTo::Back => last,
            MoveTo::Forward(n) => current.saturating_sub(n),
            MoveTo::Backward(n) => current.saturating_add(n).min(last),
            MoveTo::Position(p) => p.min(last),
            MoveTo::Before(other) => {
                let p = neighbour("before", other)?;
                if current < p {
                    p - 1
                } else {
                    p
                }
            }
            MoveTo::After(other) => {
                let p = neighbour("after", other)?;
                if current < p {
                    p
                } else {
                    p + 1
                }
            }
            MoveTo::Queue(_) => unreachable!("handled above"),
        })
    }

    /// Moves a queued task to the back of another queue of the same pool,
    /// within its project's allowed queues and the target's state and depth.
    fn move_to_queue(
        &mut self,
        id: u64,
        target: &str,
        actor: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let task = &self.tasks[&id];
        let from = task.queue;
        let to = self.queue_id("queue", target)?;
        let (source, dest) = (&self.queues[&from], &self.queues[&to]);
        if from == to {
            return Err(ModelError::precondition(
                "queue",
                format!("task {id} is already in queue {target:?}"),
            ));
        }
        if source.pool != dest.pool {
            return Err(ModelError::precondition(
                "queue",
                format!(
                    "queue {target:?} is in pool {:?} and task {id} in pool {:?}; work never \
                     crosses pools",
                    dest.pool, source.pool
                ),
            ));
        }
        self.check_not_clearing(to, "queue")?;
        if dest.state != QueueState::Active {
            return Err(ModelError::precondition(
                "queue",
                format!(
                    "queue {target:?} is {} and takes no new tasks",
                    dest.state.as_str()
                ),
            ));
        }
        self.check_allowed(&task.project.clone(), to)?;
        self.check_depth(to, 0)?;
        let reason = format!("moved from queue {:?} to {target:?}", source.name);
        self.pending
            .get_mut(&from)
            .expect("queue exists")
            .remove(id, task.rank);
        let (project, rank) = (task.project.clone(), task.rank);
        self.unindex_project(from, &project, id, rank);
        let now = self.clock_ms;
        let task = self.tasks.get_mut(&id).expect("task exists");
        task.queue = to;
        task.updated_ms = now;
        record(task, now, self.log_index, actor, &reason);
        changed.push(Key::Task(id));
        let reranked = self.pending.entry(to).or_default().push_back(id);
        self.rerank(reranked, changed);
        self.queue_activity(from, changed);
        self.queue_activity(to, changed);
        self.settle_queue(from, changed);
        Ok(Reply::Task { id })
    }
}

/// The project a new task belongs to.
fn project_of(t: &NewTask) -> &str {
    match t.project.as_str() {
        "" => DEFAULT_PROJECT,
        p => p,
    }
}

/// Appends a transition applied by log entry `index`, dropping the oldest
/// after the first past the limit.
pub(super) fn record(task: &mut Task, at_ms: u64, index: u64, actor: &str, reason: &str) {
    if task.timeline.len() >= TIMELINE_MAX {
        task.timeline.remove(1);
    }
    task.timeline.push(Transition {
        at_ms,
        state: task.state,
        actor: actor.into(),
        reason: reason.into(),
        index,
    });
}
