//! Write coalescing on the leader: client writes that arrive while earlier
//! proposals are in flight go into one log entry ([`Op::Each`]).
//!
//! Group commit already makes one fsync serve many entries; this makes one
//! entry serve many writes, so that the per-entry costs (the log record, its
//! replication and decoding on every follower, the apply bookkeeping and the
//! digest step) are paid once per batch instead of once per write. At low
//! load a write finds a free slot and is proposed alone, at once: nothing
//! waits for company.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use openraft::errors::{ClientWriteError, RaftError};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{Raft, TypeConfig};
use crate::model::{limits, Command, Op, Reply, Response, Stamp, Write};

/// Proposals in flight at once. A write that arrives while all are taken
/// waits for the next one, together with every other write that arrives
/// meanwhile.
const IN_FLIGHT: usize = 4;
/// A coalesced entry stops growing past this many bytes (estimated): no
/// bigger than the largest single client message.
const ENTRY_MAX_BYTES: usize = crate::api::CLIENT_MESSAGE_MAX_BYTES;

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

pub type Proposed = Result<(Response, u64), ProposeError>;

struct Pending {
    write: Write,
    bytes: usize,
    done: oneshot::Sender<Proposed>,
}

/// The handle writes are proposed through; see the module docs.
pub struct Coalescer {
    tx: mpsc::UnboundedSender<Pending>,
    raft: Raft,
    slots: Arc<Semaphore>,
    /// Writes sent to the gathering task and not yet taken by it.
    waiting: Arc<AtomicUsize>,
}

impl Coalescer {
    /// Starts the task that gathers and proposes writes. It ends when the
    /// handle is dropped.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let waiting = Arc::new(AtomicUsize::new(0));
        tokio::spawn(gather(raft.clone(), rx, slots.clone(), waiting.clone()));
        Self {
            tx,
            raft,
            slots,
            waiting,
        }
    }

    /// Proposes `write`, alone or with others; resolves with its own
    /// response and the index of the entry that carried it.
    pub async fn propose(&self, write: Write) -> Proposed {
        // A free slot and nobody waiting: propose from here, without the
        // two task hops through the gathering task.
        if self.waiting.load(Ordering::Acquire) == 0 {
            if let Ok(_slot) = self.slots.clone().try_acquire_owned() {
                return propose_one(&self.raft, write).await;
            }
        }
        let (done, rx) = oneshot::channel();
        let bytes = write.approx_bytes();
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.tx
            .send(Pending { write, bytes, done })
            .map_err(|_| ProposeError::Fatal("the write coalescer has stopped".into()))?;
        rx.await
            .map_err(|_| ProposeError::Fatal("the write coalescer has stopped".into()))?
    }
}

async fn gather(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
) {
    // A write that is itself many (`Op::Each`, a `SubmitEach` call) goes in
    // an entry of its own: entries do not nest.
    let alone = |p: &Pending| matches!(p.write.op, Op::Each(_));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while !alone(&batch[0])
            && batch.len() < limits::COALESCED_WRITES_MAX
            && bytes < ENTRY_MAX_BYTES
        {
            match rx.try_recv() {
                Ok(p) if alone(&p) => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.bytes;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        waiting.fetch_sub(batch.len(), Ordering::AcqRel);
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, batch).await;
            drop(slot);
        });
    }
}

fn stamp() -> Stamp {
    Stamp {
        now_ms: crate::clock::now_ms(),
        seed: rand::rng().random(),
    }
}

/// Stamps and proposes one write in an entry of its own.
async fn propose_one(raft: &Raft, write: Write) -> Proposed {
    let stamp = stamp();
    raft.client_write(Command { stamp, write })
        .await
        .map(|r| (r.data, r.log_id.index()))
        .map_err(propose_error)
}

/// Stamps and proposes one entry for `batch`, then answers each write.
async fn propose(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one write");
        let _ = p.done.send(propose_one(raft, p.write).await);
        return;
    }
    let stamp = stamp();
    let (writes, waiters): (Vec<Write>, Vec<oneshot::Sender<Proposed>>) =
        batch.into_iter().map(|p| (p.write, p.done)).unzip();
    let count = writes.len();
    let write = Write {
        // Not remembered (see `State::apply`): the writes carry their keys.
        idempotency_key: "coalesced".into(),
        actor: String::new(),
        op: Op::Each(writes),
    };
    let outcome = match raft.client_write(Command { stamp, write }).await {
        Err(e) => Err(propose_error(e)),
        Ok(r) => match r.data.result {
            Ok(Reply::Each(responses)) if responses.len() == count => {
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
