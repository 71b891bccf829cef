//! One history format for the two programs that judge laneq's guarantees
//! (`/work/shared/SPEC.md`, "Guarantees"): the deterministic simulation
//! (`tests/sim.rs`, simulated ms) and the multi-process chaos run
//! (`tests/chaos/main.rs`, wall ms since the run began). Each records every
//! client operation it made as a [`Record`], and, once its cluster has
//! healed, what every replica held as a [`Replica`]; the properties in
//! [`check`] judge both the same way.
//!
//! A record says what the client knew, never more: when the program sees
//! the log (the simulation), the entry that answered it too. The format must
//! never need a program to know what the other cannot give: what only one
//! can see is an `Option` (`Record::entry`, `Replica::records`).
//!
//! Both programs include this folder with `#[path]`; neither uses all of it.

#![allow(dead_code)]

pub mod availability;
pub mod check;
pub mod model;

use std::collections::BTreeMap;

use serde::Serialize;

/// One client operation: what was asked, when, and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Who asked: a submitter, a worker, an admin.
    pub client: String,
    /// Its idempotency key; empty when the client library chose one the
    /// program does not see.
    pub key: String,
    pub call: Call,
    /// When the client first sent it, and when it stopped waiting (after
    /// its retries, if the program retries inside one record).
    pub sent_ms: u64,
    pub done_ms: u64,
    pub outcome: Outcome,
    /// The log entry whose apply answered it, where the program sees the
    /// log (the simulation); `None` in the chaos run.
    pub entry: Option<Entry>,
}

/// What a client asked for, with the inputs the checks need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Call {
    /// One task, or an atomic batch of `tasks`.
    Submit {
        tasks: usize,
    },
    Lease {
        worker: String,
    },
    Start {
        task: u64,
        token: u64,
    },
    Progress {
        task: u64,
        token: u64,
    },
    Complete {
        task: u64,
        token: u64,
        succeeded: bool,
    },
    Release {
        task: u64,
        token: u64,
    },
    /// The leases a worker renews: (task, token).
    Heartbeat {
        worker: String,
        held: Vec<(u64, u64)>,
    },
    Register {
        worker: String,
    },
    Cancel {
        task: u64,
    },
    Dequeue {
        task: u64,
    },
    Move {
        task: u64,
    },
    CreateQueue {
        queue: String,
    },
    Drain {
        queue: String,
    },
    Activate {
        queue: String,
    },
    Clear {
        queue: String,
    },
    /// Expiry of the leases whose time has passed (the leader's loop).
    Expire,
    /// A linearizable read; `what` says what it listed.
    Read {
        what: String,
    },
    /// A write the checks do not look into, by name.
    Other(String),
}

impl Call {
    /// The name reports count it under.
    pub fn kind(&self) -> &str {
        match self {
            Call::Submit { .. } => "submit",
            Call::Lease { .. } => "lease",
            Call::Start { .. } => "start",
            Call::Progress { .. } => "progress",
            Call::Complete { .. } => "complete",
            Call::Release { .. } => "release",
            Call::Heartbeat { .. } => "heartbeat",
            Call::Register { .. } => "register",
            Call::Cancel { .. } => "cancel",
            Call::Dequeue { .. } => "dequeue",
            Call::Move { .. } => "move",
            Call::CreateQueue { .. } => "create-queue",
            Call::Drain { .. } => "drain",
            Call::Activate { .. } => "activate",
            Call::Clear { .. } => "clear",
            Call::Expire => "expire",
            Call::Read { .. } => "read",
            Call::Other(name) => name,
        }
    }

    /// The task and token of a call a lease holder makes.
    pub fn fenced(&self) -> Option<(u64, u64)> {
        match *self {
            Call::Start { task, token }
            | Call::Progress { task, token }
            | Call::Complete { task, token, .. }
            | Call::Release { task, token } => Some((task, token)),
            _ => None,
        }
    }
}

/// How one operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// The cluster said yes.
    Ok(Reply),
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
            Outcome::Ok(_) => "ok",
            Outcome::Refused(_) => "refused",
            Outcome::Unknown(_) => "unknown",
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }
}

/// What a yes carried, as far as the checks care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Reply {
    /// The ids of the submitted tasks, in the order given.
    Submitted {
        ids: Vec<u64>,
    },
    /// The leases granted, possibly none.
    Leased {
        leases: Vec<Lease>,
    },
    Read(ReadView),
    /// Any other yes.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub task: u64,
    pub token: u64,
}

/// What a linearizable read observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadView {
    /// The node that answered.
    pub node: u64,
    /// The applied index the node had reached when it read.
    pub applied: u64,
    /// The tasks it listed.
    pub tasks: Vec<TaskView>,
}

/// The log entry that answered a write.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub index: u64,
    /// The apply's answer in the model's terms, which is what the write's
    /// idempotency record must hold.
    pub response: laneq::model::Response,
}

impl Record {
    /// A yes that took effect where it was answered: not the replay of an
    /// earlier entry's answer (which says nothing about where the call took
    /// effect). Where the program cannot tell, every yes.
    pub fn accepted(&self) -> bool {
        self.outcome.is_ok() && !self.entry.as_ref().is_some_and(|e| e.response.replayed)
    }

    /// "key K (client C, sent at S ms, answered at D ms[, index I])": where
    /// to look in a trace or the node logs.
    pub fn at(&self) -> String {
        let index = (self.entry.as_ref()).map_or(String::new(), |e| format!(", index {}", e.index));
        format!(
            "key {} ({}, sent at {} ms, answered at {} ms{index})",
            self.key, self.client, self.sent_ms, self.done_ms
        )
    }
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

/// Everything a run recorded, in the order the operations ended.
#[derive(Debug, Default, Clone, Serialize)]
pub struct History {
    pub records: Vec<Record>,
    pub faults: Vec<Fault>,
}

impl History {
    /// kind -> outcome -> count, over every operation.
    pub fn counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for r in &self.records {
            let kind = counts.entry(r.call.kind().to_string()).or_default();
            *kind.entry(r.outcome.label().to_string()).or_default() += 1;
        }
        counts
    }

    /// The submits, in the order they ended.
    pub fn submits(&self) -> impl Iterator<Item = (&Record, usize)> {
        self.records.iter().filter_map(|r| match r.call {
            Call::Submit { tasks } => Some((r, tasks)),
            _ => None,
        })
    }

    /// Every lease a client was told of, with the call that told it.
    pub fn grants(&self) -> Vec<Grant<'_>> {
        let mut grants = Vec::new();
        for r in &self.records {
            let (Call::Lease { worker }, Outcome::Ok(Reply::Leased { leases })) =
                (&r.call, &r.outcome)
            else {
                continue;
            };
            for l in leases {
                grants.push(Grant {
                    task: l.task,
                    token: l.token,
                    worker,
                    by: r,
                });
            }
        }
        grants
    }
}

/// One lease as a worker learned of it.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'h> {
    pub task: u64,
    pub token: u64,
    pub worker: &'h str,
    /// The lease call that answered with it.
    pub by: &'h Record,
}

/// One task as a replica holds it at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    pub id: u64,
    pub key: String,
    /// The queue's name.
    pub queue: String,
    /// `queued`, `leased`, `running`, `succeeded`...
    pub state: String,
    /// The current (or last) lease's fencing token; 0: never leased.
    pub token: u64,
    /// How often its timeline entered `succeeded`.
    pub successes: u32,
}

/// What one replica holds once the cluster has healed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replica {
    pub id: u64,
    /// The last applied log index, and the state machine's digest there.
    pub applied: u64,
    pub digest: String,
    /// Every task, by id.
    pub tasks: Vec<TaskView>,
    /// Queue name -> its queued tasks in order, with the position each
    /// reports (counting from 1).
    pub queued: BTreeMap<String, Vec<(u64, u64)>>,
    /// The idempotency records of the history's keys, where the program can
    /// read them (the simulation); `None` in the chaos run.
    pub records: Option<BTreeMap<String, Result<laneq::model::Reply, laneq::model::ModelError>>>,
}
