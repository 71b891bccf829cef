//! The project: who submits, where its tasks go by default and which queues
//! it may use.
//!
//! **Architecture Invariant:** a plain record as stored, with queues by id;
//! its rules are enforced by `state`'s apply, never here.

use serde::{Deserialize, Serialize};

/// Who submits: a default queue and, optionally, the only queues it may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    /// Queue id; None: the organisation's default queue.
    pub default_queue: Option<u64>,
    /// Queue ids; empty: every queue.
    pub allowed_queues: std::collections::BTreeSet<u64>,
    pub max_queued_per_run: u64,
    pub description: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub version: u64,
}
