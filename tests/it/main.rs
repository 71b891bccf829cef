//! laneq's integration tests, in one binary: real `laneq node` processes
//! (and `laneq worker run` agents) on loopback ports, driven through the
//! client library, the raw gRPC API and the CLI. One binary links RocksDB
//! once; filter by module, e.g. `cargo test --test it workers::`.
//!
//! Every test starts its own cluster through `support` and never shares one:
//! a node outlives no test. No test sleeps to let something happen; it waits
//! for the condition with `support::eventually`. `architecture` checks the
//! source tree itself: its boundaries, cycles and sizes.

mod support;

mod architecture;
mod auth;
mod backup;
mod bad_input;
mod cluster;
mod limits;
mod metrics;
mod observe;
mod pools;
mod retention;
mod tasks;
mod tls;
mod tour;
mod watch;
mod workers;
mod workers_agent;
