//! Model types to protobuf messages and back.

use crate::model::spec::{ClusterSelector, Fairness, QueueSpec, DEPTH_DEFAULT, PRIORITY_DEFAULT};
use crate::model::worker::{AssignedGpu, GpuUsage, Usage, Worker};
use crate::model::{
    ModelError, NewTask, Project, ProjectSettings, Queue, State, Task, TaskBody, Transition,
};
use crate::proto::v1 as pb;

/// A spec from the wire, with defaults for what is unset.
pub fn spec_from_proto(s: Option<pb::QueueSpec>) -> Result<QueueSpec, ModelError> {
    let s = s.unwrap_or_default();
    let clusters = if s.clusters.is_empty() || s.clusters == ["*"] {
        ClusterSelector::All
    } else {
        ClusterSelector::Only(s.clusters.into_iter().collect())
    };
    let priority = match s.priority {
        0 => PRIORITY_DEFAULT,
        p => u8::try_from(p).map_err(|_| {
            ModelError::invalid("priority", format!("{p} is out of range; use 1 to 100"))
        })?,
    };
    Ok(QueueSpec {
        clusters,
        run_concurrency: s.run_concurrency,
        action_concurrency: s.action_concurrency,
        depth: s.depth.unwrap_or(DEPTH_DEFAULT),
        priority,
        fairness: Fairness::parse("fairness", &s.fairness)?,
        quota: s.quota.into_iter().collect(),
        description: s.description,
    })
}

pub fn spec_to_proto(s: &QueueSpec) -> pb::QueueSpec {
    pb::QueueSpec {
        clusters: match &s.clusters {
            ClusterSelector::All => vec!["*".to_string()],
            ClusterSelector::Only(c) => c.iter().cloned().collect(),
        },
        run_concurrency: s.run_concurrency,
        action_concurrency: s.action_concurrency,
        depth: Some(s.depth),
        priority: u32::from(s.priority),
        fairness: s.fairness.as_str().to_string(),
        quota: s.quota.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        description: s.description.clone(),
    }
}

pub fn queue(state: &State, q: &Queue) -> pb::Queue {
    pb::Queue {
        id: q.id,
        name: q.name.clone(),
        pool: q.pool.clone(),
        queued: state.queued(q.id) as u64,
        next_task_id: state.next_task(q.id),
        created_ms: q.created_ms,
        updated_ms: q.updated_ms,
        activity_ms: q.activity_ms,
        version: q.version,
        spec: Some(spec_to_proto(&q.spec)),
        state: q.state.as_str().to_string(),
        running: state.running(q.id),
        runs_active: state.runs_active(q.id),
        avg_wait_ms: q.avg_wait_ms(),
        workers: state
            .workers()
            .filter(|w| w.queues.contains(&q.id))
            .map(|w| w.name.clone())
            .collect(),
        clearing: q.clearing.map_or("", |c| c.as_str()).to_string(),
        retention: Some(queue_retention(state, q.id)),
    }
}

/// A queue's retention: its own rules, those in force, what it keeps.
pub fn queue_retention(state: &State, queue: u64) -> pb::QueueRetention {
    let own = state.queue_retention(queue);
    let rules = state.retention_of(queue);
    pb::QueueRetention {
        own_age_ms: own.and_then(|o| o.age_ms),
        own_count: own.and_then(|o| o.count),
        age_ms: rules.age_ms,
        count: rules.count,
        finished_kept: state.finished_kept(queue),
    }
}

/// The organisation's retention.
pub fn retention(state: &State) -> pb::Retention {
    let r = state.retention();
    pb::Retention {
        age_ms: r.tasks.age_ms,
        count: r.tasks.count,
        lost_worker_ttl_ms: r.lost_worker_ttl_ms,
    }
}

/// The name of a task's queue; a deleted queue shows as `#<id>`.
pub fn queue_name(state: &State, id: u64) -> String {
    state
        .queue_by_id(id)
        .map_or_else(|| format!("#{id}"), |q| q.name.clone())
}

/// A task; with its body for a single read, without it in lists.
pub fn task(state: &State, t: &Task, body: Option<TaskBody>) -> pb::Task {
    let body = body.unwrap_or(TaskBody {
        command: vec![],
        payload: vec![],
    });
    let exec = t.execution.as_deref();
    pb::Task {
        id: t.id,
        queue: queue_name(state, t.queue),
        state: t.state.as_str().to_string(),
        command: body.command,
        payload: body.payload,
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
        idempotency_key: t.idempotency_key.to_string(),
        position: state.position(t).map(|p| p as u64 + 1),
        project: t.project.to_string(),
        run: t.run.to_string(),
        name: t.name.to_string(),
        resources: t.resources.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        max_attempts: t.max_attempts,
        attempt: t.attempt,
        labels: t
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        timeline: t.timeline.iter().map(transition).collect(),
        condition: t.condition.clone().unwrap_or_default(),
        payload_bytes: t.payload_bytes,
        worker: t.worker().unwrap_or_default().to_string(),
        fencing_token: t.fencing_token(),
        lease_expires_ms: exec.and_then(|e| e.lease_expires_ms),
        started_ms: exec.and_then(|e| e.started_ms),
        finished_ms: exec.and_then(|e| e.finished_ms),
        iteration: exec.and_then(|e| e.iteration),
        exit_code: exec.and_then(|e| e.exit_code),
        gpus: exec.map_or(Vec::new(), |e| e.gpus.iter().map(gpu_to_proto).collect()),
    }
}

pub fn gpu_from_proto(g: pb::AssignedGpu) -> AssignedGpu {
    AssignedGpu {
        index: g.index,
        uuid: g.uuid,
    }
}

fn gpu_to_proto(g: &AssignedGpu) -> pb::AssignedGpu {
    pb::AssignedGpu {
        index: g.index,
        uuid: g.uuid.clone(),
    }
}

/// One entry of a task's timeline.
pub fn transition(e: &Transition) -> pb::Transition {
    pb::Transition {
        at_ms: e.at_ms,
        state: e.state.as_str().to_string(),
        actor: e.actor.to_string(),
        reason: e.reason.to_string(),
        index: e.index,
    }
}

pub fn new_task(s: pb::TaskSpec) -> NewTask {
    NewTask {
        queue: s.queue,
        project: s.project,
        run: s.run,
        name: s.name,
        command: s.command,
        payload: s.payload,
        resources: s.resources.into_iter().collect(),
        max_attempts: s.max_attempts,
        labels: s.labels.into_iter().collect(),
    }
}

pub fn project_settings(s: Option<pb::ProjectSettings>) -> ProjectSettings {
    let s = s.unwrap_or_default();
    ProjectSettings {
        default_queue: s.default_queue,
        allowed_queues: s.allowed_queues.into_iter().collect(),
        max_queued_per_run: s.max_queued_per_run,
        description: s.description,
    }
}

pub fn project(state: &State, p: &Project) -> pb::Project {
    let effective = p.default_queue.unwrap_or(state.default_queue().id);
    pb::Project {
        name: p.name.clone(),
        settings: Some(pb::ProjectSettings {
            default_queue: p
                .default_queue
                .map(|q| queue_name(state, q))
                .unwrap_or_default(),
            allowed_queues: p
                .allowed_queues
                .iter()
                .map(|q| queue_name(state, *q))
                .collect(),
            max_queued_per_run: p.max_queued_per_run,
            description: p.description.clone(),
        }),
        created_ms: p.created_ms,
        updated_ms: p.updated_ms,
        version: p.version,
        effective_default_queue: queue_name(state, effective),
    }
}

pub fn usage_to_proto(u: &Usage) -> pb::Usage {
    pb::Usage {
        cpu_pct: u.cpu_permille.map(|p| f64::from(p) / 10.0),
        memory_used_bytes: u.memory_used_bytes,
        memory_total_bytes: u.memory_total_bytes,
        gpus: u
            .gpus
            .iter()
            .map(|g| pb::GpuUsage {
                index: g.index,
                name: g.name.clone(),
                util_pct: f64::from(g.util_permille) / 10.0,
                memory_used_bytes: g.memory_used_bytes,
                memory_total_bytes: g.memory_total_bytes,
            })
            .collect(),
        net_rx_bytes_per_s: u.net_rx_bytes_per_s,
        net_tx_bytes_per_s: u.net_tx_bytes_per_s,
        at_ms: u.at_ms,
    }
}

/// A reported usage, percentages rounded to per mille (the state holds no
/// floating point). Out-of-range or non-finite percentages are dropped.
pub fn usage_from_proto(u: pb::Usage) -> Usage {
    let permille = |pct: f64| {
        (pct.is_finite() && (0.0..=100_000.0).contains(&pct)).then(|| (pct * 10.0).round() as u32)
    };
    Usage {
        cpu_permille: u.cpu_pct.and_then(permille),
        memory_used_bytes: u.memory_used_bytes,
        memory_total_bytes: u.memory_total_bytes,
        gpus: u
            .gpus
            .into_iter()
            .take(64)
            .map(|g| GpuUsage {
                index: g.index,
                name: g.name.chars().take(128).collect(),
                util_permille: permille(g.util_pct).unwrap_or(0),
                memory_used_bytes: g.memory_used_bytes,
                memory_total_bytes: g.memory_total_bytes,
            })
            .collect(),
        net_rx_bytes_per_s: u.net_rx_bytes_per_s,
        net_tx_bytes_per_s: u.net_tx_bytes_per_s,
        at_ms: u.at_ms,
    }
}

pub fn worker(state: &State, w: &Worker) -> pb::Worker {
    pb::Worker {
        name: w.name.clone(),
        ip: w.ip.clone(),
        pool: w.pool.clone(),
        cluster: w.cluster.clone(),
        queues: w.queues.iter().map(|q| queue_name(state, *q)).collect(),
        capacity: w.capacity.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        slots: w.slots,
        state: w.state.as_str().to_string(),
        tasks: w.tasks.iter().copied().collect(),
        registered_ms: w.registered_ms,
        last_seen_ms: w.last_seen_ms,
        usage: w.usage.as_ref().map(usage_to_proto),
    }
}
