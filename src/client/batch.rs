//! Submits of one process share calls: a submit made while earlier ones are
//! in flight waits for a free slot and goes out with every other submit
//! waiting then, in one `SubmitEach` call. Each keeps its own idempotency
//! key and gets its own outcome, exactly as if it had been sent alone; a
//! submit that finds a free slot goes alone, at once, as `SubmitTask`.
//!
//! A call per submit costs a gRPC round trip on both sides and a log entry;
//! shared, one call and (through the leader's coalescer) one entry serve a
//! whole batch. This is what lets many concurrent submitters in one process
//! go several times faster than one call each.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};

use super::{Client, ClientError, Inner};
use crate::model::limits::BATCH_MAX_TASKS;
use crate::proto::v1::tasks_client::TasksClient;
use crate::proto::v1::{submit_outcome, SubmitEachRequest, SubmitTaskRequest, SubmitTaskResponse};

/// Calls in flight at once.
const IN_FLIGHT: usize = 4;
/// A shared call stops growing past this many bytes (estimated), under the
/// server's 4 MiB message limit.
const CALL_MAX_BYTES: usize = 3 * 1024 * 1024;

type Outcome = Result<SubmitTaskResponse, ClientError>;

struct Pending {
    req: SubmitTaskRequest,
    bytes: usize,
    done: oneshot::Sender<Outcome>,
}

/// The handle submits go through: see the module docs.
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
    slots: Arc<Semaphore>,
    /// Submits sent to the gathering task and not yet taken by it.
    waiting: Arc<AtomicUsize>,
}

impl Batcher {
    /// Starts the task that sends the submits. It holds the client weakly,
    /// and ends when the client is dropped.
    pub(super) fn start(inner: Weak<Inner>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let waiting = Arc::new(AtomicUsize::new(0));
        tokio::spawn(gather(inner, rx, slots.clone(), waiting.clone()));
        Self { tx, slots, waiting }
    }

    /// A free slot when no submit is waiting: the caller then sends its
    /// submit alone, at once, holding the slot while it does.
    pub(super) fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.waiting.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Sends `req` alone or with others. `None` when the sending task is
    /// gone (its runtime shut down): the caller sends the submit itself,
    /// which is safe, for it keeps its idempotency key.
    pub(super) async fn submit(&self, req: SubmitTaskRequest) -> Option<Outcome> {
        let (done, rx) = oneshot::channel();
        let bytes = estimated_bytes(&req);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Pending { req, bytes, done }).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        rx.await.ok()
    }
}

fn estimated_bytes(req: &SubmitTaskRequest) -> usize {
    256 + req.task.as_ref().map_or(0, |t| {
        t.payload.len() + t.command.iter().map(String::len).sum::<usize>()
    })
}

async fn gather(
    inner: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
) {
    while let Some(first) = rx.recv().await {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX_TASKS && bytes < CALL_MAX_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.bytes;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        waiting.fetch_sub(batch.len(), Ordering::AcqRel);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let client = Client { inner };
        tokio::spawn(async move {
            send(&client, batch).await;
            drop(slot);
        });
    }
}

async fn send(client: &Client, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one submit");
        let _ = p.done.send(client.submit_alone(p.req).await);
        return;
    }
    let (submits, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.req, p.done)).unzip();
    let count = submits.len();
    let req = SubmitEachRequest { submits };
    let result = client
        .call(|ch| {
            let req = req.clone();
            async move { TasksClient::new(ch).submit_each(req).await }
        })
        .await;
    let outcomes = match result {
        Ok(resp) if resp.outcomes.len() == count => resp.outcomes,
        Ok(resp) => {
            let e = format!(
                "submit_each: {} outcomes for {count} submits",
                resp.outcomes.len()
            );
            for done in waiters {
                let _ = done.send(Err(ClientError::Protocol(e.clone())));
            }
            return;
        }
        Err(e) => {
            for done in waiters {
                let _ = done.send(Err(e.clone()));
            }
            return;
        }
    };
    for (done, outcome) in waiters.into_iter().zip(outcomes) {
        let _ = done.send(match outcome.outcome {
            Some(submit_outcome::Outcome::Submitted(r)) => Ok(r),
            Some(submit_outcome::Outcome::Refused(r)) => Err(ClientError::Status(Status::new(
                Code::from_i32(r.code),
                r.message,
            ))),
            None => Err(ClientError::Protocol(
                "submit_each: an empty outcome".into(),
            )),
        });
    }
}
