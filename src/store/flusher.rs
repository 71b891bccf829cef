//! Group commit for log appends: one thread fsyncs the write-ahead log once
//! for every append queued since its last fsync, then completes their
//! callbacks in the order the appends were made. A store that does its IO
//! inline (the simulation's) gets no thread: each append syncs and completes
//! its callback at once, in the caller.

use std::io;
use std::sync::{mpsc, Arc};
use std::thread;

use super::Store;

type Callback = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Hands append callbacks to the flusher thread. Dropping the last clone
/// stops the thread and waits for it, so that its handle on the database is
/// gone when the drop returns: a RocksDB still open in a detached thread
/// when the process exits aborts it ("pthread lock: Invalid argument").
#[derive(Clone)]
pub struct Flusher {
    inner: Arc<Inner>,
}

enum Inner {
    Thread {
        tx: Option<mpsc::Sender<Callback>>,
        thread: Option<thread::JoinHandle<()>>,
    },
    /// The store does its IO inline (see `StoreOptions::inline_io`).
    Inline(Store),
}

impl Flusher {
    pub fn start(store: Store) -> Self {
        if store.options().inline_io {
            return Self {
                inner: Arc::new(Inner::Inline(store)),
            };
        }
        let (tx, rx) = mpsc::channel::<Callback>();
        let handle = thread::Builder::new()
            .name("laneq-flusher".into())
            .spawn(move || run(store, rx))
            .expect("spawn the flusher thread");
        Self {
            inner: Arc::new(Inner::Thread {
                tx: Some(tx),
                thread: Some(handle),
            }),
        }
    }

    /// Queues `done` to run once everything written before this call is
    /// durable. Callbacks run in the order they were queued.
    pub fn after_sync(&self, done: impl FnOnce(io::Result<()>) + Send + 'static) {
        let done: Callback = Box::new(done);
        let sent = match &*self.inner {
            Inner::Inline(store) => return done(synced(store)),
            Inner::Thread { tx: Some(tx), .. } => {
                tx.send(done).map_err(|mpsc::SendError(done)| done)
            }
            Inner::Thread { tx: None, .. } => Err(done),
        };
        if let Err(done) = sent {
            done(Err(io::Error::other("the log flusher has stopped")));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Inner::Thread { tx, thread } = self else {
            return;
        };
        drop(tx.take());
        if let Some(handle) = thread.take() {
            // A callback run by the flusher itself may drop the last clone;
            // the thread then ends on its own once it returns.
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn run(store: Store, rx: mpsc::Receiver<Callback>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = synced(&store);
        for done in group {
            done(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

/// Syncs the store, logging a failure: it stops the node.
fn synced(store: &Store) -> io::Result<()> {
    let result = store.sync();
    if let Err(e) = &result {
        tracing::error!(error = %e, "fsync of the log failed; the node must stop");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping the last handle waits for the thread, so its handle on the
    /// database is gone when the drop returns: a RocksDB left open in a
    /// detached thread aborted the test binary at exit once.
    #[test]
    fn the_last_drop_joins_the_thread_and_releases_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let flusher = Flusher::start(store.clone());
        let (tx, rx) = mpsc::channel();
        flusher.after_sync(move |r| tx.send(r.is_ok()).unwrap());
        assert!(rx.recv().unwrap(), "the sync succeeded");
        let clone = flusher.clone();
        drop(flusher);
        assert_eq!(store.handles(), 2, "a clone keeps the thread running");
        drop(clone);
        assert_eq!(store.handles(), 1, "only this test's handle is left");
    }
}
