//! A watch channel that wakes its waiters in the order they began to wait,
//! for openraft's runtime.
//!
//! tokio's own watch spreads a channel's waiters over eight `Notify`s, each
//! picked with tokio's per-runtime random source, which stable tokio offers
//! no way to seed. openraft's replication streams (one per follower) wait on
//! the same watches, so with tokio's watch they wake in a different order in
//! every run, and a simulated run stops being a function of its seed. This
//! one is tokio's watch in behaviour (`send` fails with no receiver left,
//! `changed` reports an unseen value before a closed channel, a new
//! subscriber has seen the current value) over one `RwLock` and one `Notify`,
//! whose `notify_waiters` wakes first come, first served.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use openraft::async_runtime::watch::{RecvError, SendError, Watch, WatchReceiver, WatchSender};
use openraft::{OptionalSend, OptionalSync};
use tokio::sync::Notify;

pub struct FifoWatch;

struct Shared<T> {
    value: RwLock<T>,
    /// Bumped, under the write lock, by every change.
    version: AtomicU64,
    changed: Notify,
    senders: AtomicUsize,
    receivers: AtomicUsize,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, T> {
        self.value.read().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct FifoSender<T>(Arc<Shared<T>>);

pub struct FifoReceiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver has seen.
    seen: u64,
}

impl Watch for FifoWatch {
    type Sender<T: OptionalSend + OptionalSync> = FifoSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = FifoReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = RwLockReadGuard<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (FifoSender<T>, FifoReceiver<T>) {
        let shared = Arc::new(Shared {
            value: RwLock::new(init),
            version: AtomicU64::new(0),
            changed: Notify::new(),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        });
        let rx = FifoReceiver {
            shared: shared.clone(),
            seen: 0,
        };
        (FifoSender(shared), rx)
    }
}

impl<T> Clone for FifoSender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::SeqCst);
        Self(self.0.clone())
    }
}

impl<T> Drop for FifoSender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<FifoWatch, T> for FifoSender<T> {
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.0.receivers.load(Ordering::SeqCst) == 0 {
            return Err(SendError(value));
        }
        self.send_if_modified(|current| {
            *current = value;
            true
        });
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = {
            let mut value = self.0.value.write().unwrap_or_else(PoisonError::into_inner);
            let modified = modify(&mut value);
            if modified {
                self.0.version.fetch_add(1, Ordering::SeqCst);
            }
            modified
        };
        if modified {
            self.0.changed.notify_waiters();
        }
        modified
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.0.read()
    }

    fn subscribe(&self) -> FifoReceiver<T> {
        self.0.receivers.fetch_add(1, Ordering::SeqCst);
        let value = self.0.read();
        let seen = self.0.version.load(Ordering::SeqCst);
        drop(value);
        FifoReceiver {
            shared: self.0.clone(),
            seen,
        }
    }
}

impl<T> Clone for FifoReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::SeqCst);
        Self {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for FifoReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<FifoWatch, T> for FifoReceiver<T> {
    async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Registered before the checks, so that a send between the
            // checks and the wait still wakes this receiver.
            let notified = self.shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let version = self.shared.version.load(Ordering::SeqCst);
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.senders.load(Ordering::SeqCst) == 0 {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, T> {
        let value = self.shared.read();
        self.seen = self.shared.version.load(Ordering::SeqCst);
        value
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Waiters wake in the order they began to wait, every time.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn waiters_wake_first_come_first_served() {
        let (tx, rx) = FifoWatch::channel(0u64);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..16 {
            let mut rx = rx.clone();
            let order = order.clone();
            waiters.push(tokio::spawn(async move {
                rx.changed().await.unwrap();
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        tx.send(1).unwrap();
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_dropped_sender_closes_after_the_last_value_is_seen() {
        let (tx, mut rx) = FifoWatch::channel(0u64);
        tx.send(1).unwrap();
        drop(tx);
        assert!(rx.changed().await.is_ok());
        assert_eq!(*rx.borrow_watched(), 1);
        assert!(rx.changed().await.is_err());
    }
}
