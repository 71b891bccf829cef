//! A track: one entity's current gauge values and, per resolution, its open
//! bucket and the range of its stored rows. Every change takes the stamped
//! time `now`; nothing here reads a clock.

use serde::{Deserialize, Serialize};

use super::{Point, Row, Settings};

/// One entity's history state, persisted with every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// The gauges' current values (what a gap between rows holds).
    pub values: Vec<u64>,
    /// One per resolution the track has data at.
    pub lanes: Vec<Lane>,
}

/// One resolution of a track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lane {
    pub step_ms: u64,
    pub open: Option<Open>,
    /// A lower bound on the bucket of its oldest stored row; `None`: no rows.
    pub oldest_row_ms: Option<u64>,
    /// The bucket of its newest stored row.
    pub newest_row_ms: Option<u64>,
}

/// The bucket still open: from `bucket_ms`, gauges accounted up to
/// `since_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    pub bucket_ms: u64,
    pub since_ms: u64,
    pub point: Point,
}

impl Open {
    /// The bucket as a row would hold it if closed at `until_ms` (its end,
    /// or earlier for a bucket still in progress).
    pub fn closed_at(&self, until_ms: u64) -> Point {
        let mut point = self.point.clone();
        point.hold(until_ms.saturating_sub(self.since_ms));
        point
    }
}

/// How long past its retention a row may stay before a sweep drops it, as
/// a share of the retention: drops come in batches, not one per bucket.
/// Queries never show such a row: they clip at the retention.
const EXPIRY_SLACK_DIVISOR: u64 = 16;

fn slack(retention_ms: u64) -> u64 {
    (retention_ms / EXPIRY_SLACK_DIVISOR).max(1)
}

impl Track {
    pub fn new(values: Vec<u64>) -> Self {
        Track {
            values,
            lanes: Vec::new(),
        }
    }

    /// Gauge `i` takes `value` at `now`.
    pub fn set(&mut self, settings: &Settings, i: usize, value: u64, now: u64, out: &mut Vec<Row>) {
        if self.values.get(i) == Some(&value) {
            return;
        }
        if self.values.len() <= i {
            self.values.resize(i + 1, 0);
        }
        self.enter(settings, now, out);
        for open in self.lanes.iter_mut().filter_map(|l| l.open.as_mut()) {
            open.point.hold(now.saturating_sub(open.since_ms));
            open.since_ms = now;
            if open.point.gauges.len() <= i {
                open.point.gauges.resize(i + 1, super::Gauge::holding(0));
            }
            open.point.gauges[i].set(value);
        }
        self.values[i] = value;
    }

    /// A sample `value` at position `i` arrives at `now`.
    pub fn sample(
        &mut self,
        settings: &Settings,
        i: usize,
        value: u64,
        now: u64,
        out: &mut Vec<Row>,
    ) {
        self.enter(settings, now, out);
        for open in self.lanes.iter_mut().filter_map(|l| l.open.as_mut()) {
            open.point.sample(i, value);
        }
    }

    /// Closes what ended by `now` and opens, at every configured
    /// resolution, the bucket that holds `now`.
    fn enter(&mut self, settings: &Settings, now: u64, out: &mut Vec<Row>) {
        self.close_ended(now, out);
        for r in &settings.resolutions {
            let lane = match self.lanes.iter().position(|l| l.step_ms == r.step_ms) {
                Some(i) => &mut self.lanes[i],
                None => {
                    self.lanes.push(Lane {
                        step_ms: r.step_ms,
                        open: None,
                        oldest_row_ms: None,
                        newest_row_ms: None,
                    });
                    self.lanes.last_mut().expect("just pushed")
                }
            };
            if lane.open.is_none() {
                let bucket_ms = now - now % r.step_ms;
                lane.open = Some(Open {
                    bucket_ms,
                    since_ms: bucket_ms,
                    point: Point::holding(&self.values),
                });
            }
        }
    }

    /// Closes every open bucket that ended by `now` into a row. The
    /// entity is the caller's to set: a track does not know its own.
    pub fn close_ended(&mut self, now: u64, out: &mut Vec<Row>) {
        for lane in &mut self.lanes {
            let Some(open) = lane.open.as_ref() else {
                continue;
            };
            let end = open.bucket_ms + lane.step_ms;
            if now < end {
                continue;
            }
            let bucket_ms = open.bucket_ms;
            out.push(Row {
                step_ms: lane.step_ms,
                entity: super::Entity::AllQueues,
                bucket_ms,
                point: open.closed_at(end),
            });
            lane.open = None;
            lane.oldest_row_ms = Some(lane.oldest_row_ms.unwrap_or(bucket_ms).min(bucket_ms));
            lane.newest_row_ms = Some(lane.newest_row_ms.unwrap_or(bucket_ms).max(bucket_ms));
        }
    }

    /// Drops rows past their retention at `now`, where due: returns the
    /// (step, bucket before which every row goes) of each drop. A lane with
    /// nothing left, of a resolution no longer configured, goes too.
    pub fn expire(&mut self, settings: &Settings, now: u64) -> Vec<(u64, u64)> {
        let mut drops = Vec::new();
        for lane in &mut self.lanes {
            let Some(oldest) = lane.oldest_row_ms else {
                continue;
            };
            let retention = settings.retention_ms(lane.step_ms);
            if oldest
                .saturating_add(retention)
                .saturating_add(slack(retention))
                > now
            {
                continue;
            }
            let horizon = now.saturating_sub(retention);
            drops.push((lane.step_ms, horizon));
            if lane.newest_row_ms.is_some_and(|n| n >= horizon) {
                lane.oldest_row_ms = Some(horizon);
            } else {
                (lane.oldest_row_ms, lane.newest_row_ms) = (None, None);
            }
        }
        self.lanes.retain(|l| {
            l.open.is_some() || l.oldest_row_ms.is_some() || settings.retention_ms(l.step_ms) > 0
        });
        drops
    }

    /// When the track next needs a sweep: an open bucket's end, or the time
    /// its oldest rows are due to go.
    pub fn due(&self, settings: &Settings) -> Option<u64> {
        self.lanes
            .iter()
            .flat_map(|l| {
                let retention = settings.retention_ms(l.step_ms);
                let close = l.open.as_ref().map(|o| o.bucket_ms + l.step_ms);
                let expire = l
                    .oldest_row_ms
                    .map(|o| o.saturating_add(retention).saturating_add(slack(retention)));
                [close, expire]
            })
            .flatten()
            .min()
    }

    /// Holds nothing: no open bucket and no stored rows.
    pub fn is_empty(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| l.open.is_none() && l.oldest_row_ms.is_none())
    }

    /// The lane of `step_ms`.
    pub fn lane(&self, step_ms: u64) -> Option<&Lane> {
        self.lanes.iter().find(|l| l.step_ms == step_ms)
    }
}
