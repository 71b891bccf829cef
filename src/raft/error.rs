//! [`NodeError`]: why a node could not carry out a request. Domain refusals
//! are not here: they are inside the model's `Response`.

/// Why a node could not carry out a request.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// This node does not lead; the hint says who does, when known.
    #[error("node {node} is not the leader{}", leader_hint(.leader))]
    NotLeader {
        node: u64,
        leader: Option<(u64, String)>,
    },
    /// The request cannot be served now (no leader, leader lost, timeout).
    /// A write in this state may or may not have been applied: retry it with
    /// the same idempotency key.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The node is shutting down or its storage failed.
    #[error("node stopped: {0}")]
    Fatal(String),
}

fn leader_hint(leader: &Option<(u64, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("; the leader is node {id} at {addr}"),
        None => "; no leader is known yet".to_string(),
    }
}
