//! The queue: a named scheduling lane within one pool, and the clear that
//! may be under way in it.
//!
//! **Architecture Invariant:** a plain record as stored; its rules (depth,
//! state, clearing) are enforced by `state`'s apply, never here.

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::limits;
use super::spec;

/// A named scheduling lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Stable across renames; tasks and projects refer to queues by id.
    pub id: u64,
    pub name: String,
    pub pool: String,
    pub spec: spec::QueueSpec,
    pub state: spec::QueueState,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When a task last entered, left or moved within the queue.
    pub activity_ms: u64,
    /// Bumped on every change of its settings, name or state (not of its
    /// contents); the read-modify-write check of updates.
    pub version: u64,
    /// How long the most recently started tasks waited, in ms, oldest first
    /// (at most [`limits::RECENT_WAITS`]).
    pub recent_waits: std::collections::VecDeque<u64>,
    /// Round-robin fairness: the project served last.
    pub rr_last_project: String,
    /// A clear or forced delete under way. From the command that starts it,
    /// the queue's queued tasks are as good as gone: none is leased, moved or
    /// canceled, nothing enters the queue, and the following commands
    /// dequeue them, at most [`limits::CLEAR_MAX_PER_COMMAND`] each. The
    /// leader finishes one that its client left (see `api::queues`).
    pub clearing: Option<Clearing>,
}

impl Queue {
    /// The average wait of the most recently started tasks, in ms (none
    /// before the first start).
    pub fn avg_wait_ms(&self) -> Option<u64> {
        let waits = &self.recent_waits;
        (!waits.is_empty()).then(|| waits.iter().sum::<u64>() / waits.len() as u64)
    }
}

/// What a clear under way ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clearing {
    /// The queue stays, empty of queued tasks.
    Clear,
    /// The queue is deleted (`queue delete --force`).
    Delete,
}

impl Clearing {
    pub fn as_str(self) -> &'static str {
        match self {
            Clearing::Clear => "clear",
            Clearing::Delete => "delete",
        }
    }
}
