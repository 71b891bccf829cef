//! `laneq.v1.Tasks`.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::error::{self, model_status};
use super::{convert, key_reused, propose, propose_each, read_barrier, refused, write_of};
use crate::model::limits::{LIST_PAGE_DEFAULT, LIST_PAGE_MAX};
use crate::model::{ModelError, MoveTo, Op, Reply, State, Task, TaskState, Write};
use crate::proto::v1 as pb;
use crate::proto::v1::move_task_request::To;
use crate::proto::v1::tasks_server::Tasks;
use crate::raft::RaftNode;

/// Reads of a task whose body is not yet in storage: how many, and how long
/// each waits for the apply in progress. See [`TasksApi::read`].
const BODY_TRIES: usize = 3;
const BODY_WAIT: Duration = Duration::from_secs(1);

pub struct TasksApi {
    pub(super) node: Arc<RaftNode>,
    pub(super) logs: Arc<super::logs::Logs>,
}

/// A task log as `TaskLogs` sends it.
type LogChunks = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::TaskLogsChunk, Status>> + Send + 'static>,
>;

impl TasksApi {
    /// Proposes a change to one task and answers with the task after it.
    async fn change(
        &self,
        meta: Option<pb::WriteMeta>,
        op: Op,
    ) -> Result<Option<pb::Task>, Status> {
        match propose(&self.node, meta, op).await?.0 {
            Reply::Task { id } => self.read(id).await.map(Some),
            other => Err(key_reused(other)),
        }
    }

    async fn submit_one(
        &self,
        req: pb::SubmitTaskRequest,
    ) -> Result<pb::SubmitTaskResponse, Status> {
        let write = submit_write(req)?;
        super::auth::authorize(&self.node.sm().state(), &write)?;
        let (response, _) = self.node.write(write).await.map_err(error::node_status)?;
        self.submitted(response)
    }

    /// What a single submit's response tells its client.
    fn submitted(
        &self,
        response: crate::model::Response,
    ) -> Result<pb::SubmitTaskResponse, Status> {
        let replayed = response.replayed;
        match response.result.map_err(model_status)? {
            Reply::TasksSubmitted { ids } if ids.len() == 1 => {
                let state = self.node.sm().state();
                let queue = state
                    .task(ids[0])
                    .map(|t| convert::queue_name(&state, t.queue))
                    .unwrap_or_default();
                Ok(pb::SubmitTaskResponse {
                    id: ids[0],
                    created: !replayed,
                    queue,
                })
            }
            other => Err(key_reused(other)),
        }
    }

    /// A task with its body, as this node has applied it.
    ///
    /// Every task has a body in storage, written by the apply that created
    /// it, but that apply lets go of the model before it writes storage (and
    /// may give way in between). A task in the model without a body is one
    /// that the apply in progress has just created: the read waits for that
    /// apply to end rather than answer with an empty command and payload.
    async fn read(&self, id: u64) -> Result<pb::Task, Status> {
        let sm = self.node.sm();
        let mut tries = 0;
        loop {
            tries += 1;
            let applied = sm.applied().index;
            let body = sm
                .task_body(id)
                .map_err(|e| Status::internal(format!("reading task {id}: {e}")))?;
            {
                let state = sm.state();
                let task = state
                    .task(id)
                    .ok_or_else(|| Status::not_found(format!("id: no task {id}")))?;
                if body.is_some() || tries == BODY_TRIES {
                    return Ok(convert::task(&state, task, body));
                }
            }
            // Published once its storage write is done.
            let _ = sm.wait_applied(applied + 1, BODY_WAIT).await;
        }
    }
}

/// The write of one submit: a task and an idempotency key are required.
fn submit_write(req: pb::SubmitTaskRequest) -> Result<Write, Status> {
    let spec = req
        .task
        .ok_or_else(|| Status::invalid_argument("task: missing"))?;
    let tasks = vec![convert::new_task(spec)];
    write_of(req.meta, Op::SubmitTasks { tasks })
}

#[tonic::async_trait]
impl Tasks for TasksApi {
    type TaskLogsStream = LogChunks;

    async fn task_logs(
        &self,
        req: Request<pb::TaskLogsRequest>,
    ) -> Result<Response<LogChunks>, Status> {
        use futures::StreamExt;
        let chunks = self.logs.task_logs(req.into_inner()).await?;
        let chunks = chunks.map(|c| c.map(|data| pb::TaskLogsChunk { data }));
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn submit_task(
        &self,
        req: Request<pb::SubmitTaskRequest>,
    ) -> Result<Response<pb::SubmitTaskResponse>, Status> {
        self.submit_one(req.into_inner()).await.map(Response::new)
    }

    async fn submit_each(
        &self,
        req: Request<pb::SubmitEachRequest>,
    ) -> Result<Response<pb::SubmitEachResponse>, Status> {
        let submits = req.into_inner().submits;
        let writes = submits.into_iter().map(submit_write).collect();
        let outcomes = propose_each(&self.node, "submits", writes)
            .await?
            .into_iter()
            .map(|r| pb::SubmitOutcome {
                outcome: Some(match r.and_then(|r| self.submitted(r)) {
                    Ok(submitted) => pb::submit_outcome::Outcome::Submitted(submitted),
                    Err(status) => pb::submit_outcome::Outcome::Refused(refused(&status)),
                }),
            })
            .collect();
        Ok(Response::new(pb::SubmitEachResponse { outcomes }))
    }

    async fn submit_tasks(
        &self,
        req: Request<pb::SubmitTasksRequest>,
    ) -> Result<Response<pb::SubmitTasksResponse>, Status> {
        let req = req.into_inner();
        let op = Op::SubmitTasks {
            tasks: req.tasks.into_iter().map(convert::new_task).collect(),
        };
        match propose(&self.node, req.meta, op).await? {
            (Reply::TasksSubmitted { ids }, replayed) => {
                Ok(Response::new(pb::SubmitTasksResponse {
                    ids,
                    created: !replayed,
                }))
            }
            (other, _) => Err(key_reused(other)),
        }
    }

    async fn get_task(
        &self,
        req: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let req = req.into_inner();
        read_barrier(&self.node, req.consistency).await?;
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(self.read(req.id).await?),
        }))
    }

    async fn list_tasks(
        &self,
        req: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let req = req.into_inner();
        let filter = Filter::parse(&req).map_err(model_status)?;
        read_barrier(&self.node, req.consistency).await?;
        let state = self.node.sm().state();
        let (tasks, next_page_token) = list(&state, &filter).map_err(model_status)?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks: tasks
                .into_iter()
                .map(|t| convert::task(&state, t, None))
                .collect(),
            next_page_token,
        }))
    }

    async fn cancel_task(
        &self,
        req: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::CancelTaskResponse>, Status> {
        let req = req.into_inner();
        let op = Op::CancelTask {
            id: req.id,
            reason: req.reason,
        };
        let task = self.change(req.meta, op).await?;
        Ok(Response::new(pb::CancelTaskResponse { task }))
    }

    async fn dequeue_task(
        &self,
        req: Request<pb::DequeueTaskRequest>,
    ) -> Result<Response<pb::DequeueTaskResponse>, Status> {
        let req = req.into_inner();
        let op = Op::DequeueTask {
            id: req.id,
            reason: req.reason,
        };
        let task = self.change(req.meta, op).await?;
        Ok(Response::new(pb::DequeueTaskResponse { task }))
    }

    async fn move_task(
        &self,
        req: Request<pb::MoveTaskRequest>,
    ) -> Result<Response<pb::MoveTaskResponse>, Status> {
        let req = req.into_inner();
        let to = match req.to {
            None => return Err(Status::invalid_argument(
                "to: say where: front, back, forward, backward, position, before, after or queue",
            )),
            Some(To::Front(_)) => MoveTo::Front,
            Some(To::Back(_)) => MoveTo::Back,
            Some(To::Forward(n)) => MoveTo::Forward(n),
            Some(To::Backward(n)) => MoveTo::Backward(n),
            Some(To::Position(0)) => {
                return Err(Status::invalid_argument(
                    "position: counts from 1 (the front)",
                ))
            }
            Some(To::Position(p)) => MoveTo::Position(p - 1),
            Some(To::Before(id)) => MoveTo::Before(id),
            Some(To::After(id)) => MoveTo::After(id),
            Some(To::Queue(q)) => MoveTo::Queue(q),
        };
        let task = self
            .change(req.meta, Op::MoveTask { id: req.id, to })
            .await?;
        Ok(Response::new(pb::MoveTaskResponse { task }))
    }
}

/// What a task list asks for.
struct Filter {
    queue: Option<String>,
    state: Option<TaskState>,
    project: Option<String>,
    run: Option<String>,
    page_size: usize,
    token: Token,
}

/// Where a page starts. Queued lists go by queue name and position (a move
/// between pages can shift what the next page shows); others go by id.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Start,
    Queued { queue: String, offset: usize },
    AfterId(u64),
}

impl Token {
    fn encode(&self) -> String {
        match self {
            Token::Start => String::new(),
            Token::Queued { queue, offset } => format!("q/{queue}/{offset}"),
            Token::AfterId(id) => format!("i/{id}"),
        }
    }

    fn parse(s: &str) -> Result<Self, ModelError> {
        let bad = || {
            ModelError::invalid(
                "page_token",
                format!("{s:?} is not a token from a previous page"),
            )
        };
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [""] => Ok(Token::Start),
            ["q", queue, offset] => Ok(Token::Queued {
                queue: queue.to_string(),
                offset: offset.parse().map_err(|_| bad())?,
            }),
            ["i", id] => Ok(Token::AfterId(id.parse().map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    }
}

impl Filter {
    fn parse(req: &pb::ListTasksRequest) -> Result<Self, ModelError> {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let page_size = match req.page_size as usize {
            0 => LIST_PAGE_DEFAULT,
            n if n > LIST_PAGE_MAX => {
                return Err(ModelError::invalid(
                    "page_size",
                    format!("{n} is out of range; use 1 to {LIST_PAGE_MAX}"),
                ))
            }
            n => n,
        };
        Ok(Self {
            queue: opt(&req.queue),
            state: match req.state.as_str() {
                "" => None,
                s => Some(TaskState::parse("state", s)?),
            },
            project: opt(&req.project),
            run: opt(&req.run),
            page_size,
            token: Token::parse(&req.page_token)?,
        })
    }

    fn matches(&self, state: &State, t: &Task) -> bool {
        self.state.is_none_or(|s| s == t.state)
            && self.project.as_ref().is_none_or(|p| *p == t.project)
            && self.run.as_ref().is_none_or(|r| *r == t.run)
            && self
                .queue
                .as_ref()
                .is_none_or(|q| state.queue(q).is_some_and(|q| q.id == t.queue))
    }
}

/// One page of a task list, and the token of the next page (empty at the end).
fn list<'s>(state: &'s State, f: &Filter) -> Result<(Vec<&'s Task>, String), ModelError> {
    if let Some(q) = &f.queue {
        if state.queue(q).is_none() {
            return Err(ModelError::not_found(
                "queue",
                format!("no queue named {q:?}"),
            ));
        }
    }
    match (f.state == Some(TaskState::Queued), &f.token) {
        (true, Token::Start) => Ok(list_queued(state, f, "", 0)),
        (true, Token::Queued { queue, offset }) => Ok(list_queued(state, f, queue, *offset)),
        (false, Token::Start) => Ok(list_by_id(state, f, 0)),
        (false, Token::AfterId(id)) => Ok(list_by_id(state, f, *id)),
        _ => Err(ModelError::invalid(
            "page_token",
            "is from a list of another kind",
        )),
    }
}

/// A page of queued tasks in queue order, from the `offset`-th task of
/// queue `start_queue` (queues by name).
fn list_queued<'s>(
    state: &'s State,
    f: &Filter,
    start_queue: &str,
    mut offset: usize,
) -> (Vec<&'s Task>, String) {
    let mut page = Vec::new();
    let queues = state
        .queues()
        .filter(|q| f.queue.as_ref().is_none_or(|n| *n == q.name))
        .filter(|q| q.name.as_str() >= start_queue);
    for q in queues {
        if q.name != start_queue {
            offset = 0;
        }
        loop {
            let ids = state.queued_range(q.id, offset, f.page_size);
            if ids.is_empty() {
                break;
            }
            for id in ids {
                offset += 1;
                let t = state.task(id).expect("a queued id is a task");
                if f.matches(state, t) {
                    page.push(t);
                    if page.len() == f.page_size {
                        let next = Token::Queued {
                            queue: q.name.clone(),
                            offset,
                        };
                        return (page, next.encode());
                    }
                }
            }
        }
    }
    (page, String::new())
}

/// A page of tasks by id, from the first after `after`.
fn list_by_id<'s>(state: &'s State, f: &Filter, after: u64) -> (Vec<&'s Task>, String) {
    let mut page = Vec::new();
    for t in state.tasks_after(after) {
        if f.matches(state, t) {
            page.push(t);
            if page.len() == f.page_size {
                return (page, Token::AfterId(t.id).encode());
            }
        }
    }
    (page, String::new())
}
