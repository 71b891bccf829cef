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

/// jemalloc for every program built on this crate, RocksDB's C++ included
/// (its `malloc` is jemalloc too). Under write load, profiles put a fifth to
/// a quarter of a node's CPU in glibc's malloc and free; jemalloc gave 5-8%
/// more submits per second.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Generated protobuf and gRPC code.
pub mod proto {
    /// Peer-to-peer protocol (never used by clients).
    pub mod raft {
        tonic::include_proto!("laneq.raft");
    }
    /// The public API, version 1. A oneof of a whole task beside a small
    /// refusal (`CompleteOutcome`) is what the wire defines.
    #[allow(clippy::large_enum_variant)]
    pub mod v1 {
        tonic::include_proto!("laneq.v1");
    }
}
