//! A node's background duties, and the state they share with the API:
//!
//! - `heartbeats`: every node gathers its workers' heartbeats and passes
//!   them on in one write per period;
//! - `expiry`: the leader expires leases and marks silent workers lost;
//! - `clears`: the leader finishes clears and forced deletes that their
//!   client left half done (and the API runs its own through the same code);
//! - `retention`: the leader removes finished tasks and lost workers that
//!   the retention lets go, in bounded steps;
//! - `reservations`: the tasks that this node's lease polls are proposing
//!   leases for, which the other polls look past.
//!
//! **Architecture Invariant:** duties change state only through
//! `RaftNode::write`, like any client, and decide nothing that apply does
//! not decide again: a duty that runs twice, or on a node that just lost
//! its leadership, is refused or does nothing. They know no gRPC.

mod clears;
mod expiry;
mod heartbeats;
mod reservations;
mod retention;

use std::sync::Arc;

pub use clears::{until_cleared, ClearError};
pub use heartbeats::HeartbeatBatch;
pub use reservations::{Reservations, Reserved};

use crate::config::WorkerSettings;
use crate::raft::RaftNode;

/// What the Workers API and the duties of one node share.
pub struct WorkerHub {
    pub settings: WorkerSettings,
    /// Heartbeats waiting for the next batch.
    pub heartbeats: HeartbeatBatch,
    /// Tasks this node's lease polls are proposing leases for.
    pub reservations: Reservations,
}

impl WorkerHub {
    pub fn new(settings: WorkerSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            heartbeats: HeartbeatBatch::default(),
            reservations: Reservations::default(),
        })
    }
}

/// Starts every duty of `node`; they run until the process ends.
pub fn spawn(node: &Arc<RaftNode>, hub: &Arc<WorkerHub>) {
    tokio::spawn(heartbeats::run(node.clone(), hub.clone()));
    tokio::spawn(expiry::run(node.clone(), hub.settings.clone()));
    tokio::spawn(clears::run(node.clone()));
    tokio::spawn(retention::run(node.clone()));
}

/// The term this node leads in, if it leads.
fn leading_term(node: &RaftNode) -> Option<u64> {
    let status = node.status();
    (status.role == crate::wire::Role::Leader).then_some(status.term)
}
