//! Task logs from anywhere. A task's output stays in a file on its
//! worker's machine; the worker agent keeps one `ServeLogs` stream open to
//! some node, and a `TaskLogs` call on any node finds the attempt's worker
//! in the state, asks it over that stream when it is connected here
//! (`hub.rs`), or asks the other nodes over the peer protocol's `LogRelay`
//! (`relay.rs`), and passes the chunks on as they come.
//!
//! **Architecture Invariant:** a log never enters the Raft log or the
//! store: it passes through a node's memory, in bounded chunks and queues,
//! from one worker to one caller. A node relays only its own workers'
//! streams to a peer, so that asks never travel further than one hop.

mod hub;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tonic::{Status, Streaming};

use hub::{Ask, Chunks, LogHub};
pub use relay::{log_relay_server, RelayApi};

use super::error;
use crate::model::worker::WorkerState;
use crate::model::{State, TaskState};
use crate::proto::v1 as pb;
use crate::raft::{PeerNetwork, RaftNode};

/// How long a new `ServeLogs` stream may take to name its worker.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The asks a worker's stream carries.
pub type AskStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::LogAsk, Status>> + Send + 'static>>;

/// What the Tasks, Workers and LogRelay services share about logs.
pub struct Logs {
    hub: LogHub,
    node: Arc<RaftNode>,
    /// The node's own connections to its peers, for relays.
    network: PeerNetwork,
    /// True once the node shuts down: every stream ends, so that the
    /// shutdown does not wait for a follow.
    stopping: watch::Receiver<bool>,
}

impl Logs {
    pub fn new(
        node: Arc<RaftNode>,
        network: PeerNetwork,
        stopping: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            hub: LogHub::default(),
            node,
            network,
            stopping,
        })
    }

    /// `Tasks.TaskLogs`: the attempt's worker, asked here or through a peer.
    pub async fn task_logs(&self, req: pb::TaskLogsRequest) -> Result<Chunks, Status> {
        self.node.linearize().await.map_err(error::node_status)?;
        let ask = which(&self.node.sm().state(), &req)?;
        if let Some(chunks) = self.hub.ask(&ask, self.hub.slot()?) {
            return chunks.map(|c| self.until_stopping(c));
        }
        match relay::from_peers(self, &ask).await? {
            Some(chunks) => Ok(self.until_stopping(chunks)),
            None => Err(gone(&self.node.sm().state(), &ask)),
        }
    }

    /// `Workers.ServeLogs`: registers the worker's stream once its first
    /// message names it, and hands each later one to its ask.
    pub async fn serve_logs(
        self: &Arc<Self>,
        mut uploads: Streaming<pb::LogUpload>,
    ) -> Result<AskStream, Status> {
        let first = match tokio::time::timeout(HELLO_TIMEOUT, uploads.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return Err(Status::invalid_argument("worker: the stream ended first")),
            Ok(Err(s)) => return Err(s),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "worker: the first message must name the worker, within {HELLO_TIMEOUT:?}"
                )))
            }
        };
        let worker = first.worker;
        crate::model::validate::name("worker", &worker).map_err(error::model_status)?;
        super::auth::authorize_heartbeat(&self.node.sm().state(), &worker)?;
        let (conn, asks) = self.hub.connect(&worker);
        tracing::info!(worker, "a worker's log stream is open");
        let logs = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(upload)) = uploads.message().await {
                logs.hub.deliver(&worker, conn, upload).await;
            }
            logs.hub.disconnect(&worker, conn);
            tracing::info!(worker, "a worker's log stream closed");
        });
        let asks = tokio_stream::wrappers::ReceiverStream::new(asks).map(Ok);
        let mut stopping = self.stopping.clone();
        let end = async move { stopped(&mut stopping).await };
        Ok(Box::pin(asks.take_until(end)))
    }

    /// Ends `chunks` with UNAVAILABLE when the node shuts down.
    fn until_stopping(&self, chunks: Chunks) -> Chunks {
        let state = Some((chunks, self.stopping.clone()));
        Box::pin(futures::stream::unfold(state, |state| async move {
            let (mut chunks, mut stopping) = state?;
            tokio::select! {
                next = chunks.next() => {
                    let c = next?;
                    let more = c.is_ok().then_some((chunks, stopping));
                    Some((c, more))
                }
                () = stopped(&mut stopping) => Some((
                    Err(Status::unavailable("the node is shutting down; ask another for the rest")),
                    None,
                )),
            }
        }))
    }
}

/// Returns once the node shuts down (never, if it cannot tell).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The attempt `req` asks for and the worker that ran it.
fn which(state: &State, req: &pb::TaskLogsRequest) -> Result<Ask, Status> {
    let id = req.id;
    let task = state
        .task(id)
        .ok_or_else(|| Status::not_found(format!("id: no task {id}")))?;
    if task.attempt == 0 {
        return Err(Status::failed_precondition(format!(
            "task {id} has not run yet: no output"
        )));
    }
    let attempt = match req.attempt {
        0 => task.attempt,
        n if n > task.attempt => {
            return Err(Status::not_found(format!(
                "attempt: task {id} has had {} attempt(s); there is no attempt {n}",
                task.attempt
            )))
        }
        n => n,
    };
    // The leases in the timeline, newest last: the latest is the task's
    // current attempt, each before it one attempt earlier.
    let back = (task.attempt - attempt) as usize;
    let worker = match back {
        0 => task.worker().map(str::to_string),
        _ => task
            .timeline
            .iter()
            .rev()
            .filter(|t| t.state == TaskState::Leased)
            .nth(back)
            .map(|t| t.actor.to_string()),
    };
    let worker = worker.ok_or_else(|| {
        Status::not_found(format!(
            "attempt: task {id}'s timeline no longer says which worker ran attempt {attempt}"
        ))
    })?;
    Ok(Ask {
        worker,
        task: id,
        attempt,
        follow: req.follow,
        tail_lines: req.tail_lines,
    })
}

/// The refusal when no node has the worker's stream.
fn gone(state: &State, ask: &Ask) -> Status {
    let w = &ask.worker;
    let why = match state.worker(w).map(|w| w.state) {
        None => "it was removed".to_string(),
        Some(WorkerState::Lost) => "it is lost".to_string(),
        Some(WorkerState::Active) => {
            "its agent has no log stream open to any node: it may be reconnecting, or older \
             than this release"
                .to_string()
        }
    };
    Status::failed_precondition(format!(
        "worker {w} is not connected to the cluster ({why}): task {}'s output is on that \
         machine, in its log dir, as {}-{}.log",
        ask.task, ask.task, ask.attempt
    ))
}
