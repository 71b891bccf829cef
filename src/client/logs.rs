//! Task logs: a task's output as a stream of bytes from any node
//! (`Tasks.TaskLogs`), and the worker agent's side of `Workers.ServeLogs`,
//! the one stream over which the cluster asks it for its tasks' logs.

use futures::{Stream, StreamExt};
use tonic::Streaming;

use super::retry::Service;
use super::{Client, ClientError};
use crate::proto::v1::tasks_client::TasksClient;
use crate::proto::v1::workers_client::WorkersClient;
use crate::proto::v1::{LogAsk, LogUpload, TaskLogsRequest};

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
    ) -> impl Stream<Item = Result<Vec<u8>, ClientError>> + Send + 'static {
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
        futures::stream::once(open).flat_map(|opened| match opened {
            Ok(chunks) => chunks
                .map(|c| c.map(|c| c.data).map_err(ClientError::Status))
                .boxed(),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        })
    }

    /// Opens a worker's `ServeLogs` stream on the node tried first (the
    /// next one after a failure): `uploads` starts with the message that
    /// names the worker. One attempt, no retry: the agent reconnects.
    pub async fn serve_logs(
        &self,
        uploads: impl Stream<Item = LogUpload> + Send + 'static,
    ) -> Result<Streaming<LogAsk>, ClientError> {
        let (index, addr, channel) = self.pick();
        let mut workers: WorkersClient<_> =
            Service::connect(channel, self.inner.credentials.clone());
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
