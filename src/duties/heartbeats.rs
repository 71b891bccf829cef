//! Heartbeat batching: a node keeps the latest heartbeat of each worker it
//! heard from, and every `heartbeat_batch_ms` passes them all on as one
//! write (through the leader, like any write), so that ten thousand workers
//! cost the log a few entries a second, not ten thousand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::WorkerHub;
use crate::model::worker::HeartbeatReport;
use crate::model::{Op, Write};
use crate::raft::RaftNode;

/// The heartbeats gathered since the last batch, the latest per worker.
#[derive(Default)]
pub struct HeartbeatBatch {
    pending: Mutex<BTreeMap<String, HeartbeatReport>>,
}

impl HeartbeatBatch {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, HeartbeatReport>> {
        self.pending.lock().expect("heartbeat batch poisoned")
    }

    /// Keeps `report` for the next batch, in place of the worker's last.
    pub fn gather(&self, report: HeartbeatReport) {
        self.lock().insert(report.worker.clone(), report);
    }
}

/// Passes the gathered heartbeats on every period. A batch that fails is
/// merged back under newer reports and tried again next time.
pub(super) async fn run(node: Arc<RaftNode>, hub: Arc<WorkerHub>) {
    let period = Duration::from_millis(hub.settings.heartbeat_batch_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let batch = std::mem::take(&mut *hub.heartbeats.lock());
        if batch.is_empty() {
            continue;
        }
        let reports: Vec<HeartbeatReport> = batch.values().cloned().collect();
        let write = Write {
            idempotency_key: crate::wire::new_idempotency_key(),
            actor: "laneq".to_string(),
            op: Op::WorkerHeartbeats {
                reports,
                ttl_ms: hub.settings.lease_ttl_ms,
            },
        };
        if let Err(e) = node.write(write).await {
            tracing::warn!(error = %e, workers = batch.len(), "passing heartbeats on failed; retrying");
            let mut pending = hub.heartbeats.lock();
            for (worker, report) in batch {
                pending.entry(worker).or_insert(report);
            }
        }
    }
}
