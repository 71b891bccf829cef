//! The pool: an isolation boundary that holds clusters; work never crosses
//! pools.
//!
//! **Architecture Invariant:** a plain record as stored; its rules are
//! enforced by `state`'s apply, never here.

use serde::{Deserialize, Serialize};

/// An isolation boundary (a cluster pool): it holds clusters, and work never
/// crosses pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    /// Execution targets in this pool (Kubernetes clusters, racks, ...).
    pub clusters: std::collections::BTreeSet<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Bumped on every change.
    pub version: u64,
}
