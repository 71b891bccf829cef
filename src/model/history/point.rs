//! One bucket's statistics: time-weighted gauges (a count held over time)
//! and samples (values reported at instants), and how two buckets merge.
//!
//! Integers only, like the rest of the replicated state: an average is kept
//! as a sum (value × ms for a gauge, the sum of values for samples) and
//! divided only when it is read, so rolling buckets up loses nothing.

use serde::{Deserialize, Serialize};

/// A value held over time (queued tasks, active workers). `area` is the
/// integral of the value over the bucket's covered time, in value × ms;
/// `last` the value at the bucket's end, carried into the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Gauge {
    pub min: u64,
    pub max: u64,
    pub area: u64,
    pub last: u64,
}

impl Gauge {
    /// A bucket that begins holding `value`: the value carried in counts
    /// towards its minimum and maximum, since it is held there.
    pub fn holding(value: u64) -> Self {
        Gauge {
            min: value,
            max: value,
            area: 0,
            last: value,
        }
    }

    /// Accounts for `ms` more of the current value.
    pub fn hold(&mut self, ms: u64) {
        self.area = self.area.saturating_add(self.last.saturating_mul(ms));
    }

    /// The value changes (after [`Gauge::hold`] up to now).
    pub fn set(&mut self, value: u64) {
        self.last = value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// This bucket followed by `next`.
    pub fn then(&self, next: &Gauge) -> Gauge {
        Gauge {
            min: self.min.min(next.min),
            max: self.max.max(next.max),
            area: self.area.saturating_add(next.area),
            last: next.last,
        }
    }
}

/// Values reported at instants (a wait, a CPU reading): how many, their sum,
/// their minimum and maximum. Empty (`count == 0`) means none arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Samples {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

impl Samples {
    pub fn add(&mut self, value: u64) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
    }

    pub fn merge(&self, other: &Samples) -> Samples {
        match (self.count, other.count) {
            (0, _) => *other,
            (_, 0) => *self,
            _ => Samples {
                count: self.count + other.count,
                sum: self.sum.saturating_add(other.sum),
                min: self.min.min(other.min),
                max: self.max.max(other.max),
            },
        }
    }
}

/// One bucket of one entity: its gauges and its samples, by position (what
/// each position means is the entity's kind: see [`super::Entity`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Point {
    pub gauges: Vec<Gauge>,
    pub samples: Vec<Samples>,
}

impl Point {
    /// A bucket that begins holding `values`, with no samples yet.
    pub fn holding(values: &[u64]) -> Self {
        Point {
            gauges: values.iter().map(|&v| Gauge::holding(v)).collect(),
            samples: Vec::new(),
        }
    }

    /// Accounts for `ms` more of every gauge's current value.
    pub fn hold(&mut self, ms: u64) {
        self.gauges.iter_mut().for_each(|g| g.hold(ms));
    }

    /// Adds a sample at position `i`.
    pub fn sample(&mut self, i: usize, value: u64) {
        if self.samples.len() <= i {
            self.samples.resize(i + 1, Samples::default());
        }
        self.samples[i].add(value);
    }

    /// The gauges' values at the bucket's end.
    pub fn lasts(&self) -> Vec<u64> {
        self.gauges.iter().map(|g| g.last).collect()
    }

    /// This bucket followed by `next` (the next bucket in time).
    pub fn then(&self, next: &Point) -> Point {
        let n = self.gauges.len().max(next.gauges.len());
        let gauge = |p: &Point, i: usize| p.gauges.get(i).copied();
        let gauges = (0..n)
            .map(|i| match (gauge(self, i), gauge(next, i)) {
                (Some(a), Some(b)) => a.then(&b),
                (a, b) => b.or(a).expect("one of them has it"),
            })
            .collect();
        let n = self.samples.len().max(next.samples.len());
        let sample = |p: &Point, i: usize| p.samples.get(i).copied().unwrap_or_default();
        let samples = (0..n)
            .map(|i| sample(self, i).merge(&sample(next, i)))
            .collect();
        Point { gauges, samples }
    }

    /// Whether it says nothing: no gauges and no samples.
    pub fn is_empty(&self) -> bool {
        self.gauges.is_empty() && self.samples.iter().all(|s| s.count == 0)
    }
}
