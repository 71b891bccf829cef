//! Write coalescing on the leader: client writes that arrive while earlier
//! proposals are in flight go into one log entry ([`Writes::Batch`]).
//!
//! Group commit already makes one fsync serve many entries; this makes one
//! entry serve many writes, so that the per-entry costs (the log record, its
//! replication and decoding on every follower, the apply bookkeeping and the
//! digest step) are paid once per batch instead of once per write. At low
//! load a write finds nothing in flight and is proposed alone, at once:
//! nothing waits for company. The batching itself is `crate::gather`'s,
//! which the client's submit batcher shares.

use std::sync::Arc;

use openraft::errors::{ClientWriteError, RaftError};
use rand::Rng;
use tokio::sync::oneshot;

use super::{Raft, TypeConfig};
use crate::gather::{Gather, Limits};
use crate::meter;
use crate::model::{limits, Command, Reply, Response, Stamp, Write, Writes};

/// Proposals in flight at once. A write that arrives while any is in flight
/// queues, and goes out with its share of the writes waiting then.
const IN_FLIGHT: usize = 4;
/// A coalesced entry stops growing past this many bytes (estimated): no
/// bigger than the largest single client message.
const ENTRY_MAX_BYTES: usize = crate::wire::CLIENT_MESSAGE_MAX_BYTES;

/// Why a proposal failed, in a form every write of a batch can share.
#[derive(Debug, Clone)]
pub enum ProposeError {
    /// This node does not lead (openraft's `ForwardToLeader`).
    NotLeader,
    /// Leadership changed while the entry was in flight: outcome unknown.
    Discarded,
    /// Another refusal from openraft.
    Refused(String),
    /// Raft has stopped.
    Fatal(String),
}

impl ProposeError {
    /// Every `reason` label of `laneq_raft_proposals_failed_total`, in the
    /// order of the variants.
    pub const REASONS: [&'static str; 4] = ["not_leader", "discarded", "refused", "fatal"];

    /// The `reason` label of this failure.
    fn reason(&self) -> &'static str {
        Self::REASONS[match self {
            ProposeError::NotLeader => 0,
            ProposeError::Discarded => 1,
            ProposeError::Refused(_) => 2,
            ProposeError::Fatal(_) => 3,
        }]
    }
}

pub type Proposed = Result<(Response, u64), ProposeError>;

type Pending = crate::gather::Pending<Writes, Proposed>;

/// Where a leader's stamps come from: its time and a seed for each command
/// (the only clock and randomness that reach apply).
pub trait Stamper: Send + Sync + 'static {
    fn stamp(&self) -> Stamp;
}

/// A real node's stamps: the wall clock, and a seed from the thread's
/// random source.
pub struct WallClock;

impl Stamper for WallClock {
    fn stamp(&self) -> Stamp {
        Stamp {
            now_ms: crate::clock::now_ms(),
            seed: rand::rng().random(),
        }
    }
}

/// The handle writes are proposed through; see the module docs.
pub struct Coalescer {
    raft: Raft,
    stamper: Arc<dyn Stamper>,
    gather: Gather<Writes, Proposed>,
}

impl Coalescer {
    /// Starts the task that gathers and proposes writes. It ends when the
    /// handle is dropped.
    pub fn start(raft: Raft, stamper: Arc<dyn Stamper>) -> Self {
        let limits = Limits {
            in_flight: IN_FLIGHT,
            max_items: limits::COALESCED_WRITES_MAX,
            max_bytes: ENTRY_MAX_BYTES,
        };
        let (proposer, stamps) = (raft.clone(), stamper.clone());
        // A batch (a `SubmitEach` call's) goes in an entry of its own:
        // batches do not nest.
        let alone = |w: &Writes| matches!(w, Writes::Batch(_));
        let gather = Gather::start(limits, alone, move |batch| {
            let (raft, stamp) = (proposer.clone(), stamps.stamp());
            async move { propose(&raft, stamp, batch).await }
        });
        Self {
            raft,
            stamper,
            gather,
        }
    }

    /// Proposes `writes`, alone or with others; resolves with their own
    /// response and the index of the entry that carried them.
    pub async fn propose(&self, writes: Writes) -> Proposed {
        let _pending = meter::Pending::start();
        let proposed = self.gathered(writes).await;
        if let Err(e) = &proposed {
            meter::proposal_failed(e.reason());
        }
        proposed
    }

    async fn gathered(&self, writes: Writes) -> Proposed {
        // Nothing in flight and nobody waiting: propose from here, without
        // the two task hops through the gathering task.
        if let Some(_slot) = self.gather.free_slot() {
            return propose_one(&self.raft, self.stamper.stamp(), writes).await;
        }
        let bytes = writes.approx_bytes();
        self.gather.submit(writes, bytes).await.unwrap_or_else(|| {
            Err(ProposeError::Fatal(
                "the write coalescer has stopped".into(),
            ))
        })
    }
}

/// Proposes `writes`, stamped with `stamp`, in an entry of their own.
async fn propose_one(raft: &Raft, stamp: Stamp, writes: Writes) -> Proposed {
    raft.client_write(Command { stamp, writes }.into())
        .await
        .map(|r| (r.data, r.log_id.index()))
        .map_err(propose_error)
}

/// Proposes one entry for `batch`, stamped with `stamp`, then answers each
/// write.
async fn propose(raft: &Raft, stamp: Stamp, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one write");
        let _ = p.done.send(propose_one(raft, stamp, p.item).await);
        return;
    }
    let (writes, waiters): (Vec<Write>, Vec<oneshot::Sender<Proposed>>) =
        batch.into_iter().map(|p| (single(p.item), p.done)).unzip();
    let count = writes.len();
    let writes = Writes::Batch(writes);
    let outcome = match raft.client_write(Command { stamp, writes }.into()).await {
        Err(e) => Err(propose_error(e)),
        Ok(r) => match r.data.result {
            Ok(Reply::Batch(responses)) if responses.len() == count => {
                let index = r.log_id.index();
                for (done, response) in waiters.into_iter().zip(responses) {
                    let _ = done.send(Ok((response, index)));
                }
                return;
            }
            other => Err(ProposeError::Fatal(format!(
                "a coalesced entry of {count} writes was answered with {other:?}"
            ))),
        },
    };
    for done in waiters {
        let _ = done.send(outcome.clone());
    }
}

/// The write of a gathered item that shares an entry: only single writes
/// do (a batch is gathered `alone`).
fn single(writes: Writes) -> Write {
    match writes {
        Writes::One(write) => write,
        Writes::Batch(_) => unreachable!("a batch is gathered alone"),
    }
}

pub(super) fn propose_error(
    e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ProposeError::NotLeader,
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => ProposeError::Discarded,
        RaftError::APIError(e) => ProposeError::Refused(e.to_string()),
        RaftError::Fatal(e) => ProposeError::Fatal(e.to_string()),
    }
}
