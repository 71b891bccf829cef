//! Tests of the state and its apply, one file per subject, over the shared
//! helpers below: `apply` (ids, idempotency, refusals, coalesced entries, the
//! clock), `queues`, `clears`, `pools`, `projects`, `tasks` (batches, moves,
//! cancels), `leases` (fencing, heartbeats, expiry and the revoke rule),
//! `dispatch` (priority, fairness, runs, against a brute-force `reference`),
//! and `properties` (invariants, determinism and reloads over random
//! commands). `harness` and `steps` drive random states for the dispatch and
//! lease properties. `retention` tests the collect, over `steady` work.

mod apply;
mod clears;
mod dispatch;
mod harness;
mod leases;
mod pools;
mod projects;
mod properties;
mod queues;
mod reference;
mod retention;
pub(crate) mod steady;
mod steps;
mod tasks;
mod tokens;

pub(crate) use properties::random_op;

use super::State;
use crate::model::{Command, ModelError, NewTask, Op, Reply, Stamp, Write, Writes};

pub(crate) fn cmd(now_ms: u64, key: &str, op: Op) -> Command {
    Command {
        stamp: Stamp { now_ms, seed: 0 },
        writes: Writes::One(Write {
            idempotency_key: key.to_string(),
            actor: "tester".to_string(),
            op,
        }),
    }
}

/// An entry that carries `writes` as a batch.
pub(crate) fn batch(now_ms: u64, writes: Vec<Write>) -> Command {
    Command {
        stamp: Stamp { now_ms, seed: 0 },
        writes: Writes::Batch(writes),
    }
}

pub(crate) fn submit(queue: &str) -> Op {
    Op::SubmitTasks {
        tasks: vec![NewTask {
            queue: queue.into(),
            command: vec!["echo".into(), "hi".into()],
            ..Default::default()
        }],
    }
}

/// Queued tasks of a queue, by name.
fn queued(s: &State, queue: &str) -> usize {
    s.queued(s.queue(queue).unwrap().id)
}

/// Applies `op` with a fresh key and returns the result.
fn run_op(s: &mut State, op: Op) -> Result<Reply, ModelError> {
    let key = format!("t{}", s.meta().clock_ms + 1);
    let now = s.meta().clock_ms + 1;
    s.apply(&cmd(now, &key, op), &mut vec![]).result
}

fn task_to(queue: &str, project: &str, run: &str) -> NewTask {
    NewTask {
        queue: queue.into(),
        project: project.into(),
        run: run.into(),
        command: vec!["train".into()],
        ..Default::default()
    }
}

fn new_queue(s: &mut State, name: &str, pool: &str, depth: u64) {
    let spec = crate::model::spec::QueueSpec {
        depth,
        ..Default::default()
    };
    let op = Op::CreateQueue {
        name: name.into(),
        pool: pool.into(),
        spec,
    };
    run_op(s, op).unwrap();
}

fn ids(r: Result<Reply, ModelError>) -> Vec<u64> {
    match r.unwrap() {
        Reply::TasksSubmitted { ids } => ids,
        other => panic!("not a submit: {other:?}"),
    }
}

/// Queued ids of a queue in order.
fn order(s: &State, queue: &str) -> Vec<u64> {
    s.queued_range(s.queue(queue).unwrap().id, 0, usize::MAX)
}
