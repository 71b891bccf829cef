//! What the chaos run records: every client operation with the times it was
//! sent and answered (milliseconds since the run began) and its outcome, the
//! faults the nemesis injected, and what every node held at the end.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Serialize;

/// How one request ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// The cluster said yes.
    Ok,
    /// The cluster said no, definitely (bad input, stale token, draining
    /// queue...): the write did not happen.
    Refused(String),
    /// No answer in time, or an answer that does not say: the write may or
    /// may not have happened.
    Unknown(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused(_) => "refused",
            Outcome::Unknown(_) => "unknown",
        }
    }
}

/// One attempt at a submit (a single task, or an atomic batch).
#[derive(Debug, Clone, Serialize)]
pub struct Submit {
    pub key: String,
    /// Tasks in the request.
    pub tasks: usize,
    pub sent_ms: u64,
    pub done_ms: u64,
    pub outcome: Outcome,
    /// The ids the cluster gave, when it said yes.
    pub ids: Vec<u64>,
}

/// A lease a worker received.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub task: u64,
    pub worker: String,
    pub token: u64,
    pub sent_ms: u64,
    pub done_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaskOpKind {
    Start,
    Complete,
}

/// A start or completion a worker sent with its fencing token.
#[derive(Debug, Clone, Serialize)]
pub struct TaskOp {
    pub kind: TaskOpKind,
    pub task: u64,
    pub worker: String,
    pub token: u64,
    pub sent_ms: u64,
    pub done_ms: u64,
    pub outcome: Outcome,
}

/// A fault the nemesis injected, from its start to its heal.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: String,
    /// Who it hit, e.g. `node 2` or `1,3 | 2`.
    pub target: String,
    /// Whether it hit the node that led when it began.
    pub hit_leader: bool,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// Every recorded operation, plus counters for the ones the checker does not
/// look at one by one (heartbeats, admin calls).
#[derive(Debug, Default, Serialize)]
pub struct History {
    pub submits: Vec<Submit>,
    pub grants: Vec<Grant>,
    pub task_ops: Vec<TaskOp>,
    pub faults: Vec<Fault>,
    /// kind -> outcome -> count, for every operation.
    pub ops: BTreeMap<String, BTreeMap<String, u64>>,
}

impl History {
    pub fn count(&mut self, kind: &str, outcome: &Outcome) {
        *self
            .ops
            .entry(kind.to_string())
            .or_default()
            .entry(outcome.label().to_string())
            .or_default() += 1;
    }
}

/// One task as a node holds it at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalTask {
    pub id: u64,
    pub queue: String,
    pub state: String,
    pub key: String,
}

/// What one node holds once the cluster has healed.
#[derive(Debug, Clone)]
pub struct FinalNode {
    pub id: u64,
    pub applied: u64,
    pub digest: String,
    pub tasks: Vec<FinalTask>,
    /// Queue name -> its queued tasks in order, with the position each
    /// reports (counting from 1).
    pub queued: BTreeMap<String, Vec<(u64, u64)>>,
}
