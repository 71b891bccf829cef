//! The public gRPC services (`proto/laneq/v1`). Each handler checks its input,
//! turns it into a model write or a read, and maps refusals onto status codes.
//!
//! **Architecture Invariant:** handlers never mutate state directly: every
//! change goes through `RaftNode::write`, so through the log.

mod cluster;
mod convert;
mod error;
mod pools;
mod queues;
mod tasks;

use std::sync::Arc;

use crate::proto::v1::cluster_server::ClusterServer;
use crate::proto::v1::pools_server::PoolsServer;
use crate::proto::v1::queues_server::QueuesServer;
use crate::proto::v1::tasks_server::TasksServer;
use crate::raft::RaftNode;

pub use error::{LEADER_ADDR_HEADER, LEADER_ID_HEADER};

/// Largest client request or response (a submit carries at most 1 MiB of payload).
pub const CLIENT_MESSAGE_MAX_BYTES: usize = 4 * 1024 * 1024;

pub fn cluster_server(node: Arc<RaftNode>) -> ClusterServer<cluster::ClusterApi> {
    ClusterServer::new(cluster::ClusterApi { node })
}

pub fn pools_server(node: Arc<RaftNode>) -> PoolsServer<pools::PoolsApi> {
    PoolsServer::new(pools::PoolsApi { node })
}

pub fn queues_server(node: Arc<RaftNode>) -> QueuesServer<queues::QueuesApi> {
    QueuesServer::new(queues::QueuesApi { node })
        .max_decoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
        .max_encoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
}

pub fn tasks_server(node: Arc<RaftNode>) -> TasksServer<tasks::TasksApi> {
    TasksServer::new(tasks::TasksApi { node })
        .max_decoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
        .max_encoding_message_size(CLIENT_MESSAGE_MAX_BYTES)
}

/// Waits until a read at `consistency` may be served from this node.
async fn read_barrier(node: &RaftNode, consistency: i32) -> Result<(), tonic::Status> {
    use crate::proto::v1::Consistency;
    match Consistency::try_from(consistency) {
        Ok(Consistency::Stale) => Ok(()),
        Ok(Consistency::Linearizable) => node.linearize().await.map_err(error::node_status),
        Err(_) => Err(tonic::Status::invalid_argument(format!(
            "consistency: unknown value {consistency}"
        ))),
    }
}
