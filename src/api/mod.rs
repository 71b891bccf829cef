//! The public gRPC services (`proto/laneq/v1`). Each handler checks its input,
//! turns it into a model write or a read, and maps refusals onto status codes.
//!
//! **Architecture Invariant:** handlers never mutate state directly: every
//! change goes through `RaftNode::write`, so through the log.

pub mod auth;
mod backup;
mod cluster;
mod convert;
mod error;
mod logs;
mod metrics;
mod pools;
mod projects;
mod queues;
mod tasks;
mod tokens;
mod watch;
mod workers;

use std::sync::Arc;

use crate::model::limits::BATCH_MAX_TASKS;
use crate::model::{Op, Reply, Write};
use crate::proto::v1::cluster_server::ClusterServer;
use crate::proto::v1::config_server::ConfigServer;
use crate::proto::v1::pools_server::PoolsServer;
use crate::proto::v1::projects_server::ProjectsServer;
use crate::proto::v1::queues_server::QueuesServer;
use crate::proto::v1::tasks_server::TasksServer;
use crate::proto::v1::WriteMeta;
use crate::raft::RaftNode;
use crate::wire::CLIENT_MESSAGE_MAX_BYTES;

pub use logs::{log_relay_server, Logs, RelayApi};
pub use watch::{watch_server, WatchApi};

pub fn cluster_server(
    node: Arc<RaftNode>,
    hub: Arc<crate::duties::WorkerHub>,
) -> ClusterServer<cluster::ClusterApi> {
    ClusterServer::new(cluster::ClusterApi {
        node,
        hub,
        saving: Arc::new(tokio::sync::Semaphore::new(1)),
    })
}

pub fn metrics_server(
    node: Arc<RaftNode>,
) -> crate::proto::v1::metrics_server::MetricsServer<metrics::MetricsApi> {
    crate::proto::v1::metrics_server::MetricsServer::new(metrics::MetricsApi { node })
        .max_encoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
}

pub fn pools_server(node: Arc<RaftNode>) -> PoolsServer<pools::PoolsApi> {
    PoolsServer::new(pools::PoolsApi { node })
}

pub fn projects_server(node: Arc<RaftNode>) -> ProjectsServer<projects::ProjectsApi> {
    ProjectsServer::new(projects::ProjectsApi { node })
}

pub fn config_server(node: Arc<RaftNode>) -> ConfigServer<projects::ConfigApi> {
    ConfigServer::new(projects::ConfigApi { node })
}

pub fn queues_server(node: Arc<RaftNode>) -> QueuesServer<queues::QueuesApi> {
    QueuesServer::new(queues::QueuesApi { node })
        .max_decoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
        .max_encoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
}

pub fn workers_server(
    node: Arc<RaftNode>,
    hub: Arc<crate::duties::WorkerHub>,
    logs: Arc<Logs>,
) -> crate::proto::v1::workers_server::WorkersServer<workers::WorkersApi> {
    crate::proto::v1::workers_server::WorkersServer::new(workers::WorkersApi { node, hub, logs })
        .max_decoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
        .max_encoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
}

pub fn tokens_server(
    node: Arc<RaftNode>,
) -> crate::proto::v1::tokens_server::TokensServer<tokens::TokensApi> {
    crate::proto::v1::tokens_server::TokensServer::new(tokens::TokensApi { node })
}

pub fn tasks_server(node: Arc<RaftNode>, logs: Arc<Logs>) -> TasksServer<tasks::TasksApi> {
    TasksServer::new(tasks::TasksApi { node, logs })
        .max_decoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
        .max_encoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
}

/// Proposes `op` through the log with the request's idempotency key. Returns
/// the reply and whether it is the replayed outcome of an earlier use of the
/// key. The shape of the write is checked by `RaftNode::write` before
/// anything is proposed; refusals from apply become status codes here.
async fn propose(
    node: &RaftNode,
    meta: Option<WriteMeta>,
    op: Op,
) -> Result<(Reply, bool), tonic::Status> {
    let write = write_of(meta, op)?;
    auth::authorize(&node.sm().state(), &write)?;
    let (response, _) = node.write(write).await.map_err(error::node_status)?;
    let reply = response.result.map_err(error::model_status)?;
    Ok((reply, response.replayed))
}

/// Proposes independent writes as one batch (a `SubmitEach` or
/// `CompleteEach` call, `RaftNode::write_batch`): one forward from a
/// follower, one log entry, one wait for apply. Each still applies under
/// its own key with its own response, and one refused does not touch the
/// others. A write that could not be built keeps its refusal. Returns one
/// result per write, in order. A request of more than [`BATCH_MAX_TASKS`]
/// writes (in its field `field`) is refused whole.
async fn propose_each(
    node: &RaftNode,
    field: &str,
    writes: Vec<Result<Write, tonic::Status>>,
) -> Result<Vec<Result<crate::model::Response, tonic::Status>>, tonic::Status> {
    if writes.len() > BATCH_MAX_TASKS {
        return Err(tonic::Status::invalid_argument(format!(
            "{field}: {} in one request; the limit is {BATCH_MAX_TASKS}",
            writes.len()
        )));
    }
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut good = Vec::new();
    let writes: Vec<_> = {
        let state = node.sm().state();
        let permitted = |w: Write| auth::authorize(&state, &w).map(|()| w);
        writes.into_iter().map(|w| w.and_then(permitted)).collect()
    };
    for w in writes {
        match w {
            Ok(w) => {
                good.push(w);
                outcomes.push(None);
            }
            Err(status) => outcomes.push(Some(Err(status))),
        }
    }
    if !good.is_empty() {
        let count = good.len();
        let (response, _) = node.write_batch(good).await.map_err(error::node_status)?;
        let responses = match response.result {
            Ok(Reply::Batch(r)) if r.len() == count => r,
            other => {
                return Err(tonic::Status::internal(format!(
                    "{count} writes were answered with {other:?}"
                )))
            }
        };
        let mut responses = responses.into_iter();
        for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
            *slot = Some(Ok(responses.next().expect("one response per write")));
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every outcome is set"))
        .collect())
}

/// How a refused write of a `SubmitEach` or `CompleteEach` call is reported.
fn refused(status: &tonic::Status) -> crate::proto::v1::RefusedWrite {
    crate::proto::v1::RefusedWrite {
        code: status.code() as i32,
        message: status.message().to_string(),
    }
}

/// Refuses a write without an idempotency key.
fn require_key(meta: &WriteMeta) -> Result<(), tonic::Status> {
    if meta.idempotency_key.is_empty() {
        return Err(tonic::Status::invalid_argument(
            "meta.idempotency_key: every write needs one, so that a retry is applied once",
        ));
    }
    Ok(())
}

/// The write of `op` under a request's meta, which must carry a key. Its
/// actor is the authenticated caller (`auth::actor`).
fn write_of(meta: Option<WriteMeta>, op: Op) -> Result<Write, tonic::Status> {
    let meta = meta.unwrap_or_default();
    require_key(&meta)?;
    Ok(Write {
        idempotency_key: meta.idempotency_key,
        actor: auth::actor(meta.actor)?,
        op,
    })
}

/// The meta of the n-th command a request proposes (lease polls): n = 0 is
/// the request's own; the others derive their key from it
/// ([`crate::wire::nth_key`]), so a retried request replays the same
/// commands in the same order.
fn nth_write(meta: &WriteMeta, n: u64) -> WriteMeta {
    WriteMeta {
        idempotency_key: crate::wire::nth_key(&meta.idempotency_key, n),
        actor: meta.actor.clone(),
    }
}

/// The answer when a reply does not fit the request: its idempotency key was
/// first used for another kind of write.
fn key_reused(other: Reply) -> tonic::Status {
    tonic::Status::failed_precondition(format!(
        "meta.idempotency_key: already used for another kind of write ({other:?})"
    ))
}

/// Waits until a read at `consistency` may be served from this node.
async fn read_barrier(node: &RaftNode, consistency: i32) -> Result<(), tonic::Status> {
    use crate::proto::v1::Consistency;
    match Consistency::try_from(consistency) {
        Ok(Consistency::Stale) => Ok(()),
        Ok(Consistency::Linearizable) => node
            .linearize()
            .await
            .map(|_| ())
            .map_err(error::node_status),
        Err(_) => Err(tonic::Status::invalid_argument(format!(
            "consistency: unknown value {consistency}"
        ))),
    }
}
