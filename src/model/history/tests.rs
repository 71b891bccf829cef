//! The history's arithmetic: rollups keep counts, minima and maxima
//! (rows of a fine resolution rolled up equal the coarse rows accumulated
//! directly), rows do not depend on when a bucket is closed, gaps carry
//! gauges, windows are planned as documented, rows expire.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::query::{carry_in, plan, series, Window};
use super::*;

const S: u64 = 1_000;

fn settings(steps: &[(u64, u64)]) -> Settings {
    Settings {
        enabled: true,
        resolutions: steps
            .iter()
            .map(|&(step_ms, retention_ms)| Resolution {
                step_ms,
                retention_ms,
            })
            .collect(),
    }
}

/// Random gauge changes and samples over `span_ms`, on one track with two
/// gauges; returns the rows (all buckets closed at the end).
fn random_track(seed: u64, s: &Settings, span_ms: u64, closes: bool) -> (Vec<Row>, Track) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut track = Track::new(vec![3, 0]);
    let mut rows = Vec::new();
    let mut now = 1_000_000 * S + rng.random_range(0..10 * S);
    let end = now + span_ms;
    // Bursts and silences: gaps of several buckets happen.
    let mut rng_events = StdRng::seed_from_u64(seed ^ 0xABCD);
    while now < end {
        match rng_events.random_range(0..3) {
            0 => track.set(
                s,
                rng.random_range(0..2),
                rng.random_range(0..50),
                now,
                &mut rows,
            ),
            1 => track.sample(
                s,
                rng.random_range(0..3),
                rng.random_range(0..1000),
                now,
                &mut rows,
            ),
            _ if closes => track.close_ended(now, &mut rows),
            _ => {}
        }
        let gap = if rng.random_ratio(1, 10) {
            200 * S
        } else {
            2 * S
        };
        now += rng.random_range(0..gap);
    }
    track.close_ended(u64::MAX / 2, &mut rows);
    (rows, track)
}

fn rows_at(rows: &[Row], step: u64) -> Vec<(u64, Point)> {
    let mut out: Vec<(u64, Point)> = rows
        .iter()
        .filter(|r| r.step_ms == step)
        .map(|r| (r.bucket_ms, r.point.clone()))
        .collect();
    out.sort();
    out
}

/// Trailing empty samples do not change a point's meaning.
fn trimmed(mut p: Point) -> Point {
    while p.samples.last().is_some_and(|s| s.count == 0) {
        p.samples.pop();
    }
    p
}

#[test]
fn rolling_fine_rows_up_equals_accumulating_coarse_ones() {
    let s = settings(&[(10 * S, u64::MAX / 4), (60 * S, u64::MAX / 4)]);
    let mut compared = 0;
    for seed in 0..200 {
        let (rows, _) = random_track(seed, &s, 3_600 * S, false);
        let fine = rows_at(&rows, 10 * S);
        let coarse = rows_at(&rows, 60 * S);
        let (first, last) = (coarse[0].0, coarse.last().unwrap().0 + 60 * S);
        let w = Window {
            step_ms: 10 * S,
            interval_ms: 60 * S,
            from_ms: first,
            to_ms: last,
            retained_from_ms: 0,
            partial: false,
        };
        // Before its first event the track held its initial values.
        let rolled = series(&w, u64::MAX, Some(vec![3, 0]), &fine, None);
        let mut direct = coarse.iter().peekable();
        let mut carried: Option<Vec<u64>> = None;
        for b in &rolled {
            assert_eq!(b.covered_ms, 60 * S, "seed {seed}: a whole minute");
            let expected = match direct.next_if(|(at, _)| *at == b.start_ms) {
                Some((_, p)) => p.clone(),
                None => {
                    let mut p = Point::holding(carried.as_ref().expect("a value is known"));
                    p.hold(60 * S);
                    p
                }
            };
            assert_eq!(
                trimmed(b.point.clone()),
                trimmed(expected.clone()),
                "seed {seed} at {}",
                b.start_ms
            );
            carried = Some(expected.lasts());
            compared += 1;
        }
        assert!(
            direct.next().is_none(),
            "seed {seed}: every coarse row rolled up"
        );
    }
    assert!(compared > 5_000, "{compared} minutes compared");
}

#[test]
fn rows_do_not_depend_on_when_buckets_close() {
    let s = settings(&[
        (10 * S, u64::MAX / 4),
        (60 * S, u64::MAX / 4),
        (600 * S, u64::MAX / 4),
    ]);
    for seed in 0..100 {
        let (lazy, a) = random_track(seed, &s, 7_200 * S, false);
        let (eager, b) = random_track(seed, &s, 7_200 * S, true);
        let (mut lazy, mut eager) = (lazy, eager);
        lazy.sort();
        eager.sort();
        assert_eq!(lazy, eager, "seed {seed}");
        assert_eq!(a, b, "seed {seed}");
        let (again, _) = random_track(seed, &s, 7_200 * S, false);
        let mut again = again;
        again.sort();
        assert_eq!(again, lazy, "seed {seed}: deterministic");
    }
}

#[test]
fn rollups_keep_counts_minima_and_maxima() {
    let s = settings(&[(10 * S, u64::MAX / 4), (600 * S, u64::MAX / 4)]);
    for seed in 0..100 {
        let (rows, _) = random_track(seed, &s, 3_600 * S, false);
        for i in 0..3 {
            let total = |step| -> (u64, u64, u64, u64) {
                let mut all = Samples::default();
                for (_, p) in rows_at(&rows, step) {
                    all = all.merge(&p.samples.get(i).copied().unwrap_or_default());
                }
                (all.count, all.sum, all.min, all.max)
            };
            assert_eq!(total(10 * S), total(600 * S), "seed {seed}, samples {i}");
        }
        for g in 0..2 {
            let extreme = |step| {
                let rows = rows_at(&rows, step);
                let lo = rows.iter().map(|(_, p)| p.gauges[g].min).min();
                let hi = rows.iter().map(|(_, p)| p.gauges[g].max).max();
                (lo, hi)
            };
            assert_eq!(extreme(10 * S), extreme(600 * S), "seed {seed}, gauge {g}");
        }
    }
}

#[test]
fn gaps_carry_gauges_and_leave_samples_empty() {
    let s = settings(&[(10 * S, 3_600 * S)]);
    let mut track = Track::new(vec![0]);
    let mut rows = Vec::new();
    track.set(&s, 0, 4, 100 * S, &mut rows); // [100, 110): 4 from its start
    track.sample(&s, 0, 7, 105 * S, &mut rows);
    track.set(&s, 0, 2, 135 * S, &mut rows); // closes [100, 110); [130, 140) holds 4 then 2
    assert_eq!(rows.len(), 1);
    let w = plan(&s, 140 * S, 100 * S, 150 * S, 10 * S, query::POINTS_MAX).unwrap();
    assert_eq!(
        (w.step_ms, w.interval_ms, w.from_ms),
        (10 * S, 10 * S, 100 * S)
    );
    let stored = rows_at(&rows, 10 * S);
    let open = track.lane(10 * S).unwrap().open.as_ref();
    let carry = carry_in(Some(&track), None, true);
    assert_eq!(
        carry, None,
        "no row before the window: nothing known before it"
    );
    let got = series(&w, 138 * S, carry, &stored, open);
    let starts: Vec<u64> = got.iter().map(|b| b.start_ms / S).collect();
    assert_eq!(starts, [100, 110, 120, 130], "up to what is known");
    // The bucket began holding 0, for no time: a minimum, and no area.
    assert_eq!(
        got[0].point.gauges[0],
        Gauge {
            min: 0,
            max: 4,
            area: 40 * S,
            last: 4
        }
    );
    assert_eq!(got[0].point.samples[0].count, 1);
    for gap in &got[1..3] {
        assert_eq!(
            gap.point.gauges[0],
            Gauge {
                min: 4,
                max: 4,
                area: 40 * S,
                last: 4
            }
        );
        assert!(gap.point.samples.is_empty());
    }
    // Open, known up to 138: 4 for 5 s, then 2 for 3 s.
    assert_eq!(got[3].covered_ms, 8 * S);
    assert_eq!(
        got[3].point.gauges[0],
        Gauge {
            min: 2,
            max: 4,
            area: 26 * S,
            last: 2
        }
    );
    // A window with no data in it carries the current value through.
    let later = plan(&s, 400 * S, 300 * S, 330 * S, 10 * S, query::POINTS_MAX).unwrap();
    let carry = carry_in(Some(&track), None, false);
    let quiet = series(&later, 330 * S, carry, &[], None);
    assert_eq!(quiet.len(), 3);
    assert!(quiet.iter().all(|b| b.point.gauges[0].area == 20 * S));
}

#[test]
fn windows_round_the_interval_and_say_what_is_missing() {
    let s = Settings::default();
    let now = 100 * 86_400 * S;
    let hour = 3_600 * S;
    // Chosen: the finest resolution that holds the range.
    assert_eq!(
        plan(&s, now, now - hour, now, 0, query::POINTS_MAX)
            .unwrap()
            .step_ms,
        10 * S
    );
    assert_eq!(
        plan(&s, now, now - 24 * hour, now, 0, query::POINTS_MAX)
            .unwrap()
            .step_ms,
        60 * S
    );
    assert_eq!(
        plan(&s, now, now - 30 * 24 * hour, now, 0, query::POINTS_MAX)
            .unwrap()
            .step_ms,
        600 * S
    );
    // Asked: rounded to a multiple of the coarsest step not above it.
    let w = plan(&s, now, now - hour, now, 5 * 60 * S, query::POINTS_MAX).unwrap();
    assert_eq!((w.step_ms, w.interval_ms), (60 * S, 300 * S));
    let w = plan(&s, now, now - hour, now, 14 * S, query::POINTS_MAX).unwrap();
    assert_eq!((w.step_ms, w.interval_ms), (10 * S, 10 * S));
    let w = plan(&s, now, now - hour, now, 3 * S, query::POINTS_MAX).unwrap();
    assert_eq!((w.step_ms, w.interval_ms), (10 * S, 10 * S));
    // Too many points: coarser.
    let w = plan(&s, now, now - 12 * hour, now, 10 * S, query::POINTS_MAX).unwrap();
    assert!(w.interval_ms * query::POINTS_MAX >= 12 * hour, "{w:?}");
    // Past retention: what exists, and it says so.
    let w = plan(&s, now, now - 24 * hour, now, 10 * S, query::POINTS_MAX).unwrap();
    assert!(w.partial);
    assert_eq!(w.retained_from_ms, now - 6 * hour);
    assert!(w.from_ms >= now - 6 * hour - w.interval_ms);
    assert!(plan(&s, now, now, now - 1, 0, query::POINTS_MAX).is_err());
    let off = Settings {
        enabled: false,
        ..Settings::default()
    };
    assert!(plan(&off, now, 0, now, 0, query::POINTS_MAX).is_err());
}

#[test]
fn rows_expire_after_their_retention_in_batches() {
    let s = settings(&[(10 * S, 600 * S)]);
    let mut track = Track::new(vec![5]);
    let mut rows = Vec::new();
    for t in 0..50 {
        track.set(&s, 0, t % 3, 1_000 * S + t * 10 * S, &mut rows);
    }
    let lane = track.lane(10 * S).unwrap();
    assert_eq!(lane.oldest_row_ms, Some(1_000 * S));
    let due = track.due(&s).unwrap();
    assert_eq!(due, 1_490 * S + 10 * S, "the open bucket's end comes first");
    track.close_ended(1_500 * S, &mut rows);
    let due = track.due(&s).unwrap();
    // Retention plus a sixteenth of it past the oldest row.
    assert_eq!(due, 1_000 * S + 600 * S + 600 * S / 16);
    assert!(track.expire(&s, due - 1).is_empty(), "not before it is due");
    let drops = track.expire(&s, due);
    assert_eq!(drops, vec![(10 * S, due - 600 * S)]);
    assert_eq!(
        track.lane(10 * S).unwrap().oldest_row_ms,
        Some(due - 600 * S)
    );
    // Long after the newest row: every row goes, and the track holds nothing.
    let drops = track.expire(&s, 10_000 * S);
    assert_eq!(drops, vec![(10 * S, 10_000 * S - 600 * S)]);
    assert!(track.is_empty());
    assert_eq!(track.due(&s), None);
}

#[test]
fn counters_bucket_waits_by_their_bounds() {
    let mut c = QueueCounters::default();
    for wait in [0, 100, 101, 999_999_999] {
        c.leased(wait);
    }
    let cumulative = c.wait_cumulative();
    assert_eq!(cumulative[0], (Some(100), 2), "le 0.1 s holds 0 and 100 ms");
    assert_eq!(cumulative[1], (Some(500), 3));
    assert_eq!(*cumulative.last().unwrap(), (None, 4));
    assert_eq!((c.dispatch_attempts, c.wait_count()), (4, 4));
    c.finished(crate::model::TaskState::Failed);
    c.finished(crate::model::TaskState::Running);
    assert_eq!((c.failed, c.succeeded), (1, 0));
}

#[test]
fn settings_are_checked() {
    assert!(Settings::default().validate().is_ok());
    for (steps, field) in [
        (vec![(500, 60_000)], "step_ms"),
        (vec![(10_000, 5_000)], "retention_ms"),
        (vec![(10_000, 60_000), (15_000, 60_000)], "multiple"),
        (vec![(60_000, 60_000), (10_000, 60_000)], "multiple"),
        (vec![], "at least one"),
    ] {
        let e = settings(&steps).validate().unwrap_err();
        assert!(e.contains(field), "{steps:?}: {e}");
    }
}
