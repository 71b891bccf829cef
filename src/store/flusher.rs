//! Group commit for log appends: one thread fsyncs the write-ahead log once
//! for every append queued since its last fsync, then completes their
//! callbacks in the order the appends were made.

use std::io;
use std::sync::mpsc;
use std::thread;

use super::Store;

type Callback = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Hands append callbacks to the flusher thread. Dropping every clone stops it.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Callback>,
}

impl Flusher {
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel::<Callback>();
        thread::Builder::new()
            .name("laneq-flusher".into())
            .spawn(move || run(store, rx))
            .expect("spawn the flusher thread");
        Self { tx }
    }

    /// Queues `done` to run once everything written before this call is
    /// durable. Callbacks run in the order they were queued.
    pub fn after_sync(&self, done: impl FnOnce(io::Result<()>) + Send + 'static) {
        if let Err(mpsc::SendError(done)) = self.tx.send(Box::new(done)) {
            done(Err(io::Error::other("the log flusher has stopped")));
        }
    }
}

fn run(store: Store, rx: mpsc::Receiver<Callback>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = store.sync();
        if let Err(e) = &result {
            tracing::error!(error = %e, "fsync of the log failed; the node must stop");
        }
        for done in group {
            done(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}
