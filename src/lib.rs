//! laneq: a Raft-replicated, highly available queue store for ML job
//! scheduling. ARCHITECTURE.md is the map; the modules in reading order:
//!
//! - [`model`]: the queue model and its pure, deterministic apply (no IO).
//! - [`codec`], [`wire`], [`gather`], [`clock`], [`config`]: leaves the rest share.
//! - [`records`]: the stored form of records (tables, earlier formats, the
//!   snapshot blob), without RocksDB.
//! - [`store`]: RocksDB: the Raft log, Raft's metadata, the state machine's tables.
//! - [`raft`]: openraft over the store; [`raft::RaftNode`], the write path.
//! - [`duties`]: a node's background work (heartbeat batches, expiry, clears).
//! - [`api`] and [`server`]: the gRPC services (live watches included) and the
//!   `laneq node` process.
//! - [`tls`]: a node's certificates, TLS accept loop and peer gate.
//! - [`observe`]: health, reflection's descriptors, `/metrics` and RPC
//!   tracing; [`meter`], the instruments storage and Raft record into.
//! - [`certs`]: throwaway CAs and certificates (`laneq certs create`).
//! - [`client`]: the Rust client; [`cli`] and [`worker`]: the CLI (its live
//!   `--watch` views too) and the agent.
//!
//! [`store`], [`raft`], [`duties`], [`api`], [`server`], [`observe`],
//! [`tls`] and [`meter`] are the `server` feature.

pub mod certs;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod gather;
pub mod model;
pub mod records;
pub mod wire;
pub mod worker;

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod duties;
#[cfg(feature = "server")]
pub mod meter;
#[cfg(feature = "server")]
pub mod observe;
#[cfg(feature = "server")]
pub mod raft;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod tls;

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

        /// The encoded `FileDescriptorSet` of `proto/laneq/v1` (with
        /// comments), for server reflection; the peer protocol is not in it.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/laneq_v1_descriptor.bin"));
        include!(concat!(env!("OUT_DIR"), "/laneq_v1_services.rs"));
    }
}
