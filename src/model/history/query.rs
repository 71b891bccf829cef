//! Reading the history: which resolution serves a range ([`plan`]), and the
//! buckets of one entity over it ([`series`]), from its stored rows, its
//! open bucket and the value carried into the range. Pure: storage reads
//! the rows, the API formats the buckets.

use super::{Open, Point, Settings, Track};

/// Most buckets one answer holds: a longer range gets a coarser interval.
pub const POINTS_MAX: u64 = 2_000;

/// What a query reads and how it groups it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The stored resolution read.
    pub step_ms: u64,
    /// The interval of the answer's buckets: a multiple of `step_ms`.
    pub interval_ms: u64,
    /// The first bucket's start (a multiple of `interval_ms`), and the end
    /// of the range (exclusive).
    pub from_ms: u64,
    pub to_ms: u64,
    /// The oldest time the resolution still holds, by its retention.
    pub retained_from_ms: u64,
    /// The range asked for begins before `retained_from_ms`: the answer is
    /// what exists.
    pub partial: bool,
}

/// Chooses the resolution and interval for `[from_ms, to_ms)` at the
/// latest applied time `clock_ms`. `interval_ms == 0` chooses by itself:
/// the finest resolution that holds the whole range in at most
/// `points_max` buckets. Otherwise the interval is rounded to a multiple
/// of the coarsest resolution not above it (or the finest), and made
/// coarser if the range would need more than `points_max` buckets (at most
/// [`POINTS_MAX`]).
pub fn plan(
    settings: &Settings,
    clock_ms: u64,
    from_ms: u64,
    to_ms: u64,
    interval_ms: u64,
    points_max: u64,
) -> Result<Window, String> {
    let points_max = points_max.clamp(1, POINTS_MAX);
    if from_ms >= to_ms {
        return Err(format!(
            "from_ms ({from_ms}) must be before to_ms ({to_ms})"
        ));
    }
    let resolutions = &settings.resolutions;
    let (finest, coarsest) = match (resolutions.first(), resolutions.last()) {
        (Some(f), Some(c)) if settings.enabled => (f, c),
        _ => return Err("this node keeps no metrics history ([history] enabled = false)".into()),
    };
    let span = to_ms - from_ms;
    let covers = |retention: u64| clock_ms.saturating_sub(retention) <= from_ms;
    let step_ms = if interval_ms == 0 {
        resolutions
            .iter()
            .find(|r| covers(r.retention_ms) && span / r.step_ms <= points_max)
            .or_else(|| resolutions.iter().find(|r| covers(r.retention_ms)))
            .unwrap_or(coarsest)
            .step_ms
    } else {
        resolutions
            .iter()
            .rev()
            .find(|r| r.step_ms <= interval_ms)
            .unwrap_or(finest)
            .step_ms
    };
    let asked = interval_ms.max(step_ms);
    let mut interval = (asked + step_ms / 2) / step_ms * step_ms;
    let fit = span.div_ceil(points_max).div_ceil(step_ms) * step_ms;
    interval = interval.max(fit);
    let retained_from_ms = clock_ms.saturating_sub(settings.retention_ms(step_ms));
    let start = from_ms.max(retained_from_ms);
    Ok(Window {
        step_ms,
        interval_ms: interval,
        from_ms: start - start % interval,
        to_ms,
        retained_from_ms,
        partial: from_ms < retained_from_ms,
    })
}

/// One bucket of an answer: `covered_ms` of data from `start_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start_ms: u64,
    pub covered_ms: u64,
    pub point: Point,
}

/// The gauge values held at a window's start: the end of the last row
/// before it (`before`) when data follows in the window; when nothing
/// does, the track's current values, which then held all along.
pub fn carry_in(
    track: Option<&Track>,
    before: Option<&Point>,
    data_in_window: bool,
) -> Option<Vec<u64>> {
    if data_in_window {
        before.map(Point::lasts)
    } else {
        track.map(|t| t.values.clone())
    }
}

/// The buckets of one entity over `w`, up to `known_until_ms` (the time up
/// to which its state is known: nothing after it is shown). `rows` are its
/// stored rows at `w.step_ms` with buckets in the window, in order; `open`
/// its open bucket at that resolution; `carry` the gauge values held at the
/// window's start ([`carry_in`]). A step without a row holds the carried
/// gauges and no samples; a step before any known value is left out.
pub fn series(
    w: &Window,
    known_until_ms: u64,
    mut carry: Option<Vec<u64>>,
    rows: &[(u64, Point)],
    open: Option<&Open>,
) -> Vec<Bucket> {
    let step = w.step_ms;
    let end = w.to_ms.min(known_until_ms);
    let mut out: Vec<Bucket> = Vec::new();
    let mut rows = rows.iter().peekable();
    let mut b = w.from_ms;
    while b < end {
        let covered = step.min(end - b);
        while rows.next_if(|(at, _)| *at < b).is_some() {}
        let point = if let Some((_, p)) = rows.next_if(|(at, _)| *at == b) {
            Some((p.clone(), step))
        } else if let Some(o) = open.filter(|o| o.bucket_ms == b) {
            let until = (b + step).min(known_until_ms.max(o.since_ms));
            Some((o.closed_at(until), until - b))
        } else {
            carry.as_ref().map(|c| {
                let mut p = Point::holding(c);
                p.hold(covered);
                (p, covered)
            })
        };
        if let Some((point, covered)) = point {
            carry = Some(point.lasts());
            let start = b - b % w.interval_ms;
            match out.last_mut().filter(|last| last.start_ms == start) {
                Some(last) => {
                    last.point = last.point.then(&point);
                    last.covered_ms += covered;
                }
                None => out.push(Bucket {
                    start_ms: start,
                    covered_ms: covered,
                    point,
                }),
            }
        }
        b += step;
    }
    out
}
