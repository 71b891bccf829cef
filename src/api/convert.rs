//! Model types to protobuf messages.

use crate::model::spec::{ClusterSelector, Fairness, QueueSpec, DEPTH_DEFAULT, PRIORITY_DEFAULT};
use crate::model::{ModelError, Queue, State, Task};
use crate::proto::v1;

/// A spec from the wire, with defaults for what is unset.
pub fn spec_from_proto(s: Option<v1::QueueSpec>) -> Result<QueueSpec, ModelError> {
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

pub fn spec_to_proto(s: &QueueSpec) -> v1::QueueSpec {
    v1::QueueSpec {
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

pub fn queue(state: &State, q: &Queue) -> v1::Queue {
    v1::Queue {
        name: q.name.clone(),
        pool: q.pool.clone(),
        queued: state.queued(&q.name) as u64,
        next_task_id: state.next_task(&q.name),
        created_ms: q.created_ms,
        updated_ms: q.updated_ms,
        version: q.version,
        spec: Some(spec_to_proto(&q.spec)),
        state: q.state.as_str().to_string(),
        running: 0,
    }
}

pub fn task(state: &State, t: &Task) -> v1::Task {
    v1::Task {
        id: t.id,
        queue: t.queue.clone(),
        state: t.state.as_str().to_string(),
        command: t.command.clone(),
        payload: t.payload.clone(),
        created_ms: t.created_ms,
        idempotency_key: t.idempotency_key.clone(),
        position: state.position(t).map(|p| p as u64 + 1),
    }
}
