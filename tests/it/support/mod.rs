//! The harness the integration tests share: a cluster of `laneq node`
//! processes, each killed when its handle drops.

mod cluster;

pub use cluster::*;
