//! Natural batching, shared by the leader's write coalescer
//! (`raft::coalesce`) and the client's submit batcher (`client::batch`).
//!
//! At most `in_flight` sends run at once. An item that finds a free slot
//! and nobody waiting is sent by its caller at once, alone ([`Gather::free_slot`]).
//! Otherwise it waits in a queue; one task takes the first waiting item as
//! soon as a slot frees, adds every item waiting then (up to a count and an
//! estimated size), and hands them to the send function as one batch. Under
//! load, batches grow by themselves; at low load nothing waits for company.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// One waiting item and where its outcome goes.
pub struct Pending<T, O> {
    pub item: T,
    pub bytes: usize,
    pub done: oneshot::Sender<O>,
}

/// How batches are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sends running at once.
    pub in_flight: usize,
    /// Most items in one batch.
    pub max_items: usize,
    /// A batch stops growing once its estimated size reaches this.
    pub max_bytes: usize,
}

pub struct Gather<T, O> {
    tx: mpsc::UnboundedSender<Pending<T, O>>,
    slots: Arc<Semaphore>,
    /// Items queued and not yet taken into a batch.
    waiting: Arc<AtomicUsize>,
}

impl<T: Send + 'static, O: Send + 'static> Gather<T, O> {
    /// Starts the gathering task. `alone` marks items that must be sent in
    /// a batch of their own; `send` sends a batch and answers every item of
    /// it. The task ends when the handle is dropped.
    pub fn start<F, Fut>(limits: Limits, alone: fn(&T) -> bool, send: F) -> Self
    where
        F: Fn(Vec<Pending<T, O>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(limits.in_flight));
        let waiting = Arc::new(AtomicUsize::new(0));
        tokio::spawn(gather(
            rx,
            limits,
            alone,
            send,
            slots.clone(),
            waiting.clone(),
        ));
        Self { tx, slots, waiting }
    }

    /// A free slot when no item is waiting: the caller then sends its item
    /// alone, at once, holding the slot while it does.
    pub fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.waiting.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Queues `item` to go out in the next batch, and waits for its
    /// outcome. `None` when the gathering task is gone (its runtime shut
    /// down) or dropped the item unanswered.
    pub async fn submit(&self, item: T, bytes: usize) -> Option<O> {
        let (done, rx) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Pending { item, bytes, done }).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        rx.await.ok()
    }
}

async fn gather<T, O, F, Fut>(
    mut rx: mpsc::UnboundedReceiver<Pending<T, O>>,
    limits: Limits,
    alone: fn(&T) -> bool,
    send: F,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
) where
    T: Send + 'static,
    O: Send + 'static,
    F: Fn(Vec<Pending<T, O>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut carried: Option<Pending<T, O>> = None;
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
        while !alone(&batch[0].item) && batch.len() < limits.max_items && bytes < limits.max_bytes {
            match rx.try_recv() {
                Ok(p) if alone(&p.item) => {
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
        let sending = send(batch);
        tokio::spawn(async move {
            sending.await;
            drop(slot);
        });
    }
}
