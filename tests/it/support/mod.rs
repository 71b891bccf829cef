//! The harness the integration tests share: a cluster of real `laneq node`
//! processes (`cluster`), one node seen through the raw gRPC API with the
//! write metadata its calls carry (`node`), a `laneq worker run` agent
//! process (`agent`), a node's HTTP routes and metrics (`http`), and waiting
//! for a condition instead of for the clock (`eventually`).
//!
//! It must never leave a process behind: every node a `Cluster` started is
//! killed when the `Cluster` drops, so a cluster belongs to one test and is
//! never kept in a static (statics are never dropped). The chaos suite and
//! the benchmarks include this module by path.

mod agent;
mod cluster;
mod eventually;
mod http;
mod node;

pub use agent::Agent;
pub use cluster::*;
pub use eventually::{always, eventually, ok_if};
pub use http::{get, get_tls, tls_connect, Metrics};
pub use node::{code, meta, Node, ACTOR};
