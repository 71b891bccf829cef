//! Apply: one stamped command in, its response out, and the keys of every
//! record it changed. A write runs under its idempotency key, is validated
//! again, and goes to the function of its operation in the file of its area.
//!
//! **Architecture Invariant:** the response and the changes depend on the
//! state and the command alone (the stamp stands in for a clock and a random
//! source), so every replica applies the same log to the same state.

use super::{Key, State};
use crate::model::limits::{IDEMPOTENCY_PRUNE_PER_APPLY, IDEMPOTENCY_RETENTION_MS};
use crate::model::{
    validate_write, validate_writes, Command, IdempotencyRecord, ModelError, Op, Reply, Response,
    Write, Writes, ACTOR_ANONYMOUS,
};

/// The seed of the `i`-th write of a batch: distinct per write,
/// and the same on every replica (a SplitMix64 step).
fn sub_seed(seed: u64, i: usize) -> u64 {
    let mut z = seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
thread_local! {
    /// Whether apply checks every invariant after each command in this
    /// thread's debug build (O(n) a command). Only a test that drives
    /// millions of tasks turns it off, and checks them itself once a
    /// simulated day (`store::month`).
    pub(crate) static CHECK_EACH_APPLY: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

#[cfg(debug_assertions)]
fn check_each_apply() -> bool {
    #[cfg(test)]
    return CHECK_EACH_APPLY.get();
    #[cfg(not(test))]
    true
}

impl State {
    /// Applies one stamped command outside the log (tests, benchmarks):
    /// [`Self::apply_at`] index 0.
    pub fn apply(&mut self, cmd: &Command, changed: &mut Vec<Key>) -> Response {
        self.apply_at(0, cmd, changed)
    }

    /// Applies the stamped command of log entry `index`. Returns its response
    /// and appends to `changed` every key whose record must be persisted.
    /// Task transitions record `index`; nothing else depends on it.
    pub fn apply_at(&mut self, index: u64, cmd: &Command, changed: &mut Vec<Key>) -> Response {
        self.log_index = index;
        let response = self.apply_command(cmd, changed);
        self.log_index = 0;
        response
    }

    fn apply_command(&mut self, cmd: &Command, changed: &mut Vec<Key>) -> Response {
        self.clock_ms = self.clock_ms.max(cmd.stamp.now_ms);
        changed.push(Key::Meta);
        self.expire_idempotency(changed);
        self.history_tick(changed);
        let start = changed.len();
        let response = match &cmd.writes {
            Writes::One(write) => self.apply_write(write, cmd.stamp.seed, changed),
            // Each write of a batch applies on its own, in order, with its
            // own key and outcome, as if it had its own entry.
            Writes::Batch(writes) => Response {
                result: validate_writes(&cmd.writes).map(|()| {
                    let seed = |i| sub_seed(cmd.stamp.seed, i);
                    let each = writes.iter().enumerate();
                    Reply::Batch(
                        each.map(|(i, w)| self.apply_write(w, seed(i), changed))
                            .collect(),
                    )
                }),
                replayed: false,
            },
        };
        // Once per command, not per write: every write of a batch has the
        // same stamped time, so the gauges' values in between last no time.
        self.history_observe(start, changed);
        #[cfg(debug_assertions)]
        if check_each_apply() {
            self.check_invariants();
        }
        response
    }

    /// Applies one client write under its idempotency key.
    fn apply_write(&mut self, write: &Write, seed: u64, changed: &mut Vec<Key>) -> Response {
        let key = &write.idempotency_key;
        if let Some(seen) = self.idempotency.get(key) {
            return Response {
                result: seen.result.clone(),
                replayed: true,
            };
        }
        let result = validate_write(write).and_then(|()| self.apply_op(write, seed, changed));
        // A malformed key cannot be remembered; every other outcome is, so a
        // retry answers the same even when the first attempt was refused.
        // Heartbeat batches, expiry and collects, which nodes write by themselves
        // several times a second and which are harmless to apply twice, are
        // not remembered: their records would pile up for a day.
        let internal = matches!(
            write.op,
            Op::WorkerHeartbeats { .. } | Op::ExpireLeases { .. } | Op::CollectExpired
        );
        if !internal && crate::model::validate::idempotency_key(key).is_ok() {
            self.insert_idempotency(IdempotencyRecord {
                key: key.clone(),
                first_ms: self.clock_ms,
                result: result.clone(),
            });
            changed.push(Key::Idempotency(self.clock_ms, key.clone()));
        }
        Response {
            result,
            replayed: false,
        }
    }

    /// Runs a validated write's operation. Worker and lease operations go on
    /// in [`Self::apply_lease_op`].
    fn apply_op(
        &mut self,
        write: &Write,
        seed: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let actor = match write.actor.as_str() {
            "" => ACTOR_ANONYMOUS,
            a => a,
        };
        match &write.op {
            Op::CreateQueue { name, pool, spec } => self.create_queue(name, pool, spec, changed),
            Op::SubmitTasks { tasks } => {
                self.submit_tasks(tasks, actor, &write.idempotency_key, changed)
            }
            Op::UpdateQueue {
                name,
                pool,
                spec,
                expected_version,
            } => self.update_queue(name, pool.as_deref(), spec, *expected_version, changed),
            Op::DrainQueue { name } => self.drain_queue(name, changed),
            Op::ActivateQueue { name } => self.activate_queue(name, changed),
            Op::RenameQueue { name, new_name } => self.rename_queue(name, new_name, changed),
            Op::ClearQueue { name } => self.clear_queue(name, actor, changed),
            Op::DeleteQueue { name, force } => self.delete_queue(name, *force, actor, changed),
            Op::CreatePool { name, clusters } => self.create_pool(name, clusters, changed),
            Op::AddCluster { pool, cluster } => self.add_cluster(pool, cluster, changed),
            Op::RemoveCluster { pool, cluster } => self.remove_cluster(pool, cluster, changed),
            Op::CreateProject { name, settings } => self.create_project(name, settings, changed),
            Op::UpdateProject {
                name,
                settings,
                expected_version,
            } => self.update_project(name, settings, *expected_version, changed),
            Op::SetDefaultQueue { queue } => self.set_default_queue(queue),
            Op::CancelTask { id, reason } => self.cancel_task(*id, actor, reason, changed),
            Op::DequeueTask { id, reason } => self.dequeue_task(*id, actor, reason, changed),
            Op::MoveTask { id, to } => self.move_task(*id, to, actor, changed),
            Op::CreateToken { .. } => self.create_token(&write.op, actor, changed),
            Op::RevokeToken { name } => self.revoke_token(name, changed),
            Op::SetRetention {
                age_ms,
                count,
                lost_worker_ttl_ms,
            } => self.set_retention(*age_ms, *count, *lost_worker_ttl_ms, changed),
            Op::SetQueueRetention {
                name,
                age_ms,
                count,
            } => self.set_queue_retention(name, *age_ms, *count, changed),
            Op::CollectExpired => self.collect_expired(changed),
            Op::RemoveWorker { name, force } => self.remove_worker(name, *force, actor, changed),
            Op::BatchSlot => Err(ModelError::invalid("op", "not an operation")),
            Op::RegisterWorker(_)
            | Op::LeaseTasks { .. }
            | Op::WorkerHeartbeats { .. }
            | Op::StartTask { .. }
            | Op::StartTaskOn { .. }
            | Op::ReportProgress { .. }
            | Op::CompleteTask { .. }
            | Op::ReleaseTask { .. }
            | Op::ExpireLeases { .. } => self.apply_lease_op(&write.op, actor, seed, changed),
        }
    }

    /// The worker and lease operations of [`Self::apply_op`].
    fn apply_lease_op(
        &mut self,
        op: &Op,
        actor: &str,
        seed: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        match op {
            Op::RegisterWorker(r) => self.register_worker(r, changed),
            Op::LeaseTasks {
                worker,
                max_tasks,
                ttl_ms,
            } => self.lease_tasks(worker, *max_tasks, *ttl_ms, seed, changed),
            Op::WorkerHeartbeats { reports, ttl_ms } => self.heartbeats(reports, *ttl_ms, changed),
            Op::StartTask { id, fencing_token } => {
                self.start_task(*id, *fencing_token, &[], changed)
            }
            Op::StartTaskOn {
                id,
                fencing_token,
                gpus,
            } => self.start_task(*id, *fencing_token, gpus, changed),
            Op::ReportProgress {
                id,
                fencing_token,
                iteration,
            } => self.report_progress(*id, *fencing_token, *iteration, changed),
            Op::CompleteTask {
                id,
                fencing_token,
                succeeded,
                exit_code,
                condition,
            } => self.complete_task(
                *id,
                *fencing_token,
                *succeeded,
                *exit_code,
                condition,
                changed,
            ),
            Op::ReleaseTask {
                id,
                fencing_token,
                reason,
            } => self.release_task(*id, *fencing_token, actor, reason, changed),
            Op::ExpireLeases { worker_timeout_ms } => {
                self.expire_leases(*worker_timeout_ms, changed)
            }
            _ => unreachable!("apply_op routes only worker and lease operations here"),
        }
    }

    pub(super) fn insert_idempotency(&mut self, record: IdempotencyRecord) {
        self.idempotency_by_time
            .insert((record.first_ms, record.key.clone()));
        self.idempotency.insert(record.key.clone(), record);
    }

    /// Forgets keys older than the retention, a bounded number per apply.
    fn expire_idempotency(&mut self, changed: &mut Vec<Key>) {
        let horizon = self.clock_ms.saturating_sub(IDEMPOTENCY_RETENTION_MS);
        for _ in 0..IDEMPOTENCY_PRUNE_PER_APPLY {
            let Some((first_ms, key)) = self.idempotency_by_time.first().cloned() else {
                break;
            };
            if first_ms >= horizon {
                break;
            }
            self.idempotency_by_time.pop_first();
            self.idempotency.remove(&key);
            changed.push(Key::Idempotency(first_ms, key));
        }
    }
}
