//! Per-queue cumulative counters, kept in apply like the rest of the state
//! (so every node counts the same), for the Prometheus exporter: tasks
//! submitted, finished by outcome, leases expired, dispatch attempts, and
//! the wait from submit to lease as a histogram with fixed bounds.

use serde::{Deserialize, Serialize};

use crate::model::TaskState;

/// The histogram's upper bounds, in ms (`le` in seconds: 0.1, 0.5, 1, 2.5,
/// 5, 10, 30 s, 1, 2, 5, 10, 30 min, 1, 2, 6, 24 h); a last bucket holds
/// what is above.
pub const WAIT_BOUNDS_MS: [u64; 16] = [
    100, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000,
    3_600_000, 7_200_000, 21_600_000, 86_400_000,
];

/// A queue's counters since it was created (or since this release first
/// applied a command for it). They only grow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueCounters {
    pub submitted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub canceled: u64,
    pub dequeued: u64,
    /// Leases that ended because they were not renewed in time (or their
    /// worker was lost); each task goes back to its queue or fails.
    pub leases_expired: u64,
    /// Dispatch attempts: leases granted from the queue. Each is an attempt
    /// of its task (what `Task::attempt` counts), whether it then runs,
    /// expires or is released.
    pub dispatch_attempts: u64,
    /// Leases by the wait of their task, one count per bucket of
    /// [`WAIT_BOUNDS_MS`] plus one above the last bound (not cumulative).
    pub wait_buckets: Vec<u64>,
    pub wait_sum_ms: u64,
}

impl QueueCounters {
    /// Counts a task that reached a terminal state.
    pub fn finished(&mut self, state: TaskState) {
        match state {
            TaskState::Succeeded => self.succeeded += 1,
            TaskState::Failed => self.failed += 1,
            TaskState::Canceled => self.canceled += 1,
            TaskState::Dequeued => self.dequeued += 1,
            TaskState::Queued | TaskState::Leased | TaskState::Running => {}
        }
    }

    /// Counts a lease whose task waited `wait_ms`.
    pub fn leased(&mut self, wait_ms: u64) {
        self.dispatch_attempts += 1;
        let i = WAIT_BOUNDS_MS.partition_point(|&b| b < wait_ms);
        if self.wait_buckets.len() < WAIT_BOUNDS_MS.len() + 1 {
            self.wait_buckets.resize(WAIT_BOUNDS_MS.len() + 1, 0);
        }
        self.wait_buckets[i] += 1;
        self.wait_sum_ms = self.wait_sum_ms.saturating_add(wait_ms);
    }

    /// The histogram as Prometheus wants it: (upper bound in ms, count of
    /// waits at most that), the last bound `None` for `+Inf`.
    pub fn wait_cumulative(&self) -> Vec<(Option<u64>, u64)> {
        let mut total = 0;
        (0..=WAIT_BOUNDS_MS.len())
            .map(|i| {
                total += self.wait_buckets.get(i).copied().unwrap_or(0);
                (WAIT_BOUNDS_MS.get(i).copied(), total)
            })
            .collect()
    }

    /// Leases counted in the histogram (its `_count`).
    pub fn wait_count(&self) -> u64 {
        self.wait_buckets.iter().sum()
    }
}
