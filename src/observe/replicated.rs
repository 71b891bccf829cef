//! The figures of the replicated state: queues and workers, read from the
//! in-memory `State` at each scrape. Every node applies the same log, so
//! every node exports the same figures at the same applied index, and any
//! node can be scraped (`laneq_raft_applied_index` says which index).
//!
//! The state's lock is held only to copy the figures out ([`Figures::of`]);
//! they are written after it is released.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::model::history::{QueueCounters, WAIT_BOUNDS_MS};
use crate::model::spec::QueueState;
use crate::model::worker::{GpuUsage, Usage, WorkerState};
use crate::model::State;
use crate::raft::RaftNode;

/// One queue's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueFigures {
    pub name: String,
    pub pool: String,
    pub state: QueueState,
    pub queued: u64,
    /// Leased or running, as `queue get` counts them.
    pub running: u64,
    pub runs_active: u64,
    /// The limits that are set (0 is no limit, and is left out).
    pub run_concurrency: u32,
    pub action_concurrency: u32,
    pub depth: u64,
    /// Each resource with a quota: (name, quota, held by in-flight tasks).
    pub quota: Vec<(String, u64, u64)>,
    /// The average wait of the last tasks started, in ms (the queue's
    /// `avg_wait_ms`).
    pub recent_wait_ms: Option<u64>,
    /// The cumulative counters that apply keeps (none before the queue's
    /// first counted event).
    pub counters: Option<QueueCounters>,
}

/// One active worker's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerFigures {
    pub name: String,
    pub pool: String,
    pub tasks: u64,
    pub usage: Option<Usage>,
}

/// What is exported of the replicated state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures {
    pub queues: Vec<QueueFigures>,
    /// Workers by (pool, state).
    pub workers_by: BTreeMap<(String, &'static str), u64>,
    /// Active workers only: a lost worker's last usage is not current.
    pub workers: Vec<WorkerFigures>,
}

impl Figures {
    pub fn of(state: &State) -> Self {
        let queues = state
            .queues()
            .map(|q| {
                let in_flight = state.in_flight(q.id);
                let held = |r: &str| in_flight.and_then(|f| f.resources.get(r).copied());
                QueueFigures {
                    name: q.name.clone(),
                    pool: q.pool.clone(),
                    state: q.state,
                    queued: state.queued(q.id) as u64,
                    running: state.running(q.id),
                    runs_active: state.runs_active(q.id),
                    run_concurrency: q.spec.run_concurrency,
                    action_concurrency: q.spec.action_concurrency,
                    depth: q.spec.depth,
                    quota: (q.spec.quota.iter())
                        .map(|(r, limit)| (r.clone(), *limit, held(r).unwrap_or(0)))
                        .collect(),
                    recent_wait_ms: q.avg_wait_ms(),
                    counters: state.queue_counters(q.id).cloned(),
                }
            })
            .collect();
        let mut figures = Figures {
            queues,
            ..Default::default()
        };
        for w in state.workers() {
            *figures
                .workers_by
                .entry((w.pool.clone(), w.state.as_str()))
                .or_default() += 1;
            if w.state == WorkerState::Active {
                figures.workers.push(WorkerFigures {
                    name: w.name.clone(),
                    pool: w.pool.clone(),
                    tasks: w.tasks.len() as u64,
                    usage: w.usage.clone(),
                });
            }
        }
        figures
    }
}

/// A resource amount in base units: `cpu` is held in millicores and
/// exported in cores; the rest (`memory` in bytes, `gpu` and custom
/// resources in units) as they are.
pub fn base_units(resource: &str, amount: u64) -> f64 {
    match resource {
        "cpu" => amount as f64 / 1000.0,
        _ => amount as f64,
    }
}

/// A metric read from a `T`: its name, its help, and how to read it.
type Field<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Label pairs of one sample.
pub type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes one gauge family and its samples.
pub fn gauges<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one gauge without labels.
pub fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A sample for each item that `value` has a value for, labelled by `labels`.
fn each<'a, T>(
    items: &'a [T],
    labels: impl Fn(&'a T) -> Labels<'a>,
    value: impl Fn(&T) -> Option<f64>,
) -> Vec<(Labels<'a>, f64)> {
    items
        .iter()
        .filter_map(|t| Some((labels(t), value(t)?)))
        .collect()
}

fn by_queue(q: &QueueFigures) -> Labels<'_> {
    vec![("queue", q.name.as_str())]
}

fn with_pool(q: &QueueFigures) -> Labels<'_> {
    vec![("queue", q.name.as_str()), ("pool", q.pool.as_str())]
}

fn by_worker(w: &WorkerFigures) -> Labels<'_> {
    vec![("worker", w.name.as_str()), ("pool", w.pool.as_str())]
}

/// A limit that is set (0 is none).
fn set(limit: u64) -> Option<f64> {
    (limit > 0).then_some(limit as f64)
}

/// Exports [`Figures`] of the node's state at each scrape.
pub struct ReplicatedCollector {
    pub node: Arc<RaftNode>,
}

impl fmt::Debug for ReplicatedCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplicatedCollector")
    }
}

impl Collector for ReplicatedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let figures = Figures::of(&self.node.sm().state());
        encode_queues(&mut encoder, &figures.queues)?;
        encode_limits(&mut encoder, &figures.queues)?;
        encode_queue_counters(&mut encoder, &figures.queues)?;
        encode_workers(&mut encoder, &figures)?;
        encode_usage(&mut encoder, &figures.workers)
    }
}

/// The queues' cumulative counters: tasks submitted, finished by outcome,
/// leases expired, dispatch attempts, and the histogram of the wait from
/// submit to lease. Apply counts them in the replicated state, so every
/// node exports the same values, and they survive failover and restarts.
fn encode_queue_counters(
    encoder: &mut DescriptorEncoder<'_>,
    queues: &[QueueFigures],
) -> fmt::Result {
    let counted: Vec<(&str, &QueueCounters)> = (queues.iter())
        .filter_map(|q| Some((q.name.as_str(), q.counters.as_ref()?)))
        .collect();
    let simple: [Field<QueueCounters, u64>; 3] = [
        ("queue_tasks_submitted", "Tasks submitted to a queue", |c| {
            c.submitted
        }),
        (
            "queue_leases_expired",
            "Leases of a queue's tasks that expired",
            |c| c.leases_expired,
        ),
        (
            "queue_dispatch_attempts",
            "Leases granted from a queue (attempts)",
            |c| c.dispatch_attempts,
        ),
    ];
    for (name, help, value) in simple {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (queue, c) in &counted {
            let labels = [("queue", *queue)];
            ConstCounter::new(value(c)).encode(family.encode_family(&labels)?)?;
        }
    }
    let help = "Tasks of a queue that reached a terminal state, by outcome";
    let mut family =
        encoder.encode_descriptor("queue_tasks_finished", help, None, MetricType::Counter)?;
    for (queue, c) in &counted {
        for (outcome, n) in [
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("canceled", c.canceled),
            ("dequeued", c.dequeued),
        ] {
            let labels = [("queue", *queue), ("outcome", outcome)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
    }
    let help = "Wait of a queue's tasks from submit to lease, in seconds";
    let mut family =
        encoder.encode_descriptor("queue_wait_seconds", help, None, MetricType::Histogram)?;
    for (queue, c) in &counted {
        // Per-bucket counts (the encoder makes them cumulative); the last
        // bound, infinite, is written as +Inf.
        let buckets: Vec<(f64, u64)> = (0..=WAIT_BOUNDS_MS.len())
            .map(|i| {
                let bound = WAIT_BOUNDS_MS
                    .get(i)
                    .map_or(f64::INFINITY, |&ms| ms as f64 / 1000.0);
                (bound, c.wait_buckets.get(i).copied().unwrap_or(0))
            })
            .collect();
        let labels = [("queue", *queue)];
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                c.wait_sum_ms as f64 / 1000.0,
                c.wait_count(),
                &buckets,
                None,
            )?;
    }
    Ok(())
}

fn encode_queues(encoder: &mut DescriptorEncoder<'_>, queues: &[QueueFigures]) -> fmt::Result {
    let info = each(queues, with_pool, |_| Some(1.0));
    gauges(encoder, "queue_info", "Each queue, with its pool", info)?;
    let tasks = queues.iter().flat_map(|q| {
        [("queued", q.queued), ("running", q.running)]
            .map(|(state, n)| (vec![("queue", q.name.as_str()), ("state", state)], n as f64))
    });
    let help = "Tasks of a queue: queued, or running (leased or started)";
    gauges(encoder, "queue_tasks", help, tasks)?;
    let states = [
        QueueState::Active,
        QueueState::Draining,
        QueueState::Drained,
    ];
    let state = queues.iter().flat_map(|q| {
        states.map(|s| {
            let labels = vec![("queue", q.name.as_str()), ("state", s.as_str())];
            (labels, if q.state == s { 1.0 } else { 0.0 })
        })
    });
    gauges(
        encoder,
        "queue_state",
        "1 for a queue's current state, else 0",
        state,
    )?;
    let help = "Average wait from submit to lease of the last tasks started, in seconds";
    let wait = each(queues, by_queue, |q| {
        Some(q.recent_wait_ms? as f64 / 1000.0)
    });
    gauges(encoder, "queue_recent_wait_seconds", help, wait)
}

/// Each set limit and quota of the queues, with its usage.
fn encode_limits(encoder: &mut DescriptorEncoder<'_>, queues: &[QueueFigures]) -> fmt::Result {
    let help = "Runs with tasks in flight on a queue (usage of its run concurrency)";
    let runs = each(queues, by_queue, |q| Some(q.runs_active as f64));
    gauges(encoder, "queue_runs_active", help, runs)?;
    let help = "A queue's run concurrency, where one is set";
    let limit = each(queues, by_queue, |q| set(u64::from(q.run_concurrency)));
    gauges(encoder, "queue_run_concurrency_limit", help, limit)?;
    let help = "A queue's action concurrency (tasks running at once), where one is set";
    let limit = each(queues, by_queue, |q| set(u64::from(q.action_concurrency)));
    gauges(encoder, "queue_action_concurrency_limit", help, limit)?;
    let help = "A queue's depth (tasks queued and running at once), where one is set";
    gauges(
        encoder,
        "queue_depth_limit",
        help,
        each(queues, by_queue, |q| set(q.depth)),
    )?;
    let quota = |used: bool| {
        queues.iter().flat_map(move |q| {
            q.quota.iter().map(move |(r, limit, held)| {
                let labels = vec![("queue", q.name.as_str()), ("resource", r.as_str())];
                (labels, base_units(r, if used { *held } else { *limit }))
            })
        })
    };
    let help = "A queue's quota of a resource (cpu in cores, memory in bytes, others in units)";
    gauges(encoder, "queue_quota", help, quota(false))?;
    let help = "What a queue's tasks in flight hold of a resource it has a quota of";
    gauges(encoder, "queue_quota_used", help, quota(true))
}

fn encode_workers(encoder: &mut DescriptorEncoder<'_>, figures: &Figures) -> fmt::Result {
    let by = figures
        .workers_by
        .iter()
        .map(|((pool, state), n)| (vec![("pool", pool.as_str()), ("state", *state)], *n as f64));
    gauges(
        encoder,
        "workers",
        "Registered workers by pool and state",
        by,
    )?;
    let held = each(&figures.workers, by_worker, |w| Some(w.tasks as f64));
    gauges(
        encoder,
        "worker_tasks",
        "Tasks an active worker holds leases on",
        held,
    )
}

/// What each active worker last reported of its machine.
fn encode_usage(encoder: &mut DescriptorEncoder<'_>, workers: &[WorkerFigures]) -> fmt::Result {
    let reported: [Field<Usage, Option<f64>>; 5] = [
        (
            "worker_cpu_ratio",
            "CPU in use as last reported, 0 to 1 of the machine",
            |u| Some(f64::from(u.cpu_permille?) / 1000.0),
        ),
        (
            "worker_memory_used_bytes",
            "Memory in use as last reported, in bytes",
            |u| Some(u.memory_used_bytes? as f64),
        ),
        (
            "worker_memory_total_bytes",
            "The machine's memory, in bytes",
            |u| Some(u.memory_total_bytes? as f64),
        ),
        (
            "worker_network_receive_bytes_per_second",
            "Network receive rate as last reported, in bytes per second",
            |u| Some(u.net_rx_bytes_per_s? as f64),
        ),
        (
            "worker_network_transmit_bytes_per_second",
            "Network send rate as last reported, in bytes per second",
            |u| Some(u.net_tx_bytes_per_s? as f64),
        ),
    ];
    for (name, help, value) in reported {
        let samples = each(workers, by_worker, |w| value(w.usage.as_ref()?));
        gauges(encoder, name, help, samples)?;
    }
    encode_gpus(encoder, workers)
}

/// One GPU of one worker.
struct Gpu<'a> {
    worker: &'a str,
    index: String,
    usage: &'a GpuUsage,
}

fn encode_gpus(encoder: &mut DescriptorEncoder<'_>, workers: &[WorkerFigures]) -> fmt::Result {
    let gpus: Vec<Gpu<'_>> = workers
        .iter()
        .flat_map(|w| {
            let gpus = w.usage.as_ref().map_or(&[][..], |u| &u.gpus[..]);
            gpus.iter().map(move |g| Gpu {
                worker: w.name.as_str(),
                index: g.index.to_string(),
                usage: g,
            })
        })
        .collect();
    let reported: [Field<GpuUsage, f64>; 3] = [
        (
            "worker_gpu_utilization_ratio",
            "A GPU's utilisation as its worker last reported it, 0 to 1",
            |g| f64::from(g.util_permille) / 1000.0,
        ),
        (
            "worker_gpu_memory_used_bytes",
            "A GPU's memory in use as its worker last reported it, in bytes",
            |g| g.memory_used_bytes as f64,
        ),
        (
            "worker_gpu_memory_total_bytes",
            "A GPU's memory, in bytes",
            |g| g.memory_total_bytes as f64,
        ),
    ];
    for (name, help, value) in reported {
        gauges(
            encoder,
            name,
            help,
            each(&gpus, by_gpu, |g| Some(value(g.usage))),
        )?;
    }
    Ok(())
}

fn by_gpu<'a>(g: &'a Gpu<'_>) -> Labels<'a> {
    vec![("worker", g.worker), ("gpu", g.index.as_str())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_state_has_the_default_queue_empty() {
        let f = Figures::of(&State::new());
        assert_eq!(f.queues.len(), 1);
        let q = &f.queues[0];
        assert_eq!((q.name.as_str(), q.pool.as_str()), ("default", "default"));
        assert_eq!((q.queued, q.running, q.runs_active), (0, 0, 0));
        assert_eq!(q.state, QueueState::Active);
        assert_eq!(q.recent_wait_ms, None);
        assert!(f.workers.is_empty() && f.workers_by.is_empty());
    }

    #[test]
    fn cpu_is_exported_in_cores_and_the_rest_as_held() {
        assert_eq!(base_units("cpu", 2500), 2.5);
        assert_eq!(base_units("memory", 1 << 30), (1u64 << 30) as f64);
        assert_eq!(base_units("gpu", 2), 2.0);
    }
}
