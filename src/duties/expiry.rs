//! Lease expiry, on the leader: whenever a lease or a worker is due (by the
//! leader's clock), it proposes `ExpireLeases`, and apply decides, by the
//! command's stamp, which leases expire and which workers are lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::WorkerSettings;
use crate::model::{Op, Reply, Write};
use crate::raft::RaftNode;

/// How often the leader checks for expired leases and silent workers.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);

/// Runs on every node and acts while it leads. A new leader first waits one
/// lease TTL, so that workers renewing through the change keep their leases.
pub(super) async fn run(node: Arc<RaftNode>, settings: WorkerSettings) {
    let grace = Duration::from_millis(settings.lease_ttl_ms);
    let mut leading_since: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep(EXPIRY_CHECK).await;
        let Some(term) = super::leading_term(&node) else {
            leading_since = None;
            continue;
        };
        let since = match leading_since {
            Some((t, at)) if t == term => at,
            _ => {
                leading_since = Some((term, Instant::now()));
                continue;
            }
        };
        if since.elapsed() < grace {
            continue;
        }
        let due = node
            .sm()
            .state()
            .expiry_due(crate::clock::now_ms(), settings.worker_timeout_ms);
        if due {
            expire(&node, &settings).await;
        }
    }
}

async fn expire(node: &RaftNode, settings: &WorkerSettings) {
    let write = Write {
        idempotency_key: crate::wire::new_idempotency_key(),
        actor: "laneq".to_string(),
        op: Op::ExpireLeases {
            worker_timeout_ms: settings.worker_timeout_ms,
        },
    };
    match node.write(write).await {
        Ok((r, _)) => {
            if let Ok(Reply::Expired {
                tasks,
                workers_lost,
            }) = r.result
            {
                tracing::info!(tasks, workers_lost, "expired leases");
            }
        }
        Err(e) => tracing::warn!(error = %e, "expiring leases failed"),
    }
}
