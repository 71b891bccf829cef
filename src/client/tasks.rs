//! Task calls: submit (one or a batch), read, list, cancel, dequeue, move.
//! Every write carries one idempotency key for all its retries.

use super::{required, write_meta, Client, ClientError, ReadConsistency};
use crate::proto::v1::move_task_request::To;
use crate::proto::v1::tasks_client::TasksClient;
use crate::proto::v1::*;

/// Which tasks a list returns. Empty fields match every task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub queue: String,
    /// A task state (`queued` lists in queue order), or empty for all.
    pub state: String,
    pub project: String,
    pub run: String,
    /// Tasks per page; 0 lets the server choose (100).
    pub page_size: u32,
}

impl Client {
    /// Submits a task to `queue` in the default project. `idempotency_key`
    /// defaults to a fresh key; pass your own to make retries across
    /// processes safe.
    pub async fn submit_task(
        &self,
        queue: &str,
        command: Vec<String>,
        payload: Vec<u8>,
        idempotency_key: Option<String>,
    ) -> Result<SubmitTaskResponse, ClientError> {
        let spec = TaskSpec {
            queue: queue.to_string(),
            command,
            payload,
            ..Default::default()
        };
        self.submit(spec, idempotency_key).await
    }

    /// Submits one task with every field. Submits made concurrently from
    /// this process share calls (see `batch`); each keeps its own key and
    /// outcome.
    pub async fn submit(
        &self,
        spec: TaskSpec,
        idempotency_key: Option<String>,
    ) -> Result<SubmitTaskResponse, ClientError> {
        let req = SubmitTaskRequest {
            meta: write_meta(idempotency_key),
            task: Some(spec),
        };
        self.shared(&self.inner.submits, req).await
    }

    /// Submits tasks atomically: every one is accepted or none is. The ids
    /// come back in the order given.
    pub async fn submit_batch(
        &self,
        tasks: Vec<TaskSpec>,
        idempotency_key: Option<String>,
    ) -> Result<SubmitTasksResponse, ClientError> {
        let req = SubmitTasksRequest {
            meta: write_meta(idempotency_key),
            tasks,
        };
        self.unary(req, TasksClient::submit_tasks).await
    }

    pub async fn get_task(&self, id: u64, c: ReadConsistency) -> Result<Task, ClientError> {
        let req = GetTaskRequest {
            id,
            consistency: c.proto(),
        };
        let resp = self.unary(req, TasksClient::get_task).await?;
        required(resp.task, "get_task", "task")
    }

    /// One page of tasks (without command and payload). Pass the previous
    /// page's `next_page_token` to get the next; it is empty on the last.
    pub async fn list_tasks(
        &self,
        filter: &TaskFilter,
        page_token: &str,
        c: ReadConsistency,
    ) -> Result<ListTasksResponse, ClientError> {
        let req = ListTasksRequest {
            queue: filter.queue.clone(),
            state: filter.state.clone(),
            project: filter.project.clone(),
            run: filter.run.clone(),
            page_size: filter.page_size,
            page_token: page_token.to_string(),
            consistency: c.proto(),
        };
        self.unary(req, TasksClient::list_tasks).await
    }

    /// Cancels a queued, leased or running task.
    pub async fn cancel_task(&self, id: u64, reason: &str) -> Result<Task, ClientError> {
        let req = CancelTaskRequest {
            meta: write_meta(None),
            id,
            reason: reason.to_string(),
        };
        let resp = self.unary(req, TasksClient::cancel_task).await?;
        required(resp.task, "cancel_task", "task")
    }

    /// Takes a queued task out of its queue (it becomes `dequeued`).
    pub async fn dequeue_task(&self, id: u64, reason: &str) -> Result<Task, ClientError> {
        let req = DequeueTaskRequest {
            meta: write_meta(None),
            id,
            reason: reason.to_string(),
        };
        let resp = self.unary(req, TasksClient::dequeue_task).await?;
        required(resp.task, "dequeue_task", "task")
    }

    /// Reorders a queued task, or moves it to the back of another queue.
    pub async fn move_task(&self, id: u64, to: To) -> Result<Task, ClientError> {
        let req = MoveTaskRequest {
            meta: write_meta(None),
            id,
            to: Some(to),
        };
        let resp = self.unary(req, TasksClient::move_task).await?;
        required(resp.task, "move_task", "task")
    }
}

/// Task logs: a task's output as a stream of bytes from any node.
impl Client {
    /// Task `id`'s output (its latest attempt when `attempt` is 0), its
    /// last `tail_lines` lines (0: all) and, with `follow`, what it writes
    /// until its run ends. Chunks are raw bytes, cut anywhere. Opening goes
    /// through the retry loop; a stream that breaks ends with its error.
    pub fn task_logs(
        &self,
        id: u64,
        attempt: u32,
        follow: bool,
        tail_lines: u64,
    ) -> impl futures::Stream<Item = Result<Vec<u8>, ClientError>> + Send + 'static {
        let req = TaskLogsRequest {
            id,
            attempt,
            follow,
            tail_lines,
        };
        let client = self.clone();
        let open = async move {
            // The node may ask its peers in turn: the whole deadline.
            client.unary_long(req, TasksClient::task_logs).await
        };
        use futures::StreamExt;
        futures::stream::once(open).flat_map(|opened| match opened {
            Ok(chunks) => chunks
                .map(|c| c.map(|c| c.data).map_err(ClientError::Status))
                .boxed(),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        })
    }
}
