//! Writes of one kind made by one process share calls: a submit (or a
//! completion) made while earlier ones are in flight queues, and goes out
//! with its share of those waiting then (all that wait or are in flight,
//! over the kind's slots: two for submits, one for completions), in one
//! `SubmitEach` (`CompleteEach`) call. Each keeps
//! its own idempotency key and gets its own outcome, exactly as if it had
//! been sent alone; one that finds nothing in flight goes alone, at once, as
//! `SubmitTask` (`CompleteTask`).
//!
//! A call per write costs a gRPC round trip on both sides and a log entry;
//! shared, one call and (through the leader's coalescer) one entry serve a
//! whole batch. This is what lets many concurrent submitters in one process
//! go several times faster than one call each, and what spares a worker that
//! finishes a lease batch a call per task.

use std::future::Future;
use std::sync::{OnceLock, Weak};

use tonic::{Code, Status};

use super::{Client, ClientError, Inner};
use crate::gather::{Gather, Limits};
use crate::model::limits::BATCH_MAX_TASKS;
use crate::proto::v1::tasks_client::TasksClient;
use crate::proto::v1::workers_client::WorkersClient;
use crate::proto::v1::{
    complete_outcome, submit_outcome, CompleteEachRequest, CompleteTaskRequest,
    CompleteTaskResponse, RefusedWrite, SubmitEachRequest, SubmitTaskRequest, SubmitTaskResponse,
};

/// A shared call stops growing past this many bytes (estimated).
const CALL_MAX_BYTES: usize = crate::wire::CLIENT_BATCH_MAX_BYTES;

type Outcome<K> = Result<<K as Kind>::Reply, ClientError>;

/// One kind of write that calls can share.
pub(super) trait Kind: 'static {
    type Request: Clone + Send + 'static;
    type Reply: Send + 'static;
    /// The shared call's name, for errors.
    const EACH: &'static str;
    /// Calls of this kind in flight at once.
    const IN_FLIGHT: usize;

    /// Roughly the encoded size of one request.
    fn estimated_bytes(req: &Self::Request) -> usize;
    /// One call for one write (with retries).
    fn alone(client: &Client, req: Self::Request) -> impl Future<Output = Outcome<Self>> + Send;
    /// One call for many; `None` in place of an outcome the server left
    /// empty.
    fn each(
        client: &Client,
        reqs: Vec<Self::Request>,
    ) -> impl Future<Output = Result<Vec<Option<Outcome<Self>>>, ClientError>> + Send;
}

/// The handle the writes of one kind go through: see the module docs.
pub(super) struct Batcher<K: Kind>(OnceLock<Gather<K::Request, Outcome<K>>>);

impl<K: Kind> Default for Batcher<K> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl Client {
    /// Sends `req` alone or with others of its kind, through `batcher`
    /// (started by the first write).
    pub(super) async fn shared<K: Kind>(
        &self,
        batcher: &Batcher<K>,
        req: K::Request,
    ) -> Outcome<K> {
        let gather = batcher
            .0
            .get_or_init(|| start::<K>(std::sync::Arc::downgrade(&self.inner)));
        if let Some(_slot) = gather.free_slot() {
            return K::alone(self, req).await;
        }
        let bytes = K::estimated_bytes(&req);
        if let Some(outcome) = gather.submit(req.clone(), bytes).await {
            return outcome;
        }
        K::alone(self, req).await
    }
}

/// Starts the task that sends the writes of kind `K`. It holds the client
/// weakly, and ends when the client is dropped.
fn start<K: Kind>(inner: Weak<Inner>) -> Gather<K::Request, Outcome<K>> {
    let limits = Limits {
        in_flight: K::IN_FLIGHT,
        max_items: BATCH_MAX_TASKS,
        max_bytes: CALL_MAX_BYTES,
    };
    Gather::start(
        limits,
        |_| false,
        move |batch| {
            let inner = inner.clone();
            async move {
                if let Some(inner) = inner.upgrade() {
                    send::<K>(&Client { inner }, batch).await;
                }
            }
        },
    )
}

async fn send<K: Kind>(
    client: &Client,
    mut batch: Vec<crate::gather::Pending<K::Request, Outcome<K>>>,
) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one write");
        let _ = p.done.send(K::alone(client, p.item).await);
        return;
    }
    let (reqs, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.done)).unzip();
    let count = reqs.len();
    let outcomes = match K::each(client, reqs).await {
        Ok(outcomes) if outcomes.len() == count => outcomes,
        Ok(outcomes) => {
            let e = format!(
                "{}: {} outcomes for {count} writes",
                K::EACH,
                outcomes.len()
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
        let _ = done.send(outcome.unwrap_or_else(|| {
            Err(ClientError::Protocol(format!(
                "{}: an empty outcome",
                K::EACH
            )))
        }));
    }
}

/// A refusal of one write of a shared call, as the call alone would have
/// failed.
fn refusal(r: RefusedWrite) -> ClientError {
    ClientError::Status(Status::new(Code::from_i32(r.code), r.message))
}

/// Submits (`SubmitTask`, shared as `SubmitEach`).
pub(super) struct Submits;

impl Kind for Submits {
    type Request = SubmitTaskRequest;
    type Reply = SubmitTaskResponse;
    const EACH: &'static str = "submit_each";
    /// Two rather than four: each call is an entry that every node logs,
    /// fsyncs and applies, so fewer, larger calls cost less per submit, and
    /// two keep the leader's pipeline busy where one leaves it idle (see
    /// bench/RESULTS.md, "Two submit calls in flight, one completion call").
    const IN_FLIGHT: usize = 2;

    fn estimated_bytes(req: &SubmitTaskRequest) -> usize {
        256 + req.task.as_ref().map_or(0, |t| {
            t.payload.len() + t.command.iter().map(String::len).sum::<usize>()
        })
    }

    async fn alone(client: &Client, req: SubmitTaskRequest) -> Outcome<Self> {
        client.unary(req, TasksClient::submit_task).await
    }

    async fn each(
        client: &Client,
        submits: Vec<SubmitTaskRequest>,
    ) -> Result<Vec<Option<Outcome<Self>>>, ClientError> {
        let req = SubmitEachRequest { submits };
        let resp = client.unary(req, TasksClient::submit_each).await?;
        Ok(resp
            .outcomes
            .into_iter()
            .map(|o| {
                o.outcome.map(|o| match o {
                    submit_outcome::Outcome::Submitted(r) => Ok(r),
                    submit_outcome::Outcome::Refused(r) => Err(refusal(r)),
                })
            })
            .collect())
    }
}

/// Completions (`CompleteTask`, shared as `CompleteEach`).
pub(super) struct Completes;

impl Kind for Completes {
    type Request = CompleteTaskRequest;
    type Reply = CompleteTaskResponse;
    const EACH: &'static str = "complete_each";
    /// One: a completion holds up only its worker's slot, so it waits for
    /// the call in flight and goes with all that waits then, in the fewest
    /// calls (see bench/RESULTS.md, "Two submit calls in flight, one
    /// completion call").
    const IN_FLIGHT: usize = 1;

    fn estimated_bytes(req: &CompleteTaskRequest) -> usize {
        128 + req.condition.len()
    }

    async fn alone(client: &Client, req: CompleteTaskRequest) -> Outcome<Self> {
        client.unary(req, WorkersClient::complete_task).await
    }

    async fn each(
        client: &Client,
        completes: Vec<CompleteTaskRequest>,
    ) -> Result<Vec<Option<Outcome<Self>>>, ClientError> {
        let req = CompleteEachRequest { completes };
        let resp = client.unary(req, WorkersClient::complete_each).await?;
        Ok(resp
            .outcomes
            .into_iter()
            .map(|o| {
                o.outcome.map(|o| match o {
                    complete_outcome::Outcome::Completed(r) => Ok(r),
                    complete_outcome::Outcome::Refused(r) => Err(refusal(r)),
                })
            })
            .collect())
    }
}
