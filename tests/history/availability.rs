//! Availability during a fault phase, measured from the submits' times: a
//! figure for reports, not a property; nothing here is a violation.

use std::collections::BTreeSet;

use serde::Serialize;

use super::History;

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Availability {
    /// Share of the phase's one-second windows with an acknowledged submit.
    pub windows_with_writes: f64,
    /// Share of submit attempts that were acknowledged.
    pub submits_acknowledged: f64,
    /// Longest stretch without an acknowledged submit.
    pub max_unavailable_ms: u64,
    /// For each fault that hit the leader: how long after it began the first
    /// submit sent after it was acknowledged.
    pub failovers_ms: Vec<u64>,
    pub submit_p50_ms: u64,
    pub submit_p99_ms: u64,
}

pub fn availability(history: &History, start_ms: u64, end_ms: u64) -> Availability {
    let acked = || {
        history
            .submits()
            .map(|(s, _)| s)
            .filter(|s| s.outcome.is_ok())
    };
    let mut acks: Vec<u64> = acked()
        .filter(|s| s.done_ms >= start_ms && s.done_ms <= end_ms)
        .map(|s| s.done_ms)
        .collect();
    acks.sort_unstable();
    let in_phase: Vec<_> = (history.submits().map(|(s, _)| s))
        .filter(|s| s.sent_ms >= start_ms && s.sent_ms <= end_ms)
        .collect();
    let mut max_gap = 0;
    let mut prev = start_ms;
    for &t in acks.iter().chain(std::iter::once(&end_ms)) {
        max_gap = max_gap.max(t - prev);
        prev = t;
    }
    let windows = (end_ms - start_ms).div_ceil(1000).max(1);
    let with_writes: BTreeSet<u64> = acks.iter().map(|t| (t - start_ms) / 1000).collect();
    let failovers_ms = (history.faults.iter())
        .filter(|f| f.hit_leader && f.start_ms >= start_ms && f.start_ms <= end_ms)
        .filter_map(|f| {
            acked()
                .filter(|s| s.sent_ms >= f.start_ms)
                .map(|s| s.done_ms - f.start_ms)
                .min()
        })
        .collect();
    let mut latencies: Vec<u64> = (in_phase.iter())
        .filter(|s| s.outcome.is_ok())
        .map(|s| s.done_ms - s.sent_ms)
        .collect();
    latencies.sort_unstable();
    let pct = |q: usize| {
        latencies
            .get((latencies.len() * q / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let acknowledged = in_phase.iter().filter(|s| s.outcome.is_ok()).count();
    Availability {
        windows_with_writes: with_writes.len() as f64 / windows as f64,
        submits_acknowledged: acknowledged as f64 / in_phase.len().max(1) as f64,
        max_unavailable_ms: max_gap,
        failovers_ms,
        submit_p50_ms: pct(50),
        submit_p99_ms: pct(99),
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::fixture::*;
    use super::super::Fault;
    use super::*;

    #[test]
    fn availability_measures_the_longest_gap_and_the_failover() {
        let mut h = History::default();
        for t in [0, 100, 200, 1500, 1600] {
            h.records.push(submit(&format!("k{t}"), ok_ids(&[t]), t));
        }
        h.records.push(submit("late", unknown(), 300));
        h.faults.push(Fault {
            kind: "kill-leader".into(),
            target: "node 1".into(),
            hit_leader: true,
            start_ms: 250,
            end_ms: 900,
        });
        let a = availability(&h, 0, 2000);
        assert_eq!(a.max_unavailable_ms, 1505 - 205);
        assert_eq!(a.failovers_ms, vec![1505 - 250]);
        assert_eq!(a.windows_with_writes, 1.0);
        assert!((a.submits_acknowledged - 5.0 / 6.0).abs() < 1e-9);
    }
}
