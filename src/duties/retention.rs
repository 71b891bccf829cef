//! Retention, on the leader: every few seconds, when the state says that
//! finished tasks or lost workers can go by the leader's clock (a cheap
//! look at each queue's oldest finished task and at the workers), it
//! proposes `CollectExpired`, and again while the reply says more remains.
//! Apply decides what goes, by the command's stamp and the rules it holds
//! then, so each step is bounded and a change of rules needs no restart.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Op, Reply, Write};
use crate::raft::RaftNode;

/// How often the leader looks for something to collect.
const COLLECT_CHECK: Duration = Duration::from_secs(5);
/// Most collect steps in one round, so that a backlog (a retention just
/// shortened) is worked through in bursts that leave room for clients.
const COLLECT_STEPS_PER_ROUND: usize = 100;

/// Runs on every node and acts while it leads.
pub(super) async fn run(node: Arc<RaftNode>) {
    loop {
        tokio::time::sleep(COLLECT_CHECK).await;
        if super::leading_term(&node).is_none() {
            continue;
        }
        for _ in 0..COLLECT_STEPS_PER_ROUND {
            let due = node.sm().state().collectable(crate::clock::now_ms());
            if !due || !collect(&node).await {
                break;
            }
        }
    }
}

/// One collect step; whether more remains.
async fn collect(node: &RaftNode) -> bool {
    let write = Write {
        idempotency_key: crate::wire::new_idempotency_key(),
        actor: "laneq".to_string(),
        op: Op::CollectExpired,
    };
    match node.write(write).await {
        Ok((r, _)) => match r.result {
            Ok(Reply::Collected {
                tasks,
                workers,
                remaining,
            }) => {
                tracing::info!(
                    tasks,
                    workers,
                    remaining,
                    "collected expired tasks and workers"
                );
                remaining
            }
            other => {
                tracing::warn!(reply = ?other, "a collect answered something else");
                false
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "collecting expired tasks failed");
            false
        }
    }
}
