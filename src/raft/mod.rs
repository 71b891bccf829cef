//! Everything that touches openraft lives here, so that the next alpha
//! upgrade changes one module: the type configuration, the adapters from
//! openraft's storage traits onto `crate::store`, the peer network over tonic,
//! and [`RaftNode`], which gives the rest of laneq a laneq-typed API.
//!
//! **Architecture Invariant:** no openraft type appears in a public signature
//! outside this module, but for what the simulation needs to wire a node
//! (`RaftNode::start_with`, `Raft`, `TypeConfig`).

mod backup;
mod coalesce;
mod error;
mod forward;
mod log_store;
mod membership;
mod network;
mod node;
mod peers;
mod proposal;
pub mod runtime;
mod service;
mod state_machine;

pub use backup::{restore, Restored, Taken};
pub use coalesce::{ProposeError, Stamper, WallClock};
pub use error::NodeError;
pub use forward::noting_forwards;
pub use log_store::LogStore;
pub use membership::NodeStatus;
pub use network::{PeerNetwork, PEER_MESSAGE_MAX_BYTES};
pub use node::{RaftNode, Wiring};
pub use peers::{Forwarded, Peers, TonicPeers};
pub use proposal::Proposal;
pub use service::PeerService;
pub use state_machine::{Applied, AppliedFollower, SmShared, StateMachine};

use crate::config::RaftTimings;
use crate::model::Response;

openraft::declare_raft_types!(
    /// laneq's openraft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        AsyncRuntime = runtime::SeedableRuntime,
);

pub type Raft = openraft::Raft<TypeConfig, StateMachine>;
pub(crate) type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub(crate) type Entry = openraft::alias::EntryOf<TypeConfig>;
pub(crate) type Vote = openraft::alias::VoteOf<TypeConfig>;
pub(crate) type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub(crate) type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
/// A snapshot in transit: the whole blob (see `store::snapshot`).
pub type SnapshotData = std::io::Cursor<Vec<u8>>;

/// The openraft config that a node's timings make (every node's but for its
/// snapshot interval, which `RaftNode::start_with` sets per node).
pub fn openraft_config(timings: &RaftTimings, cluster: &str) -> Result<openraft::Config, String> {
    let config = openraft::Config {
        cluster_name: cluster.to_string(),
        heartbeat_interval: timings.heartbeat_interval_ms,
        election_timeout_min: timings.election_timeout_min_ms,
        election_timeout_max: timings.election_timeout_max_ms,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timings.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: timings.max_in_snapshot_log_to_keep,
        replication_lag_threshold: timings.snapshot_logs_since_last.max(1) * 2,
        purge_batch_size: timings.snapshot_logs_since_last.clamp(1, 256),
        max_payload_entries: network::MAX_PAYLOAD_ENTRIES,
        enable_pre_vote: Some(true),
        ..Default::default()
    };
    config.validate().map_err(|e| e.to_string())
}

#[cfg(test)]
mod storage_suite;
