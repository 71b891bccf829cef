//! Natural batching, shared by the leader's write coalescer
//! (`raft::coalesce`) and the client's submit batcher (`client::batch`).
//!
//! At most `in_flight` sends run at once. An item that finds nothing in
//! flight and nobody waiting is sent by its caller at once, alone
//! ([`Gather::free_slot`]). Otherwise it waits in a queue, and one task
//! makes the batches: when a slot frees it lets the callers that are ready
//! queue their items first, then takes its share of everything waiting or
//! in flight (the whole divided by the slots, up to a count and an estimated
//! size) and hands it to the send function as one batch. Under load,
//! batches grow by themselves; at low load nothing waits for company.
//!
//! The share keeps batches even. Taking all that waits, or sending an item
//! alone whenever one slot is free, lets a closed loop of callers drift
//! into one large and one tiny batch: a small batch comes back first, goes
//! out small again, and costs a log entry, its fsyncs and its messages for
//! a few items (see bench/RESULTS.md, "Even batches").

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
    counts: Arc<Counts>,
    in_flight: usize,
}

/// What the handle and the gathering task both watch.
struct Counts {
    slots: Arc<Semaphore>,
    /// Items queued and not yet taken into a batch.
    waiting: AtomicUsize,
    /// Items in batches being sent, alone ones included.
    sending: AtomicUsize,
}

/// A slot held by a caller that sends its item alone; see
/// [`Gather::free_slot`]. Dropping it frees the slot.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    counts: Arc<Counts>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.sending.fetch_sub(1, Ordering::AcqRel);
    }
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
        let counts = Arc::new(Counts {
            slots: Arc::new(Semaphore::new(limits.in_flight)),
            waiting: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
        });
        tokio::spawn(gather(rx, limits, alone, send, counts.clone()));
        Self {
            tx,
            counts,
            in_flight: limits.in_flight,
        }
    }

    /// A slot when nothing is in flight and nobody waits: the caller then
    /// sends its item alone, at once, holding the slot while it does. When
    /// anything is in flight the item goes through the queue instead, so
    /// that the gathering task can keep batches even (see the module docs).
    pub fn free_slot(&self) -> Option<Slot> {
        let counts = &self.counts;
        if counts.waiting.load(Ordering::Acquire) > 0
            || counts.slots.available_permits() < self.in_flight
        {
            return None;
        }
        let permit = counts.slots.clone().try_acquire_owned().ok()?;
        counts.sending.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            _permit: permit,
            counts: counts.clone(),
        })
    }

    /// Queues `item` to go out in the next batch, and waits for its
    /// outcome. `None` when the gathering task is gone (its runtime shut
    /// down) or dropped the item unanswered.
    pub async fn submit(&self, item: T, bytes: usize) -> Option<O> {
        let (done, rx) = oneshot::channel();
        self.counts.waiting.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Pending { item, bytes, done }).is_err() {
            self.counts.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        rx.await.ok()
    }
}

/// The number of items the next batch takes: an even share of all that
/// waits or is in flight, spread over the slots, and at least one.
fn share(waiting: usize, sending: usize, slots: usize) -> usize {
    (waiting + sending).div_ceil(slots.max(1)).max(1)
}

/// Most times the gathering task gives way while items keep arriving.
const SETTLE_ROUNDS: usize = 8;

/// Waits for the callers that are ready to queue their items, then says how
/// many the next batch takes. The answer to a batch wakes all its callers
/// at once, and this task, woken by the first of them to queue again, would
/// otherwise run before the rest and send a batch of one. It gives way
/// until a turn brings no new item (at most [`SETTLE_ROUNDS`] turns: on a
/// runtime with several threads the others may still be running).
async fn settle(counts: &Counts, slots: usize) -> usize {
    let mut seen = counts.waiting.load(Ordering::Acquire);
    for _ in 0..SETTLE_ROUNDS {
        tokio::task::yield_now().await;
        let now = counts.waiting.load(Ordering::Acquire);
        if now == seen {
            break;
        }
        seen = now;
    }
    share(seen, counts.sending.load(Ordering::Acquire), slots)
}

async fn gather<T, O, F, Fut>(
    mut rx: mpsc::UnboundedReceiver<Pending<T, O>>,
    limits: Limits,
    alone: fn(&T) -> bool,
    send: F,
    counts: Arc<Counts>,
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
        let slot = counts
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let limit = if alone(&first.item) {
            1
        } else {
            settle(&counts, limits.in_flight)
                .await
                .min(limits.max_items)
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < limit && bytes < limits.max_bytes {
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
        let count = batch.len();
        counts.waiting.fetch_sub(count, Ordering::AcqRel);
        counts.sending.fetch_add(count, Ordering::AcqRel);
        let sending = send(batch);
        let counts = counts.clone();
        tokio::spawn(async move {
            sending.await;
            counts.sending.fetch_sub(count, Ordering::AcqRel);
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_spreads_everything_over_the_slots() {
        assert_eq!(share(63, 1, 2), 32, "63 waiting beside a batch of one");
        assert_eq!(share(31, 33, 2), 32);
        assert_eq!(
            share(1, 63, 2),
            32,
            "the batch then takes the one that waits"
        );
        assert_eq!(share(1, 0, 2), 1);
        assert_eq!(share(0, 0, 2), 1, "never nothing");
        assert_eq!(share(64, 0, 4), 16);
    }

    /// A closed loop of 64 callers, each sending its next item as soon as
    /// the last is answered, the way the client's submitters do: the first
    /// goes alone, and from then on the two slots carry even batches (it
    /// drifted to batches of 63 and 1 before shares).
    #[tokio::test(start_paused = true)]
    async fn a_closed_loop_of_callers_keeps_its_batches_even() {
        const CALLERS: usize = 64;
        const ROUNDS: usize = 20;
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let limits = Limits {
            in_flight: 2,
            max_items: 1000,
            max_bytes: usize::MAX,
        };
        let recorded = sizes.clone();
        let gather = Arc::new(Gather::start(
            limits,
            |_: &u32| false,
            move |batch: Vec<Pending<u32, u32>>| {
                recorded.lock().unwrap().push(batch.len());
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    for p in batch {
                        let _ = p.done.send(p.item);
                    }
                }
            },
        ));
        let alone = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for c in 0..CALLERS as u32 {
            let (gather, alone) = (gather.clone(), alone.clone());
            callers.push(tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    if let Some(_slot) = gather.free_slot() {
                        alone.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        continue;
                    }
                    assert_eq!(gather.submit(c, 1).await, Some(c));
                }
            }));
        }
        for c in callers {
            c.await.unwrap();
        }
        let sizes = sizes.lock().unwrap();
        let sent: usize = sizes.iter().sum::<usize>() + alone.load(Ordering::Relaxed);
        assert_eq!(sent, CALLERS * ROUNDS, "every item went once");
        // All but the last few, sent while the callers finish one by one.
        let steady = &sizes[..CALLERS * ROUNDS / (CALLERS / 2) - 2];
        assert!(
            steady.iter().all(|&n| n == CALLERS / 2),
            "uneven batches: {sizes:?}"
        );
    }
}
