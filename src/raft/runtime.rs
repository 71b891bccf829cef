//! The async runtime openraft runs on: openraft's Tokio runtime, with two
//! changes that make a run on one thread a function of a seed, as the
//! deterministic simulation (`tests/sim.rs`) needs:
//!
//! - openraft's random draws (election timeouts, the phase of the first
//!   tick) come from [`seed_thread_rng`]'s seed once a thread has one. A
//!   node never sets a seed: its draws come from entropy, as with openraft's
//!   own runtime. openraft's `DeterministicRng` would seed them too, but it
//!   panics outside its task-local scope, which makes it unfit for a node.
//! - watch channels wake their waiters in the order they began to wait
//!   (`FifoWatch`, in `runtime/watch.rs`), where tokio's wake them in a
//!   random order.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::time::Duration;

use openraft::async_runtime::{Mpsc, Select2, Select3, Select4, TryRecvError};
use openraft::{AsyncRuntime, OptionalSend};
use openraft_rt_tokio::TokioRuntime;
use rand_0_10::rngs::SmallRng;
use rand_0_10::SeedableRng;

pub(crate) mod watch;

thread_local! {
    /// The seed of this thread's next draw, once a simulation has set one.
    static NEXT_SEED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// From now on, openraft's random draws on this thread are a function of
/// `seed` and of how many draws came before. Only the simulation calls it.
pub fn seed_thread_rng(seed: u64) {
    NEXT_SEED.with(|s| s.set(Some(seed)));
}

/// A bijective mix (SplitMix64's finaliser): consecutive draws get unrelated
/// seeds, not the overlapping streams of seeds one apart.
fn mix(seed: u64) -> u64 {
    let z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// openraft's Tokio runtime with a seedable `thread_rng` and FIFO watch
/// channels. Everything else is forwarded unchanged.
#[derive(Debug)]
pub struct SeedableRuntime(TokioRuntime);

impl AsyncRuntime for SeedableRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;
    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = watch::FifoWatch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn select2<A, B>(
        a: A,
        b: B,
    ) -> impl Future<Output = Select2<A::Output, B::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
    {
        TokioRuntime::select2(a, b)
    }

    fn select3<A, B, C>(
        a: A,
        b: B,
        c: C,
    ) -> impl Future<Output = Select3<A::Output, B::Output, C::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
    {
        TokioRuntime::select3(a, b, c)
    }

    fn select4<A, B, C, D>(
        a: A,
        b: B,
        c: C,
        d: D,
    ) -> impl Future<Output = Select4<A::Output, B::Output, C::Output, D::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
        D: Future + OptionalSend,
    {
        TokioRuntime::select4(a, b, c, d)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    /// Seeded from the thread's simulation seed if one was set, from entropy
    /// otherwise.
    fn thread_rng() -> Self::ThreadLocalRng {
        let seeded = NEXT_SEED.with(|s| {
            let seed = s.get()?;
            s.set(Some(mix(seed)));
            Some(seed)
        });
        SmallRng::seed_from_u64(seeded.unwrap_or_else(rand::random))
    }

    fn new(threads: usize) -> Self {
        Self(TokioRuntime::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        TokioRuntime::spawn_blocking(f)
    }

    fn mpsc_recv_deadline<T: OptionalSend>(
        receiver: &mut <Self::Mpsc as Mpsc>::Receiver<T>,
        deadline: Self::Instant,
    ) -> impl Future<Output = Result<T, TryRecvError>> + OptionalSend {
        TokioRuntime::mpsc_recv_deadline(receiver, deadline)
    }
}

#[cfg(test)]
mod tests {
    use rand_0_10::RngExt;

    use super::*;

    fn draws() -> Vec<u64> {
        (0..4)
            .map(|_| SeedableRuntime::thread_rng().random_range(150..300))
            .collect()
    }

    #[test]
    fn a_seeded_thread_replays_its_draws_and_draws_differ() {
        seed_thread_rng(7);
        let first = draws();
        seed_thread_rng(7);
        assert_eq!(draws(), first);
        let distinct: std::collections::BTreeSet<_> = first.iter().collect();
        assert!(
            distinct.len() > 1,
            "consecutive draws must differ: {first:?}"
        );
    }

    #[test]
    fn an_unseeded_thread_draws_from_entropy() {
        std::thread::spawn(|| {
            let a: Vec<u64> = (0..8)
                .map(|_| SeedableRuntime::thread_rng().random())
                .collect();
            let b: Vec<u64> = (0..8)
                .map(|_| SeedableRuntime::thread_rng().random())
                .collect();
            assert_ne!(a, b);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_runtime_passes_openrafts_runtime_suite() {
        openraft_rt::testing::Suite::<SeedableRuntime>::test_all();
    }
}
