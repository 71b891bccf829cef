//! The task: its states, its timeline, its stored body, and what a replica
//! knows about one of its leases.
//!
//! **Architecture Invariant:** plain data and pure questions about it; a
//! task changes only inside `state`'s apply.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::{limits, order};
use super::{spec, worker, CompactString, ModelError};

/// A task's transitions: the first (its submit) lives inside the task.
pub type Timeline = smallvec::SmallVec<[Transition; 1]>;

/// The life of a task: queued → leased → running → succeeded | failed |
/// canceled, and queued → dequeued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskState {
    Queued,
    Leased,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Dequeued,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Leased,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::Dequeued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Leased => "leased",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Dequeued => "dequeued",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, ModelError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
                ModelError::invalid(
                    field,
                    format!("{s:?} is not a task state; use one of {}", all.join(", ")),
                )
            })
    }

    /// Leased or running: holds a worker and counts against concurrency.
    pub fn in_flight(self) -> bool {
        matches!(self, TaskState::Leased | TaskState::Running)
    }

    pub fn terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Canceled | TaskState::Dequeued
        )
    }
}

/// One entry of a task's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: u64,
    /// The state entered (a move between queues stays `queued`).
    pub state: TaskState,
    pub actor: CompactString,
    pub reason: CompactString,
    /// The log index of the entry that applied it, so that a watch can
    /// resume after an index and miss none (0: applied outside the log, or
    /// stored by a release before task records carried it, format 1).
    pub index: u64,
}

/// A task's command line and payload: written to storage once, at submit,
/// and kept out of memory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskBody {
    pub command: Vec<String>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// The unit that is queued and run. Its command line and payload live in
/// storage ([`TaskBody`]), not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    /// Queue id.
    pub queue: u64,
    pub project: CompactString,
    pub run: CompactString,
    pub name: CompactString,
    pub state: TaskState,
    pub resources: spec::Resources,
    pub max_attempts: u32,
    /// Leases so far.
    pub attempt: u32,
    pub labels: std::collections::BTreeMap<String, String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Shared by the tasks of one batch (and again after a reload: see
    /// `State::load_task`).
    pub idempotency_key: Arc<str>,
    /// Order within the queue: lower runs first (see [`order::QueueOrder`]).
    pub rank: u128,
    /// Every transition, oldest first (at most [`limits::TIMELINE_MAX`]:
    /// past that the oldest after the first are dropped).
    pub timeline: Timeline,
    /// Why a task failed or was canceled.
    pub condition: Option<String>,
    pub payload_bytes: u32,
    /// Its leases and run, once it has been leased.
    pub execution: Option<Box<worker::Execution>>,
}

impl Task {
    /// The token of the current lease (0: never leased).
    pub fn fencing_token(&self) -> u64 {
        self.execution.as_ref().map_or(0, |e| e.fencing_token)
    }

    /// The worker of the current or last lease.
    pub fn worker(&self) -> Option<&str> {
        self.execution.as_ref().map(|e| e.worker.as_str())
    }

    /// When a finished task finished (its last transition), which its
    /// retention counts from; `None` while it is not finished.
    pub fn finished_ms(&self) -> Option<u64> {
        let last = self.timeline.last().map_or(self.updated_ms, |t| t.at_ms);
        self.state.terminal().then_some(last)
    }

    /// What this replica knows of the lease with `fencing_token`: the one
    /// rule behind both the refusal of a stale token in apply and the
    /// revokes a heartbeat answers with.
    pub fn lease_view(&self, fencing_token: u64) -> LeaseView {
        match self.fencing_token().cmp(&fencing_token) {
            Ordering::Greater => LeaseView::Over,
            Ordering::Equal if self.state.in_flight() => LeaseView::Current,
            Ordering::Equal => LeaseView::Over,
            Ordering::Less => LeaseView::NotYetApplied,
        }
    }
}

/// A lease as one replica sees it (see [`Task::lease_view`]). Tokens only
/// grow, so a token above the task's is one this replica has yet to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseView {
    /// The task is leased or running under exactly this token: its holder
    /// may go on.
    Current,
    /// The lease is over: a newer one was granted, or this one ended (the
    /// task is no longer leased or running). Its holder must stop.
    Over,
    /// The task's token is older: this replica has not applied the lease
    /// yet, so it knows nothing against it, and revokes nothing.
    NotYetApplied,
}
