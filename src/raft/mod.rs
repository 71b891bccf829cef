//! Everything that touches openraft lives here, so that the next alpha
//! upgrade changes one module: the type configuration, the adapters from
//! openraft's storage traits onto `crate::store`, the peer network over tonic,
//! and [`RaftNode`], which gives the rest of laneq a laneq-typed API.
//!
//! **Architecture Invariant:** no openraft type appears in a public signature
//! outside this module.

mod coalesce;
mod log_store;
mod network;
pub use network::{endpoint_channel, PEER_MESSAGE_MAX_BYTES};
mod node;
mod proposal;
pub mod runtime;
mod service;
mod state_machine;

pub use log_store::LogStore;
pub use network::PeerNetwork;
pub use node::{noting_forwards, NodeError, NodeStatus, RaftNode, RaftTimings};
pub use proposal::Proposal;
pub use service::PeerService;
pub use state_machine::{Applied, SmShared, StateMachine};

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

#[cfg(test)]
mod storage_suite;
