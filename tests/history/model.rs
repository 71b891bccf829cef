//! The history in the terms of laneq's model, for a program that sees it:
//! the simulation (and the checks' own tests) write `Op`s, get `Response`s
//! from apply and hold each replica's `State`. These functions turn them
//! into the shared format; they must never decide anything a check decides.

use std::collections::BTreeMap;

use laneq::model::{Op, Reply as ModelReply, Response, State, Task, TaskState, Write};
use laneq::raft::Applied;

use super::{Call, Entry, Lease, Outcome, Record, Replica, Reply, TaskView};

/// What the checks need of an op.
pub fn call(op: &Op) -> Call {
    match op {
        Op::SubmitTasks { tasks } => Call::Submit { tasks: tasks.len() },
        Op::LeaseTasks { worker, .. } => Call::Lease {
            worker: worker.clone(),
        },
        Op::StartTask { id, fencing_token }
        | Op::StartTaskOn {
            id, fencing_token, ..
        } => Call::Start {
            task: *id,
            token: *fencing_token,
        },
        Op::ReportProgress {
            id, fencing_token, ..
        } => Call::Progress {
            task: *id,
            token: *fencing_token,
        },
        Op::CompleteTask {
            id,
            fencing_token,
            succeeded,
            ..
        } => Call::Complete {
            task: *id,
            token: *fencing_token,
            succeeded: *succeeded,
        },
        Op::ReleaseTask {
            id, fencing_token, ..
        } => Call::Release {
            task: *id,
            token: *fencing_token,
        },
        Op::WorkerHeartbeats { reports, .. } => Call::Heartbeat {
            worker: (reports.iter().map(|r| r.worker.as_str()))
                .collect::<Vec<_>>()
                .join(","),
            held: (reports.iter().flat_map(|r| &r.tasks))
                .map(|t| (t.id, t.fencing_token))
                .collect(),
        },
        Op::RegisterWorker(r) => Call::Register {
            worker: r.name.clone(),
        },
        Op::CancelTask { id, .. } => Call::Cancel { task: *id },
        Op::DequeueTask { id, .. } => Call::Dequeue { task: *id },
        Op::MoveTask { id, .. } => Call::Move { task: *id },
        Op::CreateQueue { name, .. } => Call::CreateQueue {
            queue: name.clone(),
        },
        Op::DrainQueue { name } => Call::Drain {
            queue: name.clone(),
        },
        Op::ActivateQueue { name } => Call::Activate {
            queue: name.clone(),
        },
        Op::ClearQueue { name } => Call::Clear {
            queue: name.clone(),
        },
        Op::ExpireLeases { .. } => Call::Expire,
        other => {
            let debug = format!("{other:?}");
            let name = debug.split([' ', '(', '{']).next().unwrap_or("op");
            Call::Other(name.to_string())
        }
    }
}

/// How the client saw an apply's answer.
pub fn outcome(response: &Response) -> Outcome {
    match &response.result {
        Ok(ModelReply::TasksSubmitted { ids }) => {
            Outcome::Ok(Reply::Submitted { ids: ids.clone() })
        }
        Ok(ModelReply::Leased { leases }) => Outcome::Ok(Reply::Leased {
            leases: (leases.iter())
                .map(|&(task, token, _)| Lease { task, token })
                .collect(),
        }),
        Ok(_) => Outcome::Ok(Reply::Done),
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

/// The record of `write` sent by `client`: `answer` is the apply's
/// response and its log index, `None` when the outcome stayed unknown.
pub fn record(
    client: &str,
    write: &Write,
    (sent_ms, done_ms): (u64, u64),
    answer: Option<(Response, u64)>,
) -> Record {
    let (outcome, entry) = match answer {
        Some((response, index)) => (outcome(&response), Some(Entry { index, response })),
        None => {
            let why = "no answer before the client's deadline".to_string();
            (Outcome::Unknown(why), None)
        }
    };
    Record {
        client: client.to_string(),
        key: write.idempotency_key.clone(),
        call: call(&write.op),
        sent_ms,
        done_ms,
        outcome,
        entry,
    }
}

fn queue_name(state: &State, id: u64) -> String {
    (state.queue_by_id(id)).map_or_else(|| format!("#{id}"), |q| q.name.clone())
}

fn task_view(state: &State, t: &Task) -> TaskView {
    let successes = t
        .timeline
        .iter()
        .filter(|e| e.state == TaskState::Succeeded);
    TaskView {
        id: t.id,
        key: t.idempotency_key.to_string(),
        queue: queue_name(state, t.queue),
        state: t.state.as_str().to_string(),
        token: t.fencing_token(),
        successes: successes.count() as u32,
    }
}

/// Node `id`'s view, with the idempotency records of `keys`.
pub fn replica<'k>(
    id: u64,
    applied: &Applied,
    state: &State,
    keys: impl IntoIterator<Item = &'k str>,
) -> Replica {
    let digest = applied.digest.iter().map(|b| format!("{b:02x}")).collect();
    let tasks = state.tasks_after(0).map(|t| task_view(state, t)).collect();
    let mut queued = BTreeMap::new();
    for q in state.queues() {
        let ids = state.queued_range(q.id, 0, usize::MAX);
        let listed = ids.into_iter().map(|id| {
            let position = state.task(id).and_then(|t| state.position(t));
            (id, position.map_or(0, |p| p as u64 + 1))
        });
        queued.insert(q.name.clone(), listed.collect());
    }
    let records = keys
        .into_iter()
        .filter_map(|k| Some((k.to_string(), state.idempotency(k)?.result.clone())))
        .collect();
    Replica {
        id,
        applied: applied.index,
        digest,
        tasks,
        queued,
        records: Some(records),
    }
}
