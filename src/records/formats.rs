//! Records as earlier formats stored them, and how they read today: a node
//! upgraded in place, or a snapshot made by an earlier release, loads them.
//!
//! Tasks are format 3 since a run records the GPUs its worker gave it; a
//! format-2 task reads with none. Format 2 began when each transition of a
//! timeline recorded the log index that applied it; a format-1 task reads
//! with index 0 on every transition (not recorded). Queues are format 2
//! since a queue can have a clear under way; a format-1 queue reads with
//! none.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use crate::codec::{decode, decode_as, format_of, FORMAT_V1, FORMAT_V2, FORMAT_V3};
use crate::model::{spec, worker, CompactString, Queue, Task, TaskState, Transition};

/// The format task records are written in.
pub const TASK_FORMAT: u8 = FORMAT_V3;

/// A task record of any format.
pub fn decode_task(bytes: &[u8]) -> io::Result<Task> {
    match format_of(bytes)?.0 {
        FORMAT_V1 => Ok(decode::<TaskV1>(bytes)?.into()),
        FORMAT_V2 => Ok(decode_as::<TaskV2>(FORMAT_V2, bytes)?.into()),
        _ => decode_as(TASK_FORMAT, bytes),
    }
}

impl From<TaskV1> for Task {
    fn from(t: TaskV1) -> Self {
        let timeline = (t.timeline.into_iter())
            .map(|e| Transition {
                at_ms: e.at_ms,
                state: e.state,
                actor: e.actor,
                reason: e.reason,
                index: 0,
            })
            .collect();
        TaskV2 {
            id: t.id,
            queue: t.queue,
            project: t.project,
            run: t.run,
            name: t.name,
            state: t.state,
            resources: t.resources,
            max_attempts: t.max_attempts,
            attempt: t.attempt,
            labels: t.labels,
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
            idempotency_key: t.idempotency_key,
            rank: t.rank,
            timeline,
            condition: t.condition,
            payload_bytes: t.payload_bytes,
            execution: t.execution,
        }
        .into()
    }
}

impl From<TaskV2> for Task {
    fn from(t: TaskV2) -> Self {
        Task {
            id: t.id,
            queue: t.queue,
            project: t.project,
            run: t.run,
            name: t.name,
            state: t.state,
            resources: t.resources,
            max_attempts: t.max_attempts,
            attempt: t.attempt,
            labels: t.labels,
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
            idempotency_key: t.idempotency_key,
            rank: t.rank,
            timeline: t.timeline.into(),
            condition: t.condition,
            payload_bytes: t.payload_bytes,
            execution: t.execution.map(|e| {
                Box::new(worker::Execution {
                    worker: e.worker,
                    fencing_token: e.fencing_token,
                    lease_expires_ms: e.lease_expires_ms,
                    started_ms: e.started_ms,
                    finished_ms: e.finished_ms,
                    iteration: e.iteration,
                    exit_code: e.exit_code,
                    gpus: Vec::new(),
                })
            }),
        }
    }
}

/// [`Task`] as format 2 stored it: its execution without GPUs.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct TaskV2 {
    id: u64,
    queue: u64,
    project: CompactString,
    run: CompactString,
    name: CompactString,
    state: TaskState,
    resources: spec::Resources,
    max_attempts: u32,
    attempt: u32,
    labels: BTreeMap<String, String>,
    created_ms: u64,
    updated_ms: u64,
    idempotency_key: Arc<str>,
    rank: u128,
    timeline: Vec<Transition>,
    condition: Option<String>,
    payload_bytes: u32,
    execution: Option<Box<ExecutionV1>>,
}

/// [`worker::Execution`] as task formats 1 and 2 stored it: without GPUs.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct ExecutionV1 {
    worker: String,
    fencing_token: u64,
    lease_expires_ms: Option<u64>,
    started_ms: Option<u64>,
    finished_ms: Option<u64>,
    iteration: Option<u64>,
    exit_code: Option<i32>,
}

/// [`Task`] as format 1 stored it.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct TaskV1 {
    id: u64,
    queue: u64,
    project: CompactString,
    run: CompactString,
    name: CompactString,
    state: TaskState,
    resources: spec::Resources,
    max_attempts: u32,
    attempt: u32,
    labels: BTreeMap<String, String>,
    created_ms: u64,
    updated_ms: u64,
    idempotency_key: Arc<str>,
    rank: u128,
    timeline: Vec<TransitionV1>,
    condition: Option<String>,
    payload_bytes: u32,
    execution: Option<Box<ExecutionV1>>,
}

/// [`Transition`] as format 1 stored it: without its log index.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct TransitionV1 {
    at_ms: u64,
    state: TaskState,
    actor: CompactString,
    reason: CompactString,
}

/// A queue record. Queues are format 2 since a queue can have a clear under
/// way ([`Queue::clearing`]); a format-1 record, written before, is a queue
/// with none.
pub fn decode_queue(bytes: &[u8]) -> io::Result<Queue> {
    if format_of(bytes)?.0 != FORMAT_V1 {
        return decode_as(FORMAT_V2, bytes);
    }
    let q: QueueV1 = decode(bytes)?;
    Ok(Queue {
        id: q.id,
        name: q.name,
        pool: q.pool,
        spec: q.spec,
        state: q.state,
        created_ms: q.created_ms,
        updated_ms: q.updated_ms,
        activity_ms: q.activity_ms,
        version: q.version,
        recent_waits: q.recent_waits,
        rr_last_project: q.rr_last_project,
        clearing: None,
    })
}

/// [`Queue`] as format 1 stored it.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct QueueV1 {
    id: u64,
    name: String,
    pool: String,
    spec: spec::QueueSpec,
    state: spec::QueueState,
    created_ms: u64,
    updated_ms: u64,
    activity_ms: u64,
    version: u64,
    recent_waits: std::collections::VecDeque<u64>,
    rr_last_project: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, encode_as};
    use crate::model::state::tests::{cmd, submit};
    use crate::model::{Op, State};

    /// A task record written before transitions carried their index reads
    /// as the same task with index 0 on each; a new record keeps them.
    #[test]
    fn task_records_of_both_formats_read() {
        let mut state = State::new();
        let mut changed = vec![];
        state.apply_at(5, &cmd(1_000, "a", submit("default")), &mut changed);
        let cancel = Op::CancelTask {
            id: 1,
            reason: "not needed".into(),
        };
        state.apply_at(9, &cmd(2_000, "b", cancel), &mut changed);
        let task = state.task(1).unwrap().clone();
        let indexes: Vec<u64> = task.timeline.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![5, 9]);
        assert_eq!(decode_task(&encode_as(TASK_FORMAT, &task)).unwrap(), task);

        let old = TaskV1 {
            id: task.id,
            queue: task.queue,
            project: task.project.clone(),
            run: task.run.clone(),
            name: task.name.clone(),
            state: task.state,
            resources: task.resources.clone(),
            max_attempts: task.max_attempts,
            attempt: task.attempt,
            labels: task.labels.clone(),
            created_ms: task.created_ms,
            updated_ms: task.updated_ms,
            idempotency_key: task.idempotency_key.clone(),
            rank: task.rank,
            timeline: task
                .timeline
                .iter()
                .map(|e| TransitionV1 {
                    at_ms: e.at_ms,
                    state: e.state,
                    actor: e.actor.clone(),
                    reason: e.reason.clone(),
                })
                .collect(),
            condition: task.condition.clone(),
            payload_bytes: task.payload_bytes,
            execution: None,
        };
        assert!(task.execution.is_none(), "never leased");
        let mut expected = task.clone();
        for e in &mut expected.timeline {
            e.index = 0;
        }
        assert_eq!(decode_task(&encode(&old)).unwrap(), expected);
    }

    /// A task record written before runs recorded their GPUs reads as the
    /// same task with none; a new record keeps them.
    #[test]
    fn task_records_before_gpus_read() {
        let mut state = State::new();
        let mut changed = vec![];
        state.apply_at(1, &cmd(1_000, "a", submit("default")), &mut changed);
        let register = Op::RegisterWorker(crate::model::worker::Registration {
            name: "w1".into(),
            pool: crate::model::DEFAULT_POOL.into(),
            queues: vec!["default".into()],
            ..Default::default()
        });
        state.apply_at(2, &cmd(1_000, "b", register), &mut changed);
        let lease = Op::LeaseTasks {
            worker: "w1".into(),
            max_tasks: 1,
            ttl_ms: 10_000,
        };
        state.apply_at(3, &cmd(1_000, "c", lease), &mut changed);
        let gpus = vec![worker::AssignedGpu {
            index: 2,
            uuid: "GPU-2".into(),
        }];
        let start = Op::StartTaskOn {
            id: 1,
            fencing_token: 1,
            gpus: gpus.clone(),
        };
        state.apply_at(4, &cmd(2_000, "d", start), &mut changed);
        let task = state.task(1).unwrap().clone();
        let exec = task.execution.as_deref().expect("started");
        assert_eq!(exec.gpus, gpus);
        assert_eq!(decode_task(&encode_as(TASK_FORMAT, &task)).unwrap(), task);

        let old = TaskV2 {
            id: task.id,
            queue: task.queue,
            project: task.project.clone(),
            run: task.run.clone(),
            name: task.name.clone(),
            state: task.state,
            resources: task.resources.clone(),
            max_attempts: task.max_attempts,
            attempt: task.attempt,
            labels: task.labels.clone(),
            created_ms: task.created_ms,
            updated_ms: task.updated_ms,
            idempotency_key: task.idempotency_key.clone(),
            rank: task.rank,
            timeline: task.timeline.to_vec(),
            condition: task.condition.clone(),
            payload_bytes: task.payload_bytes,
            execution: Some(Box::new(ExecutionV1 {
                worker: exec.worker.clone(),
                fencing_token: exec.fencing_token,
                lease_expires_ms: exec.lease_expires_ms,
                started_ms: exec.started_ms,
                finished_ms: exec.finished_ms,
                iteration: exec.iteration,
                exit_code: exec.exit_code,
            })),
        };
        let mut expected = task.clone();
        expected.execution.as_mut().unwrap().gpus.clear();
        assert_eq!(decode_task(&encode_as(FORMAT_V2, &old)).unwrap(), expected);
    }

    /// A queue record written before queues had `clearing` reads as a queue
    /// with no clear under way; a new record keeps its clear.
    #[test]
    fn queue_records_of_both_formats_read() {
        let mut queue = State::new().queue("default").unwrap().clone();
        queue.recent_waits.push_back(7);
        let old = QueueV1 {
            id: queue.id,
            name: queue.name.clone(),
            pool: queue.pool.clone(),
            spec: queue.spec.clone(),
            state: queue.state,
            created_ms: 1,
            updated_ms: 2,
            activity_ms: 3,
            version: 4,
            recent_waits: queue.recent_waits.clone(),
            rr_last_project: "p".into(),
        };
        (queue.created_ms, queue.updated_ms, queue.activity_ms) = (1, 2, 3);
        (queue.version, queue.rr_last_project) = (4, "p".into());
        assert_eq!(decode_queue(&encode(&old)).unwrap(), queue);
        queue.clearing = Some(crate::model::Clearing::Delete);
        assert_eq!(decode_queue(&encode_as(FORMAT_V2, &queue)).unwrap(), queue);
    }
}
