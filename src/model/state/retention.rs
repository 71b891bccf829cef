//! Retention: the organisation's and each queue's rules, the collect that
//! removes finished tasks and lost workers they let go, and the removal of a
//! worker by hand.
//!
//! A collect is bounded: it takes at most `COLLECT_MAX_PER_COMMAND` tasks,
//! oldest first per queue from the derived `finished` index, so it costs
//! O(removed · log n) plus a look at each queue's oldest; the leader repeats
//! it while [`State::collectable`] says more can go. What goes is decided by
//! the command's stamped time and the rules as they are when it applies, so
//! a change of rules takes effect at the next collect.
//!
//! A removed task is gone as if it never existed: nothing else refers to a
//! finished task by id (queue orders, run and in-flight counts, leases and
//! workers hold only queued and in-flight ones), and the per-queue counters
//! and the metrics history count events, not tasks, so they keep every task
//! ever finished.

use super::{Key, State};
use crate::model::limits::{COLLECT_MAX_PER_COMMAND, COLLECT_WORKERS_MAX_PER_COMMAND};
use crate::model::retention::{OrgRetention, QueueRetention, Retention};
use crate::model::worker::WorkerState;
use crate::model::{ModelError, Reply};

impl State {
    /// The organisation's retention.
    pub fn retention(&self) -> &OrgRetention {
        &self.retention
    }

    /// A queue's own rules, if it has any.
    pub fn queue_retention(&self, queue: u64) -> Option<&QueueRetention> {
        self.queue_retention.get(&queue)
    }

    /// The rules a queue's finished tasks follow (a deleted queue's: the
    /// organisation's).
    pub fn retention_of(&self, queue: u64) -> Retention {
        Retention::of_queue(&self.retention, self.queue_retention.get(&queue))
    }

    /// How many finished tasks of a queue are kept now.
    pub fn finished_kept(&self, queue: u64) -> u64 {
        self.finished.get(&queue).map_or(0, |f| f.len() as u64)
    }

    /// Whether a collect at `now_ms` would remove anything: a queue whose
    /// oldest finished task its rules let go, or a lost worker past its
    /// TTL. O(queues + workers), no task is looked at but each queue's
    /// oldest.
    pub fn collectable(&self, now_ms: u64) -> bool {
        self.next_collectable_queue(now_ms, 0).is_some() || self.lost_worker_due(now_ms)
    }

    /// The first queue id from `from` with a finished task to let go.
    fn next_collectable_queue(&self, now_ms: u64, from: u64) -> Option<u64> {
        self.finished.range(from..).find_map(|(&queue, kept)| {
            let &(finished_ms, _) = kept.first()?;
            let r = self.retention_of(queue);
            r.lets_go(finished_ms, kept.len() as u64, now_ms)
                .then_some(queue)
        })
    }

    fn lost_worker_due(&self, now_ms: u64) -> bool {
        self.workers
            .values()
            .any(|w| self.worker_expired(w, now_ms))
    }

    /// A lost worker, holding nothing, not seen for the lost-worker TTL.
    fn worker_expired(&self, w: &crate::model::worker::Worker, now_ms: u64) -> bool {
        let ttl = self.retention.lost_worker_ttl_ms;
        w.state == WorkerState::Lost
            && w.tasks.is_empty()
            && ttl > 0
            && w.last_seen_ms.saturating_add(ttl) <= now_ms
    }

    pub(super) fn set_retention(
        &mut self,
        age_ms: Option<u64>,
        count: Option<u64>,
        lost_worker_ttl_ms: Option<u64>,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let r = &mut self.retention;
        r.tasks.age_ms = age_ms.unwrap_or(r.tasks.age_ms);
        r.tasks.count = count.unwrap_or(r.tasks.count);
        r.lost_worker_ttl_ms = lost_worker_ttl_ms.unwrap_or(r.lost_worker_ttl_ms);
        changed.push(Key::OrgRetention);
        Ok(Reply::Config)
    }

    /// Sets or clears a queue's own rules; one that sets none is no record.
    pub(super) fn set_queue_retention(
        &mut self,
        name: &str,
        age_ms: Option<Option<u64>>,
        count: Option<Option<u64>>,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let id = self.queue_id("name", name)?;
        let mut own = self
            .queue_retention
            .get(&id)
            .copied()
            .unwrap_or(QueueRetention {
                queue: id,
                age_ms: None,
                count: None,
            });
        own.age_ms = age_ms.unwrap_or(own.age_ms);
        own.count = count.unwrap_or(own.count);
        if own.is_default() {
            self.queue_retention.remove(&id);
        } else {
            self.queue_retention.insert(id, own);
        }
        changed.push(Key::QueueRetention(id));
        Ok(Reply::QueueChanged {
            name: name.to_string(),
        })
    }

    /// A deleted queue's rules go with it; its finished tasks then follow
    /// the organisation's.
    pub(super) fn forget_queue_retention(&mut self, queue: u64, changed: &mut Vec<Key>) {
        if self.queue_retention.remove(&queue).is_some() {
            changed.push(Key::QueueRetention(queue));
        }
    }

    /// One step of the collect, at the stamped time: finished tasks the
    /// rules let go, oldest first per queue, and lost workers past the TTL,
    /// each at most a bounded number.
    pub(super) fn collect_expired(&mut self, changed: &mut Vec<Key>) -> Result<Reply, ModelError> {
        let now = self.clock_ms;
        let mut tasks = 0;
        let mut from = 0;
        while tasks < COLLECT_MAX_PER_COMMAND {
            let Some(queue) = self.next_collectable_queue(now, from) else {
                break;
            };
            let r = self.retention_of(queue);
            let kept = self.finished.get_mut(&queue).expect("found above");
            while tasks < COLLECT_MAX_PER_COMMAND {
                let Some(&(finished_ms, id)) = kept.first() else {
                    break;
                };
                if !r.lets_go(finished_ms, kept.len() as u64, now) {
                    break;
                }
                kept.pop_first();
                let task = self.tasks.remove(&id).expect("a finished task is indexed");
                debug_assert!(task.state.terminal(), "only finished tasks are collected");
                changed.push(Key::Task(id));
                tasks += 1;
            }
            if kept.is_empty() {
                self.finished.remove(&queue);
            }
            from = queue + 1;
        }
        let lost: Vec<String> = (self.workers.values())
            .filter(|w| self.worker_expired(w, now))
            .map(|w| w.name.clone())
            .take(COLLECT_WORKERS_MAX_PER_COMMAND)
            .collect();
        for name in &lost {
            self.workers.remove(name);
            changed.push(Key::Worker(name.clone()));
        }
        Ok(Reply::Collected {
            tasks: tasks as u64,
            workers: lost.len() as u64,
            remaining: self.collectable(now),
        })
    }

    /// Removes a worker now. One holding tasks is refused unless `force`,
    /// which first puts each back at the front of its queue (the attempt
    /// does not count, as a release).
    pub(super) fn remove_worker(
        &mut self,
        name: &str,
        force: bool,
        actor: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let w = self
            .workers
            .get(name)
            .ok_or_else(|| ModelError::not_found("name", format!("no worker named {name:?}")))?;
        let held: Vec<u64> = w.tasks.iter().copied().collect();
        if !held.is_empty() && !force {
            return Err(ModelError::precondition(
                "name",
                format!(
                    "worker {name:?} holds {} task(s); wait for them, or remove it with force \
                     to put them back in their queues",
                    held.len()
                ),
            ));
        }
        let reason = format!("worker {name} was removed");
        for &id in &held {
            self.requeue_front(id, actor, &reason, false, changed);
        }
        self.workers.remove(name);
        changed.push(Key::Worker(name.to_string()));
        Ok(Reply::WorkerRemoved {
            name: name.to_string(),
            requeued: held.len() as u64,
        })
    }

    pub fn load_org_retention(&mut self, retention: OrgRetention) {
        self.retention = retention;
    }

    pub fn load_queue_retention(&mut self, own: QueueRetention) {
        self.queue_retention.insert(own.queue, own);
    }

    /// Each queue's own rules are under its id, name a queue that exists,
    /// and set something.
    pub(super) fn check_retention(&self) {
        for (id, own) in &self.queue_retention {
            assert_eq!(*id, own.queue, "queue rules under their queue's id");
            assert!(self.queues.contains_key(id), "rules of unknown queue {id}");
            assert!(!own.is_default(), "queue {id}: rules that set nothing");
        }
        for (queue, kept) in &self.finished {
            assert!(!kept.is_empty(), "queue {queue}: an empty finished index");
        }
    }
}
