//! Clears and forced deletes in steps. The first command of a clear decides
//! it for every queued task of the queue (see `Queue::clearing`); each
//! command dequeues a bounded number, and the next ones go on until none
//! remain. The API runs a client's clear through [`until_cleared`]; the
//! leader finishes, through the same function, every clear whose client
//! gave up or died, so that what the first step decided always happens.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{ErrorKind, ModelError, Op, Reply, Write};
use crate::raft::{NodeError, RaftNode};

/// How long a clear under way may go without a step before the leader takes
/// it over: its client has given up or died.
const CLEAR_RESUME_AFTER: Duration = Duration::from_secs(2);

/// Why a clear stopped before it finished.
#[derive(Debug, thiserror::Error)]
pub enum ClearError {
    /// The node could not carry a step out (no leader, a timeout...).
    #[error("{0}")]
    Node(NodeError),
    /// Apply refused a step.
    #[error("{0}")]
    Refused(ModelError),
    /// A step's key had been used for another kind of write.
    #[error("the idempotency key was first used for another kind of write ({0:?})")]
    KeyReused(Reply),
}

/// Proposes a clear or forced delete (`op`), then its following steps until
/// no queued task remains. The n-th command's idempotency key is derived
/// from `key` ([`crate::wire::nth_key`]), so a retried request replays the
/// commands that were applied and goes on from there. Returns how many tasks
/// were dequeued in all.
pub async fn until_cleared(
    node: &RaftNode,
    key: &str,
    actor: &str,
    op: impl Fn() -> Op,
) -> Result<u64, ClearError> {
    let mut total = 0;
    for n in 0u64.. {
        let write = Write {
            idempotency_key: crate::wire::nth_key(key, n),
            actor: actor.to_string(),
            op: op(),
        };
        let (response, _) = node.write(write).await.map_err(ClearError::Node)?;
        match response.result {
            Ok(Reply::QueueCleared {
                dequeued,
                remaining,
                ..
            }) => {
                total += dequeued;
                if remaining == 0 {
                    break;
                }
            }
            Ok(other) => return Err(ClearError::KeyReused(other)),
            // The leader finished a forced delete that this request began.
            Err(e) if n > 0 && e.kind == ErrorKind::NotFound => break,
            Err(e) => return Err(ClearError::Refused(e)),
        }
    }
    Ok(total)
}

/// On the leader: finishes every clear or forced delete that its client
/// left unfinished.
pub(super) async fn run(node: Arc<RaftNode>) {
    loop {
        tokio::time::sleep(CLEAR_RESUME_AFTER / 2).await;
        if super::leading_term(&node).is_none() {
            continue;
        }
        let stalled = node.sm().state().stalled_clears(
            crate::clock::now_ms(),
            CLEAR_RESUME_AFTER.as_millis() as u64,
        );
        for name in stalled {
            let key = crate::wire::new_idempotency_key();
            let op = || Op::ClearQueue { name: name.clone() };
            match until_cleared(&node, &key, "laneq", op).await {
                Ok(dequeued) => tracing::info!(queue = %name, dequeued, "finished a stalled clear"),
                Err(e) => {
                    tracing::warn!(queue = %name, error = %e, "finishing a stalled clear failed")
                }
            }
        }
    }
}
