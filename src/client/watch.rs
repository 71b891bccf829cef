//! Watches (`laneq.v1.Watch`) as streams that resume by themselves. A
//! stream that breaks (its node stops, the connection drops) is opened
//! again, on the next node that answers, from the last index it delivered,
//! so that a view never goes back and a task watch neither misses nor
//! repeats a transition. Opening goes through the client's retry loop: the
//! stream ends with an error only on a refusal, or when no node answers
//! within the client's deadline.

use std::future::Future;

use futures::Stream;
use tonic::{Code, Status, Streaming};

use super::{Client, ClientError, ReadConsistency};
use crate::proto::v1::watch_client::WatchClient;
use crate::proto::v1::*;

/// Where a watch has got to, and from where it resumes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Cursor {
    /// The index of the last event delivered.
    index: u64,
    /// How many delivered events carried `index` (task transitions: one
    /// log entry can apply several).
    at_index: usize,
    /// Events of `index` still to skip after a resume: delivered already.
    skip: usize,
}

impl Cursor {
    /// Counts an event at `index`; false for one delivered before a resume.
    pub(super) fn deliver(&mut self, index: u64) -> bool {
        if index == self.index && self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        self.skip = 0;
        if index == self.index {
            self.at_index += 1;
        } else {
            (self.index, self.at_index) = (index, 1);
        }
        true
    }

    /// The `from_index` that resumes a view watch: no older view.
    pub(super) fn view_resume(&self) -> u64 {
        self.index
    }

    /// The `from_index` that resumes a task watch: the transitions of the
    /// last index again (the break may have cut them), skipping those
    /// delivered.
    pub(super) fn transitions_resume(&mut self) -> u64 {
        self.skip = self.at_index;
        self.index.saturating_sub(1)
    }
}

/// Whether a watch that broke with `status` may be opened again: not after
/// a refusal, which would refuse again.
fn resumable(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::OutOfRange
    )
}

/// One kind of watch: how it opens, and the index of its events.
trait Kind: Send + 'static {
    type Event: Send + 'static;
    /// Whether its events are transitions (resumed with a skip) rather
    /// than views.
    const TRANSITIONS: bool;
    fn index(event: &Self::Event) -> u64;
    fn open(
        &self,
        client: &Client,
        from_index: u64,
    ) -> impl Future<Output = Result<Streaming<Self::Event>, ClientError>> + Send;
}

struct Resuming<K: Kind> {
    client: Client,
    kind: K,
    cursor: Cursor,
    stream: Option<Streaming<K::Event>>,
    /// The cursor has delivered nothing yet: open from the caller's index.
    from_index: u64,
    done: bool,
}

impl<K: Kind> Resuming<K> {
    async fn next(&mut self) -> Option<Result<K::Event, ClientError>> {
        loop {
            if self.done {
                return None;
            }
            if self.stream.is_none() {
                let from = self.resume_from();
                match self.kind.open(&self.client, from).await {
                    Ok(s) => self.stream = Some(s),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            let stream = self.stream.as_mut().expect("opened above");
            match stream.message().await {
                Ok(Some(event)) => {
                    if self.cursor.deliver(K::index(&event)) {
                        return Some(Ok(event));
                    }
                }
                Ok(None) => self.done = true,
                Err(status) if resumable(&status) => {
                    tracing::debug!(error = %status, "watch broke; resuming");
                    self.stream = None;
                    self.client.skip_preferred();
                }
                Err(status) => {
                    self.done = true;
                    return Some(Err(ClientError::Status(status)));
                }
            }
        }
    }

    fn resume_from(&mut self) -> u64 {
        if self.cursor == Cursor::default() {
            return self.from_index;
        }
        match K::TRANSITIONS {
            true => self.cursor.transitions_resume(),
            false => self.cursor.view_resume(),
        }
    }
}

fn resuming<K: Kind>(
    client: &Client,
    kind: K,
    from_index: u64,
) -> impl Stream<Item = Result<K::Event, ClientError>> + Send + 'static
where
    Resuming<K>: Send,
{
    let state = Resuming {
        client: client.clone(),
        kind,
        cursor: Cursor::default(),
        stream: None,
        from_index,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    })
}

macro_rules! kind {
    ($name:ident, $req:ident, $event:ident, $call:ident, $transitions:expr) => {
        struct $name($req);

        impl Kind for $name {
            type Event = $event;
            const TRANSITIONS: bool = $transitions;

            fn index(event: &$event) -> u64 {
                event.index
            }

            async fn open(
                &self,
                client: &Client,
                from_index: u64,
            ) -> Result<Streaming<$event>, ClientError> {
                let req = $req {
                    from_index,
                    ..self.0.clone()
                };
                client.unary(req, WatchClient::$call).await
            }
        }
    };
}

kind!(QueueKind, WatchQueueRequest, QueueEvent, watch_queue, false);
kind!(
    QueuesKind,
    WatchQueuesRequest,
    QueuesEvent,
    watch_queues,
    false
);
kind!(TaskKind, WatchTaskRequest, TaskEvent, watch_task, true);
kind!(
    WorkersKind,
    WatchWorkersRequest,
    WorkersEvent,
    watch_workers,
    false
);

impl Client {
    /// A queue's live figures whenever they change (at most every 200 ms);
    /// ends after the queue is deleted. `from_index`: 0, or the last index
    /// seen, to see no older view.
    pub fn watch_queue(
        &self,
        name: &str,
        from_index: u64,
        c: ReadConsistency,
    ) -> impl Stream<Item = Result<QueueEvent, ClientError>> + Send + 'static {
        let req = WatchQueueRequest {
            name: name.to_string(),
            from_index,
            consistency: c.proto(),
        };
        resuming(self, QueueKind(req), from_index)
    }

    /// Every queue: all of them first (and again after a resume, `full`),
    /// then those that change.
    pub fn watch_queues(
        &self,
        from_index: u64,
        c: ReadConsistency,
    ) -> impl Stream<Item = Result<QueuesEvent, ClientError>> + Send + 'static {
        let req = WatchQueuesRequest {
            from_index,
            consistency: c.proto(),
        };
        resuming(self, QueuesKind(req), from_index)
    }

    /// Each transition of a task, in order, those applied after
    /// `from_index` (0: the whole timeline); ends after the terminal one.
    pub fn watch_task(
        &self,
        id: u64,
        from_index: u64,
        c: ReadConsistency,
    ) -> impl Stream<Item = Result<TaskEvent, ClientError>> + Send + 'static {
        let req = WatchTaskRequest {
            id,
            from_index,
            consistency: c.proto(),
        };
        resuming(self, TaskKind(req), from_index)
    }

    /// Every worker: all of them first (and again after a resume), then
    /// registrations, state changes, held tasks and usage as they change.
    pub fn watch_workers(
        &self,
        from_index: u64,
        c: ReadConsistency,
    ) -> impl Stream<Item = Result<WorkersEvent, ClientError>> + Send + 'static {
        let req = WatchWorkersRequest {
            from_index,
            consistency: c.proto(),
        };
        resuming(self, WorkersKind(req), from_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two transitions at index 7, a break after the first: the resume asks
    /// from 6 and skips the one delivered.
    #[test]
    fn a_task_watch_resumes_without_a_gap_or_a_repeat() {
        let mut c = Cursor::default();
        assert!(c.deliver(5));
        assert!(c.deliver(7));
        assert_eq!(c.transitions_resume(), 6);
        assert!(!c.deliver(7), "delivered before the break");
        assert!(c.deliver(7), "the second transition of entry 7");
        assert!(c.deliver(9));
        assert_eq!(c.transitions_resume(), 8);
        assert!(c.deliver(10), "nothing more at 9");
        assert_eq!(c.transitions_resume(), 9);
        assert!(!c.deliver(10));
    }

    #[test]
    fn a_view_watch_resumes_at_its_last_index() {
        let mut c = Cursor::default();
        assert!(c.deliver(3) && c.deliver(3) && c.deliver(8));
        assert_eq!(c.view_resume(), 8);
        assert!(c.deliver(8), "a view again after a resume is delivered");
    }

    #[test]
    fn refusals_end_a_watch_and_breaks_resume_it() {
        assert!(resumable(&Status::unavailable("node stopping")));
        assert!(resumable(&Status::unknown("transport error")));
        assert!(resumable(&Status::internal("h2 protocol error")));
        assert!(!resumable(&Status::not_found("no task 9")));
        assert!(!resumable(&Status::resource_exhausted("too many")));
    }
}
