//! `laneq.v1.Metrics`: the replicated metrics history, read on any node.
//! Each call plans its window (`model::history::query::plan`), reads the
//! rows and tracks from one RocksDB view (`Store::history_read`), and
//! assembles each entity's buckets with the model's pure `series`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::read_barrier;
use crate::model::history::query::{self, Bucket, Window};
use crate::model::history::{self as h, Entity, Point};
use crate::proto::v1 as pb;
use crate::proto::v1::metrics_server::Metrics;
use crate::raft::RaftNode;

/// The range when a request names no start: the hour before its end.
const DEFAULT_SPAN_MS: u64 = 60 * 60 * 1000;
/// Most queues in one answer.
const QUEUES_PER_ANSWER_MAX: usize = 1_000;
/// Most points in one answer, all series together, so that it fits in a
/// message (a queue's point is about 80 bytes): more series, coarser
/// intervals.
const POINTS_PER_ANSWER_MAX: u64 = 40_000;

pub struct MetricsApi {
    pub(super) node: Arc<RaftNode>,
}

/// A request's range and interval, planned against this node's state.
struct Asked {
    window: Window,
    /// Up to when gauges are known: the read's time (a linearizable read
    /// has applied everything before it), at most the range's end.
    until_ms: u64,
}

impl MetricsApi {
    /// Plans the window of `series` series (after the read barrier).
    fn plan(
        &self,
        from_ms: u64,
        to_ms: u64,
        interval_ms: u64,
        series: usize,
    ) -> Result<Asked, Status> {
        let now = crate::clock::now_ms();
        let to_ms = if to_ms == 0 { now } else { to_ms };
        let from_ms = if from_ms == 0 {
            to_ms.saturating_sub(DEFAULT_SPAN_MS)
        } else {
            from_ms
        };
        let state = self.node.sm().state();
        let settings = state.history().settings();
        if !settings.enabled {
            return Err(Status::failed_precondition(
                "this node keeps no metrics history ([history] enabled = false in its config)",
            ));
        }
        let points_max =
            (POINTS_PER_ANSWER_MAX / series.max(1) as u64).clamp(10, query::POINTS_MAX);
        let window = query::plan(
            settings,
            state.clock_ms(),
            from_ms,
            to_ms,
            interval_ms,
            points_max,
        )
        .map_err(Status::invalid_argument)?;
        Ok(Asked {
            window,
            until_ms: to_ms.min(now),
        })
    }

    /// The buckets of each entity, and the span they cover.
    fn read(
        &self,
        asked: &Asked,
        entities: &[Entity],
    ) -> Result<(pb::Span, Vec<Vec<Bucket>>), Status> {
        let w = &asked.window;
        let (clock_ms, reads) = self
            .node
            .sm()
            .history_read(entities, w.step_ms, w.from_ms, w.to_ms)
            .map_err(|e| Status::internal(format!("reading the history: {e}")))?;
        let until = asked.until_ms.max(clock_ms);
        let series = reads
            .iter()
            .map(|r| {
                let open = r
                    .track
                    .as_ref()
                    .and_then(|t| t.lane(w.step_ms)?.open.as_ref());
                let data = !r.rows.is_empty() || open.is_some_and(|o| o.bucket_ms >= w.from_ms);
                let carry = query::carry_in(r.track.as_ref(), r.before.as_ref(), data);
                query::series(w, until, carry, &r.rows, open)
            })
            .collect();
        let span = pb::Span {
            from_ms: w.from_ms,
            to_ms: w.to_ms,
            interval_ms: w.interval_ms,
            resolution_ms: w.step_ms,
            retained_from_ms: w.retained_from_ms,
            partial: w.partial,
            applied_ms: clock_ms,
        };
        Ok((span, series))
    }
}

/// Gauge `i` of a bucket: its time-weighted average over the covered time;
/// every value divided by `per`.
fn gauge(b: &Bucket, i: usize, per: f64) -> Option<pb::Stat> {
    let g = b.point.gauges.get(i)?;
    let covered = b.covered_ms.max(1) as f64;
    Some(pb::Stat {
        min: g.min as f64 / per,
        avg: g.area as f64 / covered / per,
        max: g.max as f64 / per,
        count: 0,
    })
}

/// Samples at `i` of a bucket, divided by `per`; none when none arrived.
fn samples(p: &Point, i: usize, per: f64) -> Option<pb::Stat> {
    let s = p.samples.get(i).filter(|s| s.count > 0)?;
    Some(pb::Stat {
        min: s.min as f64 / per,
        avg: s.sum as f64 / s.count as f64 / per,
        max: s.max as f64 / per,
        count: s.count,
    })
}

fn queue_points(buckets: &[Bucket]) -> Vec<pb::QueuePoint> {
    buckets
        .iter()
        .map(|b| pb::QueuePoint {
            time_ms: b.start_ms,
            queued: gauge(b, h::QUEUED, 1.0),
            wait_ms: samples(&b.point, h::WAIT_MS, 1.0),
        })
        .filter(|p| p.queued.is_some() || p.wait_ms.is_some())
        .collect()
}

/// A worker metric: its name, and where and how it is kept.
struct WorkerMetric {
    name: &'static str,
    gauge: bool,
    /// Its position, or the position of GPU `g`'s.
    at: fn(u32) -> usize,
    per_gpu: bool,
    /// What the stored value is divided by (per mille to per cent: 10).
    per: f64,
}

const WORKER_METRICS: &[WorkerMetric] = &[
    WorkerMetric {
        name: "cpu",
        gauge: false,
        at: |_| h::CPU_PERMILLE,
        per_gpu: false,
        per: 10.0,
    },
    WorkerMetric {
        name: "memory",
        gauge: false,
        at: |_| h::MEMORY_BYTES,
        per_gpu: false,
        per: 1.0,
    },
    WorkerMetric {
        name: "gpu",
        gauge: false,
        at: h::gpu_util,
        per_gpu: true,
        per: 10.0,
    },
    WorkerMetric {
        name: "gpu_memory",
        gauge: false,
        at: h::gpu_memory,
        per_gpu: true,
        per: 1.0,
    },
    WorkerMetric {
        name: "net_rx",
        gauge: false,
        at: |_| h::NET_RX,
        per_gpu: false,
        per: 1.0,
    },
    WorkerMetric {
        name: "net_tx",
        gauge: false,
        at: |_| h::NET_TX,
        per_gpu: false,
        per: 1.0,
    },
    WorkerMetric {
        name: "busy",
        gauge: true,
        at: |_| h::BUSY,
        per_gpu: false,
        per: 1.0,
    },
    WorkerMetric {
        name: "alive",
        gauge: true,
        at: |_| h::ALIVE,
        per_gpu: false,
        per: 1.0,
    },
];

/// The metrics a request names (all for none), or the refusal.
fn worker_metrics(names: &[String]) -> Result<Vec<&'static WorkerMetric>, Status> {
    if names.is_empty() {
        return Ok(WORKER_METRICS.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            WORKER_METRICS.iter().find(|m| m.name == n).ok_or_else(|| {
                let all: Vec<&str> = WORKER_METRICS.iter().map(|m| m.name).collect();
                Status::invalid_argument(format!(
                    "metrics: {n:?} is not a worker metric; use one of {}",
                    all.join(", ")
                ))
            })
        })
        .collect()
}

/// The series of one metric of a worker: one per GPU seen for a per-GPU
/// metric.
fn worker_series(m: &WorkerMetric, buckets: &[Bucket]) -> Vec<pb::WorkerMetric> {
    let gpus: Vec<Option<u32>> = if m.per_gpu {
        let mut seen = std::collections::BTreeSet::new();
        for b in buckets {
            for (i, s) in b.point.samples.iter().enumerate() {
                if i >= h::gpu_util(0) && s.count > 0 {
                    seen.insert(((i - h::gpu_util(0)) / 2) as u32);
                }
            }
        }
        seen.into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    gpus.into_iter()
        .map(|gpu| {
            let at = (m.at)(gpu.unwrap_or(0));
            let points = buckets
                .iter()
                .filter_map(|b| {
                    let stat = if m.gauge {
                        gauge(b, at, m.per)
                    } else {
                        samples(&b.point, at, m.per)
                    };
                    stat.map(|s| pb::StatPoint {
                        time_ms: b.start_ms,
                        stat: Some(s),
                    })
                })
                .collect();
            pb::WorkerMetric {
                metric: m.name.to_string(),
                variant: gpu.map(|g| format!("gpu{g}")).unwrap_or_default(),
                points,
            }
        })
        .collect()
}

#[tonic::async_trait]
impl Metrics for MetricsApi {
    async fn get_queue_metrics(
        &self,
        req: Request<pb::GetQueueMetricsRequest>,
    ) -> Result<Response<pb::GetQueueMetricsResponse>, Status> {
        let req = req.into_inner();
        read_barrier(&self.node, req.consistency).await?;
        let named: Vec<(String, u64)> = {
            let state = self.node.sm().state();
            if req.queues.is_empty() {
                state.queues().map(|q| (q.name.clone(), q.id)).collect()
            } else {
                let mut named = Vec::with_capacity(req.queues.len());
                for (i, name) in req.queues.iter().enumerate() {
                    let q = state.queue(name).ok_or_else(|| {
                        Status::not_found(format!("queues[{i}]: no queue named {name:?}"))
                    })?;
                    named.push((q.name.clone(), q.id));
                }
                named
            }
        };
        if named.len() > QUEUES_PER_ANSWER_MAX {
            return Err(Status::invalid_argument(format!(
                "queues: {} queues in one answer; name at most {QUEUES_PER_ANSWER_MAX}",
                named.len()
            )));
        }
        let asked = self.plan(req.from_ms, req.to_ms, req.interval_ms, named.len() + 1)?;
        let mut entities = vec![Entity::AllQueues];
        entities.extend(named.iter().map(|(_, id)| Entity::Queue(*id)));
        let (span, series) = self.read(&asked, &entities)?;
        let names = std::iter::once(String::new()).chain(named.into_iter().map(|(n, _)| n));
        let queues = names
            .zip(series)
            .map(|(queue, buckets)| pb::QueueMetrics {
                queue,
                points: queue_points(&buckets),
            })
            .collect();
        Ok(Response::new(pb::GetQueueMetricsResponse {
            span: Some(span),
            queues,
        }))
    }

    async fn get_worker_stats(
        &self,
        req: Request<pb::GetWorkerStatsRequest>,
    ) -> Result<Response<pb::GetWorkerStatsResponse>, Status> {
        let req = req.into_inner();
        let wanted = worker_metrics(&req.metrics)?;
        read_barrier(&self.node, req.consistency).await?;
        let asked = self.plan(req.from_ms, req.to_ms, req.interval_ms, wanted.len())?;
        if self.node.sm().state().worker(&req.worker).is_none() {
            return Err(Status::not_found(format!(
                "worker: no worker named {:?}",
                req.worker
            )));
        }
        let (span, mut series) = self.read(&asked, &[Entity::Worker(req.worker.clone())])?;
        let buckets = series.pop().unwrap_or_default();
        let metrics = wanted
            .into_iter()
            .flat_map(|m| worker_series(m, &buckets))
            .collect();
        Ok(Response::new(pb::GetWorkerStatsResponse {
            span: Some(span),
            worker: req.worker,
            metrics,
        }))
    }

    async fn get_worker_activity(
        &self,
        req: Request<pb::GetWorkerActivityRequest>,
    ) -> Result<Response<pb::GetWorkerActivityResponse>, Status> {
        let req = req.into_inner();
        read_barrier(&self.node, req.consistency).await?;
        let asked = self.plan(req.from_ms, req.to_ms, req.interval_ms, 2)?;
        let (span, mut series) = self.read(&asked, &[Entity::Workers])?;
        let points = series
            .pop()
            .unwrap_or_default()
            .iter()
            .map(|b| pb::ActivityPoint {
                time_ms: b.start_ms,
                active: gauge(b, h::ACTIVE, 1.0),
                total: gauge(b, h::TOTAL, 1.0),
            })
            .collect();
        Ok(Response::new(pb::GetWorkerActivityResponse {
            span: Some(span),
            points,
        }))
    }
}
