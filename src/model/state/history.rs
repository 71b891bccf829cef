//! The state's side of the metrics history (`model::history`): what apply
//! feeds it (queued counts and worker states after each write, the wait of
//! each lease, usage samples), the sweep at the start of each command, and
//! the per-queue counters.
//!
//! **Architecture Invariant:** every track's gauge values equal what the
//! state implies (a queue's queued count, their sum, each worker's state and
//! the counts of active and all workers) after every apply: the invariant
//! checks recount them.

use std::collections::BTreeSet;

use super::{Key, State};
use crate::model::history::{self, Entity, History, QueueCounters, Row, Settings, SWEEP_PER_APPLY};
use crate::model::worker::{Usage, Worker, WorkerState};
use crate::model::TaskState;

impl State {
    /// Sets the history's settings (at start, from the node's config): the
    /// gauges are checked against the state at the next apply.
    pub fn set_history(&mut self, settings: Settings) {
        self.history.set_settings(settings);
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// A queue's cumulative counters (none before its first event).
    pub fn queue_counters(&self, queue: u64) -> Option<&QueueCounters> {
        self.history.counters(queue)
    }

    /// Every queue's counters, by queue id.
    pub fn all_queue_counters(&self) -> impl Iterator<Item = (u64, &QueueCounters)> {
        self.history.all_counters()
    }

    pub fn load_history_track(&mut self, entity: Entity, track: history::Track) {
        self.history.load_track(entity, track);
    }

    pub fn load_queue_counters(&mut self, queue: u64, counters: QueueCounters) {
        self.history.load_counters(queue, counters);
    }

    /// At the start of each command: the reconcile after a start, then a
    /// sweep of the tracks that are due (closing their ended buckets and
    /// dropping their expired rows), a bounded number of them.
    pub(super) fn history_tick(&mut self, changed: &mut Vec<Key>) {
        if !self.history.settings().enabled {
            return;
        }
        if self.history.take_reconcile() {
            self.reconcile_history(changed);
        }
        let now = self.clock_ms;
        for entity in self.history.due_by(now, SWEEP_PER_APPLY) {
            let mut rows = Vec::new();
            let drops = self.history.with_track(&entity, Vec::new, |t, s| {
                t.close_ended(now, &mut rows);
                t.expire(s, now)
            });
            emit(&entity, rows, changed);
            for (step_ms, before_ms) in drops {
                changed.push(Key::HistoryExpire {
                    step_ms,
                    entity: entity.clone(),
                    before_ms,
                });
            }
            if !self.entity_exists(&entity) {
                self.history.drop_if_empty(&entity);
            }
            changed.push(Key::HistoryTrack(entity));
        }
    }

    fn entity_exists(&self, entity: &Entity) -> bool {
        match entity {
            Entity::AllQueues | Entity::Workers => true,
            Entity::Queue(id) => self.queues.contains_key(id),
            Entity::Worker(name) => self.workers.contains_key(name),
        }
    }

    /// Sets every gauge to what the state implies: a no-op when the history
    /// followed every command, a fresh start on the first command ever or
    /// after the history was off.
    fn reconcile_history(&mut self, changed: &mut Vec<Key>) {
        let mut queues: BTreeSet<u64> = self.queues.keys().copied().collect();
        let tracked = self.history.tracks().filter_map(|(e, _)| match e {
            Entity::Queue(id) => Some(*id),
            _ => None,
        });
        queues.extend(tracked.collect::<Vec<_>>());
        let total: u64 = self.queues.keys().map(|&q| self.queued(q) as u64).sum();
        for q in queues {
            let value = self.queued(q) as u64;
            self.history_set(Entity::Queue(q), &[(history::QUEUED, value)], changed);
        }
        self.history_set(Entity::AllQueues, &[(history::QUEUED, total)], changed);
        let names: Vec<String> = self.workers.keys().cloned().collect();
        let (mut active, mut alive) = (0, 0);
        for name in names {
            let (a, b) = status(&self.workers[&name]);
            (alive, active) = (alive + a, active + b);
            let values = [(history::ALIVE, a), (history::BUSY, b)];
            self.history_set(Entity::Worker(name), &values, changed);
        }
        let values = [(history::ACTIVE, active), (history::TOTAL, alive)];
        self.history_set(Entity::Workers, &values, changed);
    }

    /// Sets gauges of `entity` at the stamped time (creating its track).
    fn history_set(&mut self, entity: Entity, values: &[(usize, u64)], changed: &mut Vec<Key>) {
        let now = self.clock_ms;
        let mut rows = Vec::new();
        let unchanged = self
            .history
            .track(&entity)
            .is_some_and(|t| values.iter().all(|&(i, v)| t.values.get(i) == Some(&v)));
        if unchanged {
            return;
        }
        let zeros = || vec![0; values.iter().map(|&(i, _)| i + 1).max().unwrap_or(0)];
        self.history.with_track(&entity, zeros, |t, s| {
            for &(i, v) in values {
                t.set(s, i, v, now, &mut rows);
            }
        });
        emit(&entity, rows, changed);
        changed.push(Key::HistoryTrack(entity));
    }

    /// The current gauge `i` of `entity` (0 when it has no track).
    fn gauge(&self, entity: &Entity, i: usize) -> u64 {
        self.history
            .track(entity)
            .and_then(|t| t.values.get(i).copied())
            .unwrap_or(0)
    }

    /// After each command: the queues and workers it changed (their keys in
    /// `changed[start..]`) update their gauges and the totals.
    pub(super) fn history_observe(&mut self, start: usize, changed: &mut Vec<Key>) {
        if !self.history.settings().enabled {
            return;
        }
        let mut queues = BTreeSet::new();
        let mut workers = BTreeSet::new();
        for key in &changed[start..] {
            match key {
                Key::Queue(id) => {
                    queues.insert(*id);
                }
                Key::Worker(name) => {
                    workers.insert(name.clone());
                }
                _ => {}
            }
        }
        for q in queues {
            let entity = Entity::Queue(q);
            let (old, new) = (self.gauge(&entity, history::QUEUED), self.queued(q) as u64);
            // A new queue gets its track now, even empty: a reconcile at a
            // node's start must find nothing to do.
            if self.history.track(&entity).is_none() {
                self.history_set(entity.clone(), &[(history::QUEUED, new)], changed);
            }
            if old != new {
                let total =
                    (self.gauge(&Entity::AllQueues, history::QUEUED) + new).saturating_sub(old);
                self.history_set(entity.clone(), &[(history::QUEUED, new)], changed);
                self.history_set(Entity::AllQueues, &[(history::QUEUED, total)], changed);
            }
            // A deleted queue's track stays while it has rows (the sweep
            // drops it after they expire); one with none goes now.
            if !self.queues.contains_key(&q) && self.history.drop_if_empty(&entity) {
                changed.push(Key::HistoryTrack(entity));
            }
        }
        for name in workers {
            let (alive, busy) = self.workers.get(&name).map_or((0, 0), status);
            let entity = Entity::Worker(name);
            let old = (
                self.gauge(&entity, history::ALIVE),
                self.gauge(&entity, history::BUSY),
            );
            if old == (alive, busy) {
                continue;
            }
            let active =
                (self.gauge(&Entity::Workers, history::ACTIVE) + busy).saturating_sub(old.1);
            let total =
                (self.gauge(&Entity::Workers, history::TOTAL) + alive).saturating_sub(old.0);
            let values = [(history::ALIVE, alive), (history::BUSY, busy)];
            self.history_set(entity, &values, changed);
            let values = [(history::ACTIVE, active), (history::TOTAL, total)];
            self.history_set(Entity::Workers, &values, changed);
        }
    }

    /// Adds samples to `entity`'s open buckets at the stamped time.
    fn history_sample(&mut self, entity: Entity, samples: &[(usize, u64)], changed: &mut Vec<Key>) {
        if !self.history.settings().enabled || samples.is_empty() {
            return;
        }
        let now = self.clock_ms;
        let mut rows = Vec::new();
        self.history.with_track(&entity, Vec::new, |t, s| {
            for &(i, v) in samples {
                t.sample(s, i, v, now, &mut rows);
            }
        });
        emit(&entity, rows, changed);
        changed.push(Key::HistoryTrack(entity));
    }

    /// A lease from `queue` of a task that waited `wait_ms` there.
    pub(super) fn history_lease(&mut self, queue: u64, wait_ms: u64, changed: &mut Vec<Key>) {
        self.count_queue(queue, |c| c.leased(wait_ms), changed);
        let wait = [(history::WAIT_MS, wait_ms)];
        self.history_sample(Entity::Queue(queue), &wait, changed);
        self.history_sample(Entity::AllQueues, &wait, changed);
    }

    /// A usage sample of `worker` (a new one: not the one it last reported).
    pub(super) fn history_usage(&mut self, worker: &str, usage: &Usage, changed: &mut Vec<Key>) {
        let mut samples = Vec::new();
        let fields = [
            (history::CPU_PERMILLE, usage.cpu_permille.map(u64::from)),
            (history::MEMORY_BYTES, usage.memory_used_bytes),
            (history::NET_RX, usage.net_rx_bytes_per_s),
            (history::NET_TX, usage.net_tx_bytes_per_s),
        ];
        samples.extend(fields.into_iter().filter_map(|(i, v)| Some((i, v?))));
        for gpu in usage.gpus.iter().filter(|g| g.index < history::GPUS_MAX) {
            samples.push((history::gpu_util(gpu.index), u64::from(gpu.util_permille)));
            samples.push((history::gpu_memory(gpu.index), gpu.memory_used_bytes));
        }
        self.history_sample(Entity::Worker(worker.to_string()), &samples, changed);
    }

    /// Changes the counters of `queue`, if it exists.
    pub(super) fn count_queue(
        &mut self,
        queue: u64,
        f: impl FnOnce(&mut QueueCounters),
        changed: &mut Vec<Key>,
    ) {
        if self.queues.contains_key(&queue) {
            f(self.history.counters_mut(queue));
            changed.push(Key::QueueCounters(queue));
        }
    }

    /// A task of `queue` entered terminal state `to`.
    pub(super) fn count_finished(&mut self, queue: u64, to: TaskState, changed: &mut Vec<Key>) {
        if to.terminal() {
            self.count_queue(queue, |c| c.finished(to), changed);
        }
    }

    /// A deleted queue's counters go with it.
    pub(super) fn forget_counters(&mut self, queue: u64, changed: &mut Vec<Key>) {
        if self.history.remove_counters(queue) {
            changed.push(Key::QueueCounters(queue));
        }
    }

    /// The gauges against a recount of the state (see the module's
    /// invariant), unless a reconcile is still to come.
    pub(super) fn check_history(&self) {
        self.history.check_index();
        if !self.history.settings().enabled || self.history.reconcile_pending() {
            return;
        }
        let mut total = 0;
        for &q in self.queues.keys() {
            let queued = self.queued(q) as u64;
            assert_eq!(
                self.gauge(&Entity::Queue(q), history::QUEUED),
                queued,
                "queue {q}"
            );
            total += queued;
        }
        assert_eq!(self.gauge(&Entity::AllQueues, history::QUEUED), total);
        let (mut active, mut alive) = (0, 0);
        for (name, w) in &self.workers {
            let (a, b) = status(w);
            let entity = Entity::Worker(name.clone());
            assert_eq!(self.gauge(&entity, history::ALIVE), a, "worker {name}");
            assert_eq!(self.gauge(&entity, history::BUSY), b, "worker {name}");
            (alive, active) = (alive + a, active + b);
        }
        assert_eq!(self.gauge(&Entity::Workers, history::ACTIVE), active);
        assert_eq!(self.gauge(&Entity::Workers, history::TOTAL), alive);
    }
}

/// A worker's (alive, busy): not lost, and not lost while holding a task.
fn status(w: &Worker) -> (u64, u64) {
    let alive = w.state == WorkerState::Active;
    (u64::from(alive), u64::from(alive && !w.tasks.is_empty()))
}

/// Turns the rows a track closed into keys for storage.
fn emit(entity: &Entity, rows: Vec<Row>, changed: &mut Vec<Key>) {
    for mut row in rows {
        row.entity = entity.clone();
        changed.push(Key::HistoryRow(Box::new(row)));
    }
}
