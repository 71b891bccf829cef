//! Group commit for log appends: one thread fsyncs the write-ahead log once
//! for every append queued since its last fsync, then completes their
//! callbacks in the order the appends were made. An append that finds the
//! thread with nothing queued may sync on its own thread instead
//! ([`Flusher::sync_here_if_idle`]). A store that does its IO
//! inline (the simulation's) gets no thread: each append syncs and completes
//! its callback at once, in the caller.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
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
        store: Store,
        /// Callbacks handed to the thread and not yet run.
        queued: Arc<AtomicUsize>,
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
        let queued = Arc::new(AtomicUsize::new(0));
        let handle = {
            let (store, queued) = (store.clone(), queued.clone());
            thread::Builder::new()
                .name("laneq-flusher".into())
                .spawn(move || run(store, rx, &queued))
                .expect("spawn the flusher thread")
        };
        Self {
            inner: Arc::new(Inner::Thread {
                tx: Some(tx),
                thread: Some(handle),
                store,
                queued,
            }),
        }
    }

    /// Like [`Flusher::after_sync`], but when the thread has nothing queued
    /// the caller syncs and runs `done` itself, sparing the two thread
    /// wake-ups of a hand-off (see bench/RESULTS.md, "Followers sync on
    /// their own thread").
    /// Order is kept: nothing queued before this call is still waiting.
    /// For a follower's appends, whose fsync is on the path of every write:
    /// the caller's thread is blocked meanwhile, which a follower, with no
    /// client writes to take in, can afford.
    pub fn sync_here_if_idle(&self, done: impl FnOnce(io::Result<()>) + Send + 'static) {
        match &*self.inner {
            Inner::Thread {
                tx: Some(_),
                store,
                queued,
                ..
            } if queued.load(Ordering::Acquire) == 0 => done(synced(store)),
            _ => self.after_sync(done),
        }
    }

    /// Queues `done` to run once everything written before this call is
    /// durable. Callbacks run in the order they were queued.
    pub fn after_sync(&self, done: impl FnOnce(io::Result<()>) + Send + 'static) {
        let done: Callback = Box::new(done);
        let sent = match &*self.inner {
            Inner::Inline(store) => return done(synced(store)),
            Inner::Thread {
                tx: Some(tx),
                queued,
                ..
            } => {
                queued.fetch_add(1, Ordering::AcqRel);
                tx.send(done).map_err(|mpsc::SendError(done)| {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    done
                })
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
        let Inner::Thread { tx, thread, .. } = self else {
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

fn run(store: Store, rx: mpsc::Receiver<Callback>, queued: &AtomicUsize) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = synced(&store);
        let count = group.len();
        for done in group {
            done(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
        // After the callbacks: a caller that finds nothing queued may sync
        // and complete its own only once these have run.
        queued.fetch_sub(count, Ordering::AcqRel);
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

    /// A sync asked for while the thread has nothing queued runs on the
    /// caller's thread before the call returns; one asked for while a
    /// callback is still queued waits for it, so callbacks keep their order.
    #[test]
    fn a_sync_here_runs_inline_only_when_nothing_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let flusher = Flusher::start(store);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = |n: u32| {
            let order = order.clone();
            move |r: io::Result<()>| {
                assert!(r.is_ok());
                order.lock().unwrap().push((n, thread::current().id()));
            }
        };
        let here = thread::current().id();
        flusher.sync_here_if_idle(log(1));
        assert_eq!(*order.lock().unwrap(), vec![(1, here)], "ran inline");

        // Hold the thread in a callback; the next sync must queue behind it.
        let (release, held) = mpsc::channel::<()>();
        let (entered, wait_entered) = mpsc::channel::<()>();
        let first = log(2);
        flusher.after_sync(move |r| {
            entered.send(()).unwrap();
            held.recv().unwrap();
            first(r);
        });
        wait_entered.recv().unwrap();
        flusher.sync_here_if_idle(log(3));
        assert_eq!(order.lock().unwrap().len(), 1, "queued, not run inline");
        release.send(()).unwrap();
        drop(flusher);
        let order = order.lock().unwrap();
        let seen: Vec<u32> = order.iter().map(|(n, _)| *n).collect();
        assert_eq!(seen, vec![1, 2, 3]);
        assert!(
            order[1..].iter().all(|(_, t)| *t != here),
            "ran on the flusher"
        );
    }

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
        // This test's handle, the thread's, and the one for syncs inline.
        assert_eq!(store.handles(), 3, "a clone keeps the thread running");
        drop(clone);
        assert_eq!(store.handles(), 1, "only this test's handle is left");
    }
}
