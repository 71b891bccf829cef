//! laneq: a Raft-replicated, highly available queue store for ML job
//! scheduling. See ARCHITECTURE.md for the map of this crate.

pub mod api;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod gather;
pub mod model;
pub mod node;
pub mod raft;
pub mod store;
pub mod worker;

/// Generated protobuf and gRPC code.
pub mod proto {
    /// Peer-to-peer protocol (never used by clients).
    pub mod raft {
        tonic::include_proto!("laneq.raft");
    }
    /// The public API, version 1.
    pub mod v1 {
        tonic::include_proto!("laneq.v1");
    }
}
