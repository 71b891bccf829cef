//! The node's registry of worker log streams: which workers have their
//! `ServeLogs` stream open to this node, and which asks wait for their
//! chunks. An ask is a bounded channel from the worker's stream to one
//! `TaskLogs` caller; dropping the caller's end (it went away) drops the
//! ask and tells the worker to stop sending.
//!
//! **Architecture Invariant:** nothing here is written to the log or to
//! storage; a chunk passes through memory only, and at most
//! [`ASK_QUEUE`] chunks wait per ask.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::proto::v1::{LogAsk, LogUpload};

/// Most asks one worker's stream serves at once.
pub const ASKS_PER_WORKER_MAX: usize = 16;
/// Most asks a node relays at once, for all workers and peers together.
pub const ASKS_PER_NODE_MAX: usize = 256;
/// Chunks buffered per ask between the worker's stream and its caller.
pub const ASK_QUEUE: usize = 4;
/// How long a chunk waits for a caller that does not read before its ask
/// is dropped: one slow reader holds up the worker's other asks at most
/// this long.
pub const CHUNK_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A task log's bytes as the caller reads them.
pub type Chunks = Pin<Box<dyn Stream<Item = Result<Vec<u8>, Status>> + Send + 'static>>;

/// What a caller wants of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub worker: String,
    pub task: u64,
    pub attempt: u32,
    pub follow: bool,
    pub tail_lines: u64,
}

/// One piece of an answer.
enum Piece {
    Data(Vec<u8>),
    End,
    Error(String),
}

/// The workers connected here, shared by their streams and the asks.
#[derive(Default)]
struct Links {
    workers: HashMap<String, Link>,
    /// Numbers both connections and asks; never reused.
    next_id: u64,
}

/// One worker's open stream.
struct Link {
    /// Tells a stream that replaced this one from this one.
    conn: u64,
    /// Into the worker's stream of asks.
    asks: mpsc::Sender<LogAsk>,
    pending: HashMap<u64, mpsc::Sender<Piece>>,
}

pub struct LogHub {
    links: Arc<Mutex<Links>>,
    slots: Arc<Semaphore>,
}

impl Default for LogHub {
    fn default() -> Self {
        Self {
            links: Arc::default(),
            slots: Arc::new(Semaphore::new(ASKS_PER_NODE_MAX)),
        }
    }
}

impl LogHub {
    /// Takes one of the node's ask slots, or RESOURCE_EXHAUSTED.
    pub fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node relays at most {ASKS_PER_NODE_MAX} task logs at once; try later"
            ))
        })
    }

    /// Records `worker`'s new stream (replacing an older one); returns its
    /// connection number and the asks to send it.
    pub fn connect(&self, worker: &str) -> (u64, mpsc::Receiver<LogAsk>) {
        let (tx, rx) = mpsc::channel(ASKS_PER_WORKER_MAX * 2);
        let mut links = self.links.lock().expect("links poisoned");
        links.next_id += 1;
        let conn = links.next_id;
        let link = Link {
            conn,
            asks: tx,
            pending: HashMap::new(),
        };
        // An older stream's asks end: their senders drop with it.
        links.workers.insert(worker.to_string(), link);
        (conn, rx)
    }

    /// Forgets `worker`'s stream `conn` (not a newer one); its asks end
    /// with UNAVAILABLE.
    pub fn disconnect(&self, worker: &str, conn: u64) {
        let mut links = self.links.lock().expect("links poisoned");
        if links.workers.get(worker).is_some_and(|l| l.conn == conn) {
            links.workers.remove(worker);
        }
    }

    /// Hands an upload of `worker`'s stream `conn` to its ask.
    pub async fn deliver(&self, worker: &str, conn: u64, upload: LogUpload) {
        let last = upload.end || !upload.error.is_empty();
        let tx = {
            let mut links = self.links.lock().expect("links poisoned");
            let Some(link) = links.workers.get_mut(worker).filter(|l| l.conn == conn) else {
                return;
            };
            match last {
                true => link.pending.remove(&upload.ask_id),
                false => link.pending.get(&upload.ask_id).cloned(),
            }
        };
        // An ask already dropped: the worker has been told to cancel it.
        let Some(tx) = tx else { return };
        let piece = match (upload.error.is_empty(), upload.end) {
            (false, _) => Piece::Error(upload.error),
            (true, true) if upload.data.is_empty() => Piece::End,
            (true, _) => Piece::Data(upload.data),
        };
        let end = matches!(piece, Piece::Data(_)) && last;
        match tokio::time::timeout(CHUNK_SEND_TIMEOUT, tx.send(piece)).await {
            Ok(Ok(())) if end => {
                let _ = tx.send(Piece::End).await;
            }
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    worker,
                    ask = upload.ask_id,
                    "a task log's reader is stalled: dropped"
                );
                cancel(&self.links, worker, conn, upload.ask_id);
            }
        }
    }

    /// Sends `ask` to its worker when its stream is here: `None` when it is
    /// not, else the chunks as they come.
    pub fn ask(&self, ask: &Ask, slot: OwnedSemaphorePermit) -> Option<Result<Chunks, Status>> {
        let mut links = self.links.lock().expect("links poisoned");
        links.next_id += 1;
        let id = links.next_id;
        let link = links.workers.get_mut(&ask.worker)?;
        if link.pending.len() >= ASKS_PER_WORKER_MAX {
            return Some(Err(Status::resource_exhausted(format!(
                "worker {} serves at most {ASKS_PER_WORKER_MAX} task logs at once; try later",
                ask.worker
            ))));
        }
        let (tx, rx) = mpsc::channel(ASK_QUEUE);
        let sent = link.asks.try_send(LogAsk {
            ask_id: id,
            task: ask.task,
            attempt: ask.attempt,
            follow: ask.follow,
            tail_lines: ask.tail_lines,
            cancel: false,
        });
        if sent.is_err() {
            return Some(Err(Status::unavailable(format!(
                "worker {}'s log stream is not taking asks; try again",
                ask.worker
            ))));
        }
        link.pending.insert(id, tx);
        let guard = AskGuard {
            links: self.links.clone(),
            worker: ask.worker.clone(),
            conn: link.conn,
            id,
            _slot: slot,
        };
        Some(Ok(chunks(rx, guard)))
    }
}

/// Drops ask `id` and tells the worker to stop sending for it.
fn cancel(links: &Mutex<Links>, worker: &str, conn: u64, id: u64) {
    let mut links = links.lock().expect("links poisoned");
    let Some(link) = links.workers.get_mut(worker).filter(|l| l.conn == conn) else {
        return;
    };
    if link.pending.remove(&id).is_some() {
        let _ = link.asks.try_send(LogAsk {
            ask_id: id,
            cancel: true,
            ..Default::default()
        });
    }
}

/// Held by a caller's chunks: dropping them ends the ask.
struct AskGuard {
    links: Arc<Mutex<Links>>,
    worker: String,
    conn: u64,
    id: u64,
    _slot: OwnedSemaphorePermit,
}

impl Drop for AskGuard {
    fn drop(&mut self) {
        cancel(&self.links, &self.worker, self.conn, self.id);
    }
}

/// The caller's side of an ask: data until the end, an error chunk as
/// NOT_FOUND, and a worker stream that broke first as UNAVAILABLE.
fn chunks(rx: mpsc::Receiver<Piece>, guard: AskGuard) -> Chunks {
    let state = Some((rx, guard));
    Box::pin(futures::stream::unfold(state, |state| async move {
        let (mut rx, guard) = state?;
        match rx.recv().await {
            Some(Piece::Data(d)) => Some((Ok(d), Some((rx, guard)))),
            Some(Piece::End) => None,
            Some(Piece::Error(e)) => Some((Err(Status::not_found(e)), None)),
            None => {
                let e = format!(
                    "worker {}'s log stream broke while it sent this output; ask again",
                    guard.worker
                );
                Some((Err(Status::unavailable(e)), None))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn ask() -> Ask {
        Ask {
            worker: "w1".into(),
            task: 5,
            attempt: 1,
            follow: false,
            tail_lines: 0,
        }
    }

    fn upload(ask_id: u64, data: &[u8], end: bool) -> LogUpload {
        LogUpload {
            ask_id,
            data: data.to_vec(),
            end,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn an_ask_goes_to_its_worker_and_its_chunks_come_back() {
        let hub = LogHub::default();
        assert!(hub.ask(&ask(), hub.slot().unwrap()).is_none(), "no stream");
        let (conn, mut asks) = hub.connect("w1");
        let mut chunks = hub.ask(&ask(), hub.slot().unwrap()).unwrap().unwrap();
        let sent = asks.recv().await.unwrap();
        assert_eq!((sent.task, sent.attempt, sent.cancel), (5, 1, false));
        hub.deliver("w1", conn, upload(sent.ask_id, b"one\n", false))
            .await;
        hub.deliver("w1", conn, upload(sent.ask_id, b"two\n", true))
            .await;
        assert_eq!(chunks.next().await.unwrap().unwrap(), b"one\n");
        assert_eq!(chunks.next().await.unwrap().unwrap(), b"two\n");
        assert!(chunks.next().await.is_none());
        drop(chunks);
        assert!(asks.try_recv().is_err(), "an ended ask is not canceled");
    }

    #[tokio::test]
    async fn a_caller_that_goes_cancels_and_a_broken_stream_ends_its_asks() {
        let hub = LogHub::default();
        let (conn, mut asks) = hub.connect("w1");
        let chunks = hub.ask(&ask(), hub.slot().unwrap()).unwrap().unwrap();
        let id = asks.recv().await.unwrap().ask_id;
        drop(chunks);
        let cancel = asks.recv().await.unwrap();
        assert_eq!((cancel.ask_id, cancel.cancel), (id, true));

        let mut chunks = hub.ask(&ask(), hub.slot().unwrap()).unwrap().unwrap();
        hub.disconnect("w1", conn);
        let e = chunks.next().await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
        assert!(hub.ask(&ask(), hub.slot().unwrap()).is_none(), "gone");
    }

    #[tokio::test]
    async fn asks_are_bounded_per_worker() {
        let hub = LogHub::default();
        let (_conn, mut asks) = hub.connect("w1");
        let held: Vec<_> = (0..ASKS_PER_WORKER_MAX)
            .map(|_| hub.ask(&ask(), hub.slot().unwrap()).unwrap().unwrap())
            .collect();
        let e = match hub.ask(&ask(), hub.slot().unwrap()).unwrap() {
            Err(e) => e,
            Ok(_) => panic!("one ask past the limit was taken"),
        };
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        drop(held);
        // The worker reads its asks and their cancels.
        while asks.try_recv().is_ok() {}
        assert!(hub.ask(&ask(), hub.slot().unwrap()).unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_error_chunk_is_not_found() {
        let hub = LogHub::default();
        let (conn, mut asks) = hub.connect("w1");
        let mut chunks = hub.ask(&ask(), hub.slot().unwrap()).unwrap().unwrap();
        let id = asks.recv().await.unwrap().ask_id;
        let error = LogUpload {
            ask_id: id,
            error: "no output for task 5 attempt 1 on worker w1".into(),
            ..Default::default()
        };
        hub.deliver("w1", conn, error).await;
        let e = chunks.next().await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains("no output"), "{e}");
    }
}
