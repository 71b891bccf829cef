//! Issue #24's month: steady work (100,000 tasks a day by default) through
//! the model at speed, every change persisted to a real store as apply
//! does, with the leader's collects, under the default retention (7 days,
//! 100,000 per queue) and one queue's own (2 days, 5,000). Once a simulated
//! day it prints the tasks kept, the process's RSS, the snapshot's size and
//! the data dir's, and checks every invariant (the history's recount
//! among them) and every counter. The figures go to bench/RESULTS.md.
//!
//! `cargo test --lib month -- --ignored --nocapture`; `LANEQ_MONTH_DAYS`
//! and `LANEQ_MONTH_TASKS_PER_DAY` size it. Ignored because it takes
//! minutes; the model's `ten_days_at_two_day_retention...` checks the same
//! bound at a smaller size in every run.

use std::path::Path;

use super::tables::SmBatch;
use super::Store;
use crate::model::state::tests::steady::{Steady, DAY_MS};
use crate::model::state::CHECK_EACH_APPLY;
use crate::model::{Key, Op, State};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += match meta.is_dir() {
            true => dir_bytes(&entry.path()),
            false => meta.len(),
        };
    }
    total
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:"));
    let kib: u64 = line
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    kib / 1024
}

#[test]
#[ignore = "a simulated month takes minutes; it prints the figures of bench/RESULTS.md"]
fn a_month_of_steady_work_stays_flat_after_the_retention_window() {
    let days = env_or("LANEQ_MONTH_DAYS", 30);
    let per_day = env_or("LANEQ_MONTH_TASKS_PER_DAY", 100_000) as usize;
    let steps_per_day: u64 = 1_000;
    CHECK_EACH_APPLY.set(false);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sink = |state: &State, changed: &[Key]| {
        let mut batch = SmBatch::default();
        for key in changed {
            batch.record(state, key);
        }
        store.sm_commit(batch).unwrap();
    };
    let mut w = Steady::new(10, 4, &mut sink);
    let own = Op::SetQueueRetention {
        name: "q9".into(),
        age_ms: Some(Some(2 * DAY_MS)),
        count: Some(Some(5_000)),
    };
    w.apply(vec![own], &mut sink);
    println!("| day | tasks kept | q0 kept | q9 kept | workers | idempotency keys | RSS MiB | snapshot MiB | data dir MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut figures = Vec::new();
    for day in 1..=days {
        w.passing_worker(&format!("passing-{day}"), &mut sink);
        for _ in 0..steps_per_day {
            w.step(
                per_day / steps_per_day as usize,
                DAY_MS / steps_per_day,
                &mut sink,
            );
        }
        w.s.check_invariants();
        assert_eq!(w.counted(), (w.submitted, w.outcomes), "day {day}");
        let snapshot = store.sm_export(|_| Ok(vec![])).unwrap().blob.len() as u64;
        let (q0, q9) = (w.s.queue("q0").unwrap().id, w.s.queue("q9").unwrap().id);
        let row = (
            w.s.tasks_after(0).count() as u64,
            w.s.finished_kept(q0),
            w.s.finished_kept(q9),
            w.s.workers().count() as u64,
            w.s.idempotency_count() as u64,
            rss_mib(),
            snapshot >> 20,
            dir_bytes(dir.path()) >> 20,
        );
        println!(
            "| {day} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7
        );
        figures.push(row);
    }
    println!(
        "submitted {}, outcomes {:?}, collected {:?}, commands {}",
        w.submitted, w.outcomes, w.collected, w.commands
    );
    // Flat after the window: from day 9 the tasks kept move by under 1%.
    let after: Vec<u64> = figures.iter().skip(8).map(|f| f.0).collect();
    if let (Some(lo), Some(hi)) = (after.iter().min(), after.iter().max()) {
        assert!(hi - lo <= hi / 100, "tasks kept {after:?}");
    }
    CHECK_EACH_APPLY.set(true);
}
