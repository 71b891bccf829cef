//! The loop every watch runs: look at the applied state, send what the look
//! found, wait for the next apply, and look again no sooner than the watch's
//! pace, so that the changes in between are coalesced into one look.
//!
//! A watch is a stream that tonic polls only when the watcher's connection
//! has room, so a watcher that stops reading stops being polled: nothing
//! piles up for it here, and apply never waits for it (apply only wakes the
//! watches that wait for a change). When it reads again, its next look sees
//! the latest state: a view skips forward, and a task's transitions come
//! from its timeline. A look runs under the state's read lock and never
//! across an await.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use futures::Stream;
use tokio::time::Instant;
use tonic::Status;

use crate::model::State;

/// Where a watch reads: a node's applied state.
pub trait Source: Send + 'static {
    /// Runs `f` on the state and the index of the last entry applied to it,
    /// under the state's read lock.
    fn read<T>(&mut self, f: impl FnOnce(u64, &State) -> T) -> T;

    /// Waits for an apply after the last read; `false` once the node stops.
    fn changed(&mut self) -> impl Future<Output = bool> + Send;
}

/// What one look found.
#[derive(Debug)]
pub enum Look<E> {
    /// Nothing worth sending.
    Same,
    Send(Vec<E>),
    /// Send these, then end the stream (OK).
    Last(Vec<E>),
    /// End the stream with this status.
    Fail(Status),
}

/// One kind of watch: what it sends for a state.
pub trait Watcher: Send + 'static {
    type Event: Send + 'static;

    /// Looks at the state at applied index `index`. Pure and quick: it runs
    /// under the read lock that apply waits for.
    fn look(&mut self, index: u64, state: &State) -> Look<Self::Event>;
}

/// A watch as a stream. It looks at once, then after each apply, but no
/// sooner than `pace` after its last look; and not before the node has
/// applied `from_index` (a watch resumed on a node that is behind never
/// goes back in time). `guard` is held as long as the stream (a slot of the
/// node's watcher limit).
pub fn follow<S: Source, W: Watcher, G: Send + 'static>(
    source: S,
    watcher: W,
    pace: Duration,
    from_index: u64,
    guard: G,
) -> impl Stream<Item = Result<W::Event, Status>> + Send + 'static {
    let follow = Follow {
        source,
        watcher,
        pace,
        from_index,
        pending: VecDeque::new(),
        end: None,
        done: false,
        last_look: None,
        _guard: guard,
    };
    futures::stream::unfold(follow, |mut f| async move {
        let item = f.next().await?;
        Some((item, f))
    })
}

struct Follow<S, W: Watcher, G> {
    source: S,
    watcher: W,
    pace: Duration,
    from_index: u64,
    /// Events of the last look not yet taken by the stream's reader.
    pending: VecDeque<W::Event>,
    /// How the stream ends once `pending` is empty.
    end: Option<Result<(), Status>>,
    done: bool,
    last_look: Option<Instant>,
    _guard: G,
}

impl<S: Source, W: Watcher, G: Send + 'static> Follow<S, W, G> {
    async fn next(&mut self) -> Option<Result<W::Event, Status>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Some(end) = self.end.take() {
                self.done = true;
                return end.err().map(Err);
            }
            if let Some(last) = self.last_look {
                if !self.source.changed().await {
                    self.done = true;
                    return Some(Err(Status::unavailable(
                        "the node is stopping: watch again on another node from the last index",
                    )));
                }
                tokio::time::sleep_until(last + self.pace).await;
            }
            self.last_look = Some(Instant::now());
            let (from_index, watcher) = (self.from_index, &mut self.watcher);
            let look = self.source.read(|index, state| {
                if index < from_index {
                    Look::Same
                } else {
                    watcher.look(index, state)
                }
            });
            match look {
                Look::Same => {}
                Look::Send(events) => self.pending.extend(events),
                Look::Last(events) => {
                    self.pending.extend(events);
                    self.end = Some(Ok(()));
                }
                Look::Fail(status) => self.end = Some(Err(status)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::sync::watch;

    use super::*;

    /// A state published by hand, at an index of the test's choosing.
    struct Fake(watch::Receiver<(u64, u64)>);

    impl Source for Fake {
        fn read<T>(&mut self, f: impl FnOnce(u64, &State) -> T) -> T {
            let (index, _) = *self.0.borrow_and_update();
            f(index, &State::new())
        }

        async fn changed(&mut self) -> bool {
            self.0.changed().await.is_ok()
        }
    }

    /// Sends the value published with the index whenever it changes; ends
    /// at 100 and fails at 99. (`Fake` publishes the value beside the
    /// index; the watcher reads it back through this shared cell.)
    struct Values {
        rx: watch::Receiver<(u64, u64)>,
        last: Option<u64>,
    }

    impl Watcher for Values {
        type Event = (u64, u64);

        fn look(&mut self, index: u64, _: &State) -> Look<(u64, u64)> {
            let value = self.rx.borrow().1;
            if self.last == Some(value) {
                return Look::Same;
            }
            self.last = Some(value);
            match value {
                99 => Look::Fail(Status::not_found("gone")),
                100 => Look::Last(vec![(index, value)]),
                _ => Look::Send(vec![(index, value)]),
            }
        }
    }

    const PACE: Duration = Duration::from_millis(200);

    type Events = std::pin::Pin<Box<dyn Stream<Item = Result<(u64, u64), Status>>>>;

    fn watch(from_index: u64) -> (watch::Sender<(u64, u64)>, Events) {
        let (tx, rx) = watch::channel((1, 0));
        let values = Values {
            rx: rx.clone(),
            last: None,
        };
        (tx, Box::pin(follow(Fake(rx), values, PACE, from_index, ())))
    }

    /// Whether the stream yields nothing for a second (paused time).
    async fn quiet<T: std::fmt::Debug>(s: &mut (impl Stream<Item = T> + Unpin)) -> bool {
        tokio::time::timeout(Duration::from_secs(1), s.next())
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn changes_within_the_pace_make_one_event_with_the_latest() {
        let (tx, s) = watch(0);
        let mut s = std::pin::pin!(s);
        let start = Instant::now();
        assert_eq!(s.next().await.unwrap().unwrap(), (1, 0));
        for i in 2..7 {
            tx.send((i, i * 10)).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(s.next().await.unwrap().unwrap(), (6, 60));
        assert!(start.elapsed() >= PACE, "{:?}", start.elapsed());
        assert!(quiet(&mut s).await, "one event for five changes");
    }

    #[tokio::test(start_paused = true)]
    async fn an_apply_that_changes_nothing_sends_nothing() {
        let (tx, s) = watch(0);
        let mut s = std::pin::pin!(s);
        assert_eq!(s.next().await.unwrap().unwrap(), (1, 0));
        tx.send((2, 0)).unwrap();
        assert!(quiet(&mut s).await);
        tx.send((3, 7)).unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), (3, 7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_falls_behind_gets_the_latest_only() {
        let (tx, s) = watch(0);
        let mut s = std::pin::pin!(s);
        assert_eq!(s.next().await.unwrap().unwrap(), (1, 0));
        for i in 2..50 {
            tx.send((i, i)).unwrap();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(s.next().await.unwrap().unwrap(), (49, 49));
        assert!(quiet(&mut s).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resumed_watch_waits_for_its_index() {
        let (tx, s) = watch(5);
        let mut s = std::pin::pin!(s);
        assert!(quiet(&mut s).await, "the node is at 1, behind 5");
        tx.send((4, 40)).unwrap();
        assert!(quiet(&mut s).await, "still behind");
        tx.send((5, 40)).unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), (5, 40));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_ends_after_its_last_event_or_its_failure() {
        let (tx, s) = watch(0);
        let mut s = std::pin::pin!(s);
        assert_eq!(s.next().await.unwrap().unwrap(), (1, 0));
        tx.send((2, 100)).unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), (2, 100));
        assert!(s.next().await.is_none());

        let (tx, s) = watch(0);
        let mut s = std::pin::pin!(s);
        s.next().await.unwrap().unwrap();
        tx.send((2, 99)).unwrap();
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(s.next().await.is_none());

        let (tx, s) = watch(0);
        let mut s = std::pin::pin!(s);
        s.next().await.unwrap().unwrap();
        drop(tx);
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "the node stops");
        assert!(s.next().await.is_none());
    }
}
