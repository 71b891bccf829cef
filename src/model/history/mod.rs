//! The metrics history that laneq keeps of itself: per queue and for all
//! queues together the queued count and the wait from submit to lease; the
//! count of active and of all workers; per worker its usage (CPU, memory,
//! network, each GPU) and whether it was alive and busy. Each as minimum,
//! average and maximum per bucket, at several resolutions (10 s points for
//! 6 hours, 1 minute for 7 days, 10 minutes for 90 days by default).
//!
//! It is derived inside apply from the stamped time of each command, so it is
//! a pure function of the log (and of [`Settings`], the same on every node):
//! every replica holds the same history, a restart reloads it and a
//! snapshot carries it.
//!
//! How: each entity ([`Entity`]) has a [`Track`]: its current gauge values
//! and, per resolution, the bucket still open. An event (a queued count
//! that changes, a lease's wait, a usage sample) first closes the buckets
//! that have ended, which become rows ([`Row`], stored, not kept in memory),
//! then updates the open ones. Apply also closes, a few tracks per command,
//! the buckets that ended without an event (`State`'s sweep), and drops rows
//! past their retention: so an idle queue or a departed worker costs one
//! last row per resolution and then nothing, until its rows expire. A gap
//! between rows means a gauge held its value; a query carries it forward.
//!
//! **Architecture Invariant:** pure like the rest of the model: no clock (time
//! is the stamp's), no IO; the rows leave apply as [`super::Key`]s.

mod counters;
mod point;
pub mod query;
#[cfg(test)]
mod tests;
mod track;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use counters::{QueueCounters, WAIT_BOUNDS_MS};
pub use point::{Gauge, Point, Samples};
pub use track::{Lane, Open, Track};

/// One resolution: buckets of `step_ms`, kept for `retention_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    pub step_ms: u64,
    pub retention_ms: u64,
}

/// What a node keeps. Every node of a cluster must use the same settings:
/// they decide which rows apply writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub enabled: bool,
    /// Finest first; each step a multiple of the one before.
    pub resolutions: Vec<Resolution>,
}

impl Default for Settings {
    fn default() -> Self {
        const MIN: u64 = 60_000;
        Settings {
            enabled: true,
            resolutions: vec![
                Resolution {
                    step_ms: 10_000,
                    retention_ms: 6 * 60 * MIN,
                },
                Resolution {
                    step_ms: MIN,
                    retention_ms: 7 * 24 * 60 * MIN,
                },
                Resolution {
                    step_ms: 10 * MIN,
                    retention_ms: 90 * 24 * 60 * MIN,
                },
            ],
        }
    }
}

impl Settings {
    /// How long rows of `step_ms` are kept: 0 for a resolution no longer
    /// configured, whose rows go at the next sweep.
    pub fn retention_ms(&self, step_ms: u64) -> u64 {
        self.resolutions
            .iter()
            .find(|r| r.step_ms == step_ms)
            .map_or(0, |r| r.retention_ms)
    }

    /// Checks what parsing cannot; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.resolutions.is_empty() && self.enabled {
            return Err("history.resolutions: give at least one".into());
        }
        let mut previous: Option<&Resolution> = None;
        for (i, r) in self.resolutions.iter().enumerate() {
            let field = format!("history.resolutions[{i}]");
            if r.step_ms < STEP_MIN_MS || r.step_ms % 1000 != 0 {
                return Err(format!(
                    "{field}.step_ms = {}: use whole seconds, at least {} ms",
                    r.step_ms, STEP_MIN_MS
                ));
            }
            if r.retention_ms < r.step_ms {
                return Err(format!("{field}.retention_ms must be at least its step_ms"));
            }
            if let Some(p) = previous {
                if r.step_ms <= p.step_ms || r.step_ms % p.step_ms != 0 {
                    return Err(format!(
                        "{field}.step_ms = {}: each step must be a multiple of the one before \
                         ({} ms), finest first",
                        r.step_ms, p.step_ms
                    ));
                }
            }
            previous = Some(r);
        }
        Ok(())
    }
}

/// The shortest bucket: a finer one would write a row per entity every
/// moment for nothing a person reads.
pub const STEP_MIN_MS: u64 = 1_000;
/// Most GPUs per worker whose usage is kept (by GPU index).
pub const GPUS_MAX: u32 = 16;
/// Most tracks one apply sweeps (closes their ended buckets, drops their
/// expired rows), so that no command does unbounded work.
pub const SWEEP_PER_APPLY: usize = 64;

/// What a track follows. The positions of its gauges and samples:
/// - queue and all queues: gauge [`QUEUED`]; samples [`WAIT_MS`];
/// - workers: gauges [`ACTIVE`], [`TOTAL`];
/// - a worker: gauges [`ALIVE`], [`BUSY`]; samples [`CPU_PERMILLE`],
///   [`MEMORY_BYTES`], [`NET_RX`], [`NET_TX`], then per GPU index `g`
///   [`gpu_util`]`(g)` and [`gpu_memory`]`(g)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Entity {
    AllQueues,
    /// By queue id (stable across renames).
    Queue(u64),
    /// Active (holding a task) and total (not lost) workers.
    Workers,
    Worker(String),
}

pub const QUEUED: usize = 0;
pub const WAIT_MS: usize = 0;
pub const ACTIVE: usize = 0;
pub const TOTAL: usize = 1;
pub const ALIVE: usize = 0;
pub const BUSY: usize = 1;
pub const CPU_PERMILLE: usize = 0;
pub const MEMORY_BYTES: usize = 1;
pub const NET_RX: usize = 2;
pub const NET_TX: usize = 3;

/// The sample position of GPU `index`'s utilisation (per mille).
pub fn gpu_util(index: u32) -> usize {
    4 + 2 * index as usize
}

/// The sample position of GPU `index`'s memory used (bytes).
pub fn gpu_memory(index: u32) -> usize {
    gpu_util(index) + 1
}

/// A closed bucket, as storage keeps it (`step/entity/bucket`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub step_ms: u64,
    pub entity: Entity,
    pub bucket_ms: u64,
    pub point: Point,
}

/// The history's part of the state: the tracks, a derived index of when
/// each needs a sweep, and the per-queue counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    settings: Settings,
    tracks: BTreeMap<Entity, Track>,
    /// Derived: (when the track next needs a sweep, entity).
    due: BTreeSet<(u64, Entity)>,
    counters: BTreeMap<u64, QueueCounters>,
    /// The gauges are checked against the state at the next apply: set at
    /// start and when the settings change (see `State::set_history`). Not
    /// part of the replicated value.
    reconcile: Pending,
}

/// A flag that equality ignores: whether a reconcile is pending differs
/// between a node that applied and one that reloaded, with equal histories.
#[derive(Debug, Clone, Copy, Default)]
struct Pending(bool);

impl PartialEq for Pending {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Pending {}

impl History {
    pub fn new(settings: Settings) -> Self {
        History {
            settings,
            reconcile: Pending(true),
            ..Default::default()
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
        self.reconcile = Pending(true);
        self.due = self.rebuilt_index();
    }

    pub(crate) fn reconcile_pending(&self) -> bool {
        self.reconcile.0
    }

    pub(crate) fn take_reconcile(&mut self) -> bool {
        std::mem::replace(&mut self.reconcile.0, false)
    }

    pub fn track(&self, entity: &Entity) -> Option<&Track> {
        self.tracks.get(entity)
    }

    pub fn tracks(&self) -> impl Iterator<Item = (&Entity, &Track)> {
        self.tracks.iter()
    }

    pub fn counters(&self, queue: u64) -> Option<&QueueCounters> {
        self.counters.get(&queue)
    }

    pub fn all_counters(&self) -> impl Iterator<Item = (u64, &QueueCounters)> {
        self.counters.iter().map(|(id, c)| (*id, c))
    }

    pub(crate) fn counters_mut(&mut self, queue: u64) -> &mut QueueCounters {
        self.counters.entry(queue).or_default()
    }

    pub(crate) fn remove_counters(&mut self, queue: u64) -> bool {
        self.counters.remove(&queue).is_some()
    }

    pub fn load_track(&mut self, entity: Entity, track: Track) {
        let before = self.tracks.insert(entity.clone(), track);
        let due = before.and_then(|t| t.due(&self.settings));
        self.reindex(&entity, due);
    }

    pub fn load_counters(&mut self, queue: u64, counters: QueueCounters) {
        self.counters.insert(queue, counters);
    }

    /// Changes (or creates, holding `values`) the track of `entity` with
    /// `f`, keeping the sweep index in step.
    pub(crate) fn with_track<T>(
        &mut self,
        entity: &Entity,
        values: impl FnOnce() -> Vec<u64>,
        f: impl FnOnce(&mut Track, &Settings) -> T,
    ) -> T {
        let before = self.tracks.get(entity).and_then(|t| t.due(&self.settings));
        let track = self
            .tracks
            .entry(entity.clone())
            .or_insert_with(|| Track::new(values()));
        let out = f(track, &self.settings);
        self.reindex(entity, before);
        out
    }

    /// Puts `entity` in the sweep index at its current due time, in place
    /// of its entry `before` (when it had one).
    fn reindex(&mut self, entity: &Entity, before: Option<u64>) {
        if let Some(due) = before {
            self.due.remove(&(due, entity.clone()));
        }
        if let Some(due) = self.tracks.get(entity).and_then(|t| t.due(&self.settings)) {
            self.due.insert((due, entity.clone()));
        }
    }

    /// The tracks whose sweep is due by `now`, at most `limit`.
    pub(crate) fn due_by(&self, now: u64, limit: usize) -> Vec<Entity> {
        self.due
            .iter()
            .take_while(|(due, _)| *due <= now)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Drops a track that holds nothing (no open bucket, no rows).
    pub(crate) fn drop_if_empty(&mut self, entity: &Entity) -> bool {
        if !self.tracks.get(entity).is_some_and(Track::is_empty) {
            return false;
        }
        if let Some(due) = self
            .tracks
            .remove(entity)
            .and_then(|t| t.due(&self.settings))
        {
            self.due.remove(&(due, entity.clone()));
        }
        true
    }

    /// The sweep index rebuilt from the tracks (for the invariant checks).
    pub(crate) fn check_index(&self) {
        assert_eq!(self.rebuilt_index(), self.due, "history sweep index");
    }

    fn rebuilt_index(&self) -> BTreeSet<(u64, Entity)> {
        self.tracks
            .iter()
            .filter_map(|(e, t)| t.due(&self.settings).map(|d| (d, e.clone())))
            .collect()
    }
}
