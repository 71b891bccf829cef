//! The invariants that must hold after every apply, checked by rebuilding
//! every derived index from the records and comparing. Apply runs the check
//! in debug builds, the property tests after every step.
//!
//! **Architecture Invariant:** read-only, and a violation panics: a diverged
//! state machine must stop, not serve.

use super::{State, DEFAULT_POOL, DEFAULT_PROJECT, DEFAULT_QUEUE, DEFAULT_QUEUE_ID};
use crate::model::limits::TIMELINE_MAX;
use crate::model::spec::QueueState;
use crate::model::Clearing;

impl State {
    /// Checks the invariants that must hold after every apply. Panics on a
    /// violation: a diverged state machine must stop, not serve.
    ///
    /// Every derived index is rebuilt from the records and compared, so the
    /// counts match the contents, the positions in each queue are a
    /// permutation, and no task is in two queues.
    pub fn check_invariants(&self) {
        self.check_defaults();
        self.check_queues_and_projects();
        self.check_tokens();
        let rebuilt = self.rebuilt();
        assert_eq!(rebuilt.in_flight, self.in_flight, "in-flight counts");
        assert_eq!(
            rebuilt.lease_expiry, self.lease_expiry,
            "lease expiry index"
        );
        assert_eq!(
            rebuilt.pending_by_project, self.pending_by_project,
            "per-project orders"
        );
        self.check_holders();
        assert_eq!(
            rebuilt.queued_per_run, self.queued_per_run,
            "per-run counts"
        );
        self.check_orders(&rebuilt);
        assert_eq!(rebuilt.finished, self.finished, "finished tasks index");
        self.check_retention();
        if let Some((&max_id, _)) = self.tasks.last_key_value() {
            assert!(self.next_task_id > max_id, "task ids only grow");
        }
        assert_eq!(self.idempotency.len(), self.idempotency_by_time.len());
        self.check_history();
    }

    /// The default queue, pool and project exist, and so does the
    /// organisation's default queue.
    fn check_defaults(&self) {
        let default = self
            .queues
            .get(&DEFAULT_QUEUE_ID)
            .expect("the default queue must exist");
        assert_eq!(
            default.name, DEFAULT_QUEUE,
            "the default queue keeps its name"
        );
        assert_eq!(
            default.state,
            QueueState::Active,
            "the default queue is always active"
        );
        assert!(
            self.pools.contains_key(DEFAULT_POOL),
            "the default pool must exist"
        );
        assert!(
            self.projects.contains_key(DEFAULT_PROJECT),
            "the default project must exist"
        );
        assert!(
            self.queues.contains_key(&self.default_queue),
            "the organisation's default queue must exist"
        );
    }

    /// Queues are indexed by name, live in known pools, and a drained or
    /// clearing queue holds what its state allows; projects name only
    /// existing queues.
    fn check_queues_and_projects(&self) {
        assert_eq!(self.queue_ids.len(), self.queues.len());
        for q in self.queues.values() {
            assert_eq!(self.queue_ids.get(&q.name), Some(&q.id), "queue name index");
            assert!(
                self.pools.contains_key(&q.pool),
                "queue {} in unknown pool {}",
                q.name,
                q.pool
            );
            assert!(q.id < self.next_queue_id, "queue ids only grow");
            if q.state == QueueState::Drained {
                assert_eq!(self.queued(q.id) as u64 + self.in_flight_tasks(q.id), 0);
            }
            if let Some(kind) = q.clearing {
                assert!(
                    self.queued(q.id) > 0,
                    "queue {}: a clear with nothing left",
                    q.name
                );
                if kind == Clearing::Delete {
                    assert_eq!(self.in_flight_tasks(q.id), 0, "queue {}: deleting", q.name);
                }
            }
        }
        for p in self.projects.values() {
            for q in p.default_queue.iter().chain(&p.allowed_queues) {
                assert!(
                    self.queues.contains_key(q),
                    "project {} names queue {q}",
                    p.name
                );
            }
        }
    }

    /// A state holding the same queues and tasks, its derived indexes built
    /// afresh; each task is checked to be in a known queue on the way.
    fn rebuilt(&self) -> Self {
        let mut rebuilt = Self::new();
        rebuilt.queues.clear();
        rebuilt.queue_ids.clear();
        rebuilt.pending.clear();
        for q in self.queues.values() {
            rebuilt.insert_queue(q.clone());
        }
        for t in self.tasks.values() {
            assert!(
                t.state.terminal() || self.queues.contains_key(&t.queue),
                "task {} is {} in unknown queue {}",
                t.id,
                t.state.as_str(),
                t.queue
            );
            assert!(!t.timeline.is_empty() && t.timeline.len() <= TIMELINE_MAX);
            assert!(
                t.timeline.windows(2).all(|w| w[0].index <= w[1].index),
                "task {}: timeline indexes go back",
                t.id
            );
            rebuilt.insert_task((**t).clone());
        }
        rebuilt
    }

    /// Each worker's tasks are in flight and name it, and each in-flight
    /// task is held by its worker with a token already issued.
    fn check_holders(&self) {
        for w in self.workers.values() {
            assert!(
                self.pools.contains_key(&w.pool),
                "worker {} in unknown pool",
                w.name
            );
            for t in &w.tasks {
                let task = &self.tasks[t];
                assert!(
                    task.state.in_flight(),
                    "worker {} holds task {t}, which is {}",
                    w.name,
                    task.state.as_str()
                );
                assert_eq!(
                    task.worker(),
                    Some(w.name.as_str()),
                    "task {t} names its worker"
                );
            }
        }
        for t in self.tasks.values().filter(|t| t.state.in_flight()) {
            let w = t.worker().and_then(|w| self.workers.get(w));
            assert!(
                w.is_some_and(|w| w.tasks.contains(&t.id)),
                "in-flight task {} is held",
                t.id
            );
            assert!(
                t.fencing_token() < self.next_fencing_token,
                "fencing tokens only grow"
            );
        }
    }

    /// Each queue's order is sound, up to date and its positions a
    /// permutation.
    fn check_orders(&self, rebuilt: &Self) {
        assert_eq!(
            self.pending.keys().collect::<Vec<_>>(),
            self.queues.keys().collect::<Vec<_>>()
        );
        for (queue, order) in &self.pending {
            order.check_invariants();
            let ours: Vec<(u64, u128)> = order.iter().collect();
            let theirs: Vec<(u64, u128)> = rebuilt.pending[queue].iter().collect();
            assert_eq!(ours, theirs, "queue {queue}: order out of date");
            for (position, &(id, rank)) in ours.iter().enumerate() {
                assert_eq!(
                    order.position(id, rank),
                    Some(position),
                    "positions are a permutation"
                );
            }
        }
    }

    /// Every token is under its own name, has a digest of the right size,
    /// a scope that fits its role, and is bound to projects and pools that
    /// exist (neither can be deleted).
    fn check_tokens(&self) {
        use crate::model::limits::SHA256_BYTES;
        use crate::model::token::scope_fits_role;
        for (name, t) in &self.tokens {
            assert_eq!(name, &t.name, "token {name} is under its own name");
            assert_eq!(t.secret_sha256.len(), SHA256_BYTES, "token {name}'s digest");
            assert!(
                scope_fits_role(t.role, &t.projects, &t.pools).is_ok(),
                "token {name}'s scope fits its role"
            );
            assert!(
                t.projects.iter().all(|p| self.projects.contains_key(p)),
                "token {name}'s projects exist"
            );
            assert!(
                t.pools.iter().all(|p| self.pools.contains_key(p)),
                "token {name}'s pools exist"
            );
        }
    }
}
