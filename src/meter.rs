//! The instruments that storage and Raft record into while they work:
//! durations of fsyncs, applies and snapshots, and counts of proposals.
//! `observe` registers them and exports them at `/metrics`.
//!
//! They are process-wide statics, because a node is one process and the
//! code that records (the flusher thread, the state machine, the write
//! coalescer) is built far from the HTTP server that reads them; passing a
//! handle down would touch every constructor for a few increments. A process
//! that runs several nodes (the simulation) sums them, and exports nothing.
//!
//! Recording is cheap (an atomic add, or a short lock on a histogram's
//! buckets) and never fails.
//!
//! **Architecture Invariant:** a leaf: it imports no other laneq module, so
//! that `store` and `raft` can record here without knowing `observe`.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Buckets, in seconds, for work that takes from a few microseconds
/// (an fsync on a fast disk, a small apply) to seconds.
pub const SHORT_SECONDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];
/// Buckets, in seconds, for snapshots: from milliseconds (a small state) to
/// minutes (millions of tasks).
pub const LONG_SECONDS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

fn histogram(buckets: &[f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

/// Each sync of the write-ahead log (`Store::sync`): the group commit's
/// fsync, which every acknowledged append waits for.
pub static WAL_FSYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| histogram(&SHORT_SECONDS));
/// Each apply of a run of committed entries: the model, the digest and the
/// one RocksDB batch.
pub static APPLY_SECONDS: LazyLock<Histogram> = LazyLock::new(|| histogram(&SHORT_SECONDS));
/// Entries applied.
pub static APPLIED_ENTRIES: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Each snapshot built, from the first read to the synced file.
pub static SNAPSHOT_BUILD_SECONDS: LazyLock<Histogram> = LazyLock::new(|| histogram(&LONG_SECONDS));
/// Each snapshot installed from the leader: file, tables and reload.
pub static SNAPSHOT_INSTALL_SECONDS: LazyLock<Histogram> =
    LazyLock::new(|| histogram(&LONG_SECONDS));
/// The size of the snapshot last built or installed, in bytes.
pub static SNAPSHOT_BYTES: LazyLock<Gauge> = LazyLock::new(Gauge::default);
/// Writes proposed by this node and not yet answered: waiting for a slot
/// in the coalescer, or in a log entry not yet applied.
pub static PROPOSALS_PENDING: LazyLock<Gauge> = LazyLock::new(Gauge::default);
/// Proposals that failed, by reason (`not_leader`, `discarded`, `refused`,
/// `fatal`). A domain refusal is an answer, not a failure.
pub static PROPOSALS_FAILED: LazyLock<Family<[(&'static str, &'static str); 1], Counter>> =
    LazyLock::new(Family::default);

/// Records the seconds since `start` into `histogram`.
pub fn observe_since(histogram: &Histogram, start: Instant) {
    histogram.observe(start.elapsed().as_secs_f64());
}

/// Creates a series of [`PROPOSALS_FAILED`] at 0 for each of `reasons`, so
/// that a rate over them is defined before the first failure.
pub fn init_proposal_failures(reasons: &[&'static str]) {
    for &reason in reasons {
        let _ = PROPOSALS_FAILED.get_or_create(&[("reason", reason)]);
    }
}

/// Counts one failed proposal.
pub fn proposal_failed(reason: &'static str) {
    PROPOSALS_FAILED.get_or_create(&[("reason", reason)]).inc();
}

/// Holds one pending proposal in [`PROPOSALS_PENDING`] from its creation
/// until it is dropped: answered, failed, or abandoned by its caller.
pub struct Pending(());

impl Pending {
    pub fn start() -> Self {
        PROPOSALS_PENDING.inc();
        Pending(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        PROPOSALS_PENDING.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow() {
        for b in [&SHORT_SECONDS[..], &LONG_SECONDS[..]] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
    }
}
