//! Task logs between nodes: the peer protocol's `LogRelay` service, which
//! serves an ask only from a worker stream open on this node (NOT_FOUND at
//! once otherwise), and [`from_peers`], which asks each other member in
//! turn. It runs on the peer port behind the same gate as Raft's messages:
//! the caller's permission was checked by the node it called.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tonic::{Code, Request, Response, Status};

use super::{Ask, Chunks, Logs};
use crate::proto::raft::log_relay_client::LogRelayClient;
use crate::proto::raft::log_relay_server::{LogRelay, LogRelayServer};
use crate::proto::raft::{RelayLogsChunk, RelayLogsRequest};

/// How long a peer may take to say whether it has the worker.
pub const RELAY_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The `LogRelay` service of a node.
pub fn log_relay_server(logs: Arc<Logs>) -> LogRelayServer<RelayApi> {
    LogRelayServer::new(RelayApi { logs })
}

pub struct RelayApi {
    logs: Arc<Logs>,
}

type Relayed =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RelayLogsChunk, Status>> + Send>>;

#[tonic::async_trait]
impl LogRelay for RelayApi {
    type RelayLogsStream = Relayed;

    async fn relay_logs(
        &self,
        req: Request<RelayLogsRequest>,
    ) -> Result<Response<Relayed>, Status> {
        let r = req.into_inner();
        let ask = Ask {
            worker: r.worker,
            task: r.task,
            attempt: r.attempt,
            follow: r.follow,
            tail_lines: r.tail_lines,
        };
        let hub = &self.logs.hub;
        let chunks = hub.ask(&ask, hub.slot()?).ok_or_else(|| {
            Status::not_found(format!(
                "worker {} has no log stream open to this node",
                ask.worker
            ))
        })??;
        let chunks = self.logs.until_stopping(chunks);
        Ok(Response::new(Box::pin(
            chunks.map(|c| c.map(|data| RelayLogsChunk { data })),
        )))
    }
}

/// Asks each other member for `ask`; `None` when none has the worker.
pub(super) async fn from_peers(logs: &Logs, ask: &Ask) -> Result<Option<Chunks>, Status> {
    let status = logs.node.status();
    for (id, addr, _) in status.members.iter().filter(|m| m.0 != status.id) {
        let slot = logs.hub.slot()?;
        let mut client = LogRelayClient::new(logs.network.channel(addr));
        let req = RelayLogsRequest {
            worker: ask.worker.clone(),
            task: ask.task,
            attempt: ask.attempt,
            follow: ask.follow,
            tail_lines: ask.tail_lines,
        };
        match tokio::time::timeout(RELAY_ANSWER_TIMEOUT, client.relay_logs(req)).await {
            Ok(Ok(stream)) => {
                let chunks = stream.into_inner().map(move |c| {
                    let _held = &slot;
                    c.map(|c| c.data)
                });
                return Ok(Some(Box::pin(chunks)));
            }
            Ok(Err(s)) if s.code() == Code::NotFound => {}
            Ok(Err(s)) => tracing::warn!(peer = id, error = %s, "relaying a task log"),
            Err(_) => tracing::warn!(peer = id, "relaying a task log: no answer in time"),
        }
    }
    Ok(None)
}
