//! Submits of one process share calls: a submit made while earlier ones are
//! in flight queues, and goes out with its share of the submits waiting
//! then (all that wait or are in flight, over the two slots), in one
//! `SubmitEach` call. Each keeps its own idempotency key and gets its own
//! outcome, exactly as if it had been sent alone; a submit that finds
//! nothing in flight goes alone, at once, as `SubmitTask`.
//!
//! A call per submit costs a gRPC round trip on both sides and a log entry;
//! shared, one call and (through the leader's coalescer) one entry serve a
//! whole batch. This is what lets many concurrent submitters in one process
//! go several times faster than one call each.

use std::sync::Weak;

use tonic::{Code, Status};

use super::{Client, ClientError, Inner};
use crate::gather::{Gather, Limits};
use crate::model::limits::BATCH_MAX_TASKS;
use crate::proto::v1::tasks_client::TasksClient;
use crate::proto::v1::{submit_outcome, SubmitEachRequest, SubmitTaskRequest, SubmitTaskResponse};

/// Calls in flight at once. Two rather than four: each call is an entry
/// that every node logs, fsyncs and applies, so fewer, larger calls cost less
/// per submit, and two keep the leader's pipeline busy (64 submitters:
/// 25.1-26.3k submits/s against 23.5-24.6k with four, in alternating runs;
/// one call at a time was no better).
const IN_FLIGHT: usize = 2;
/// A shared call stops growing past this many bytes (estimated), under the
/// server's 4 MiB message limit.
const CALL_MAX_BYTES: usize = 3 * 1024 * 1024;

type Outcome = Result<SubmitTaskResponse, ClientError>;
type Pending = crate::gather::Pending<SubmitTaskRequest, Outcome>;

/// The handle submits go through: see the module docs.
pub(super) type Batcher = Gather<SubmitTaskRequest, Outcome>;

/// Starts the task that sends the submits. It holds the client weakly,
/// and ends when the client is dropped.
pub(super) fn start(inner: Weak<Inner>) -> Batcher {
    let limits = Limits {
        in_flight: IN_FLIGHT,
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
                    send(&Client { inner }, batch).await;
                }
            }
        },
    )
}

/// Roughly the encoded size of a submit.
pub(super) fn estimated_bytes(req: &SubmitTaskRequest) -> usize {
    256 + req.task.as_ref().map_or(0, |t| {
        t.payload.len() + t.command.iter().map(String::len).sum::<usize>()
    })
}

async fn send(client: &Client, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one submit");
        let _ = p.done.send(client.submit_alone(p.item).await);
        return;
    }
    let (submits, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.done)).unzip();
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
