//! Reads of the metrics history (`laneq.v1.Metrics`): queue metrics, a
//! worker's usage and worker activity over a time range. Any node answers,
//! followers too, and every node answers the same.

use super::{Client, ClientError, ReadConsistency};
use crate::proto::v1::metrics_client::MetricsClient;
use crate::proto::v1::*;

/// A time range and the interval of its points, in ms since the epoch.
/// `to_ms` 0: now; `interval_ms` 0: the node chooses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub from_ms: u64,
    pub to_ms: u64,
    pub interval_ms: u64,
}

impl Client {
    /// Queued counts and waits over `range` for `queues` (empty: every
    /// queue); the aggregate of all queues comes first.
    pub async fn queue_metrics(
        &self,
        queues: &[String],
        range: Range,
        c: ReadConsistency,
    ) -> Result<GetQueueMetricsResponse, ClientError> {
        let req = GetQueueMetricsRequest {
            queues: queues.to_vec(),
            from_ms: range.from_ms,
            to_ms: range.to_ms,
            interval_ms: range.interval_ms,
            consistency: c.proto(),
        };
        self.unary(req, MetricsClient::get_queue_metrics).await
    }

    /// A worker's usage over `range`: `metrics` by name (empty: all).
    pub async fn worker_stats(
        &self,
        worker: &str,
        metrics: &[String],
        range: Range,
        c: ReadConsistency,
    ) -> Result<GetWorkerStatsResponse, ClientError> {
        let req = GetWorkerStatsRequest {
            worker: worker.to_string(),
            metrics: metrics.to_vec(),
            from_ms: range.from_ms,
            to_ms: range.to_ms,
            interval_ms: range.interval_ms,
            consistency: c.proto(),
        };
        self.unary(req, MetricsClient::get_worker_stats).await
    }

    /// Active and total workers over `range`.
    pub async fn worker_activity(
        &self,
        range: Range,
        c: ReadConsistency,
    ) -> Result<GetWorkerActivityResponse, ClientError> {
        let req = GetWorkerActivityRequest {
            from_ms: range.from_ms,
            to_ms: range.to_ms,
            interval_ms: range.interval_ms,
            consistency: c.proto(),
        };
        self.unary(req, MetricsClient::get_worker_activity).await
    }
}
