//! The properties both programs judge a history by, one file each (in the
//! spirit of openraft's `invariants/`). Each is a pure function of the
//! history and the replicas' views that returns what it found; none reads
//! a clock, a node or a file, and none decides what a program must feed it.
//!
//! - [`submits`]: acknowledged exactly once, unknown all or nothing,
//!   nothing from nowhere (guarantees 1 and 2).
//! - [`fencing`]: a token names one lease; a stale holder is refused; a
//!   task's accepted tokens never go back; no task succeeds twice
//!   (guarantee 3).
//! - [`leases`]: no lease after a success; with the workers gone, every
//!   lease expires (guarantee 4).
//! - [`replicas`]: same index, same digest and tasks; each replica's queues
//!   consistent; a replica reloads what it served (guarantee 5).
//! - [`outcomes`]: an acknowledged write's idempotency record holds what the
//!   client got, so a retry is answered the same.
//! - [`reads`]: a linearizable read observes every write acknowledged before
//!   it was sent, and reads on one replica never go back.
//!
//! Messages name the key, the task and the times, so that a person can find
//! them in a trace or in the node logs.

pub mod fencing;
pub mod leases;
pub mod outcomes;
pub mod reads;
pub mod replicas;
pub mod submits;

#[cfg(test)]
pub mod fixture;

use std::collections::BTreeMap;

/// Acknowledged tasks missing from the final state.
pub const LOST: &str = "lost";
/// Tasks beyond the one (or the batch) an idempotency key asked for.
pub const DUPLICATES: &str = "duplicates";
/// Two leases of one task valid at once, as the clients saw it.
pub const DOUBLE_LEASES: &str = "double leases";
/// Replicas whose applied index or digest differs from the first's.
pub const DIGEST_MISMATCHES: &str = "digest mismatches";

/// What a property found: the violations, and the counts a report shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub violations: Vec<String>,
    counts: BTreeMap<&'static str, u64>,
}

impl Findings {
    /// A violation.
    pub fn push(&mut self, violation: String) {
        self.violations.push(violation);
    }

    /// A violation that adds `n` to the count `name`.
    pub fn counted(&mut self, name: &'static str, n: u64, violation: String) {
        *self.counts.entry(name).or_default() += n;
        self.violations.push(violation);
    }

    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn extend(&mut self, other: Findings) {
        self.violations.extend(other.violations);
        for (name, n) in other.counts {
            *self.counts.entry(name).or_default() += n;
        }
    }
}

/// The properties together on a history that laneq's model really applied:
/// clean, it passes; a lost submit or a stale token accepted is found.
#[cfg(test)]
mod tests {
    use laneq::model::{NewTask, Op, Reply as ModelReply, Response, Write};

    use super::super::model::record;
    use super::fixture::*;
    use super::*;

    fn all(history: &History, replica: &Replica) -> Vec<String> {
        let one = std::slice::from_ref(replica);
        let mut found = submits::check(history, &replica.tasks);
        found.extend(fencing::check(history));
        found.extend(fencing::ends(history, &replica.tasks));
        found.extend(leases::after_success(history));
        found.extend(outcomes::check(history, replica));
        found.extend(reads::check(history));
        found.extend(replicas::agree(one));
        found.extend(replicas::listings(one));
        found.extend(replicas::reloaded(one, one));
        found.violations
    }

    /// `op` under `key`, acknowledged with `reply` by the entry at `index`.
    fn acked(key: &str, op: Op, reply: ModelReply, index: u64) -> Record {
        let write = Write {
            idempotency_key: key.into(),
            actor: "test".into(),
            op,
        };
        let response = Response {
            result: Ok(reply),
            replayed: false,
        };
        record("test", &write, (900, 905), Some((response, index)))
    }

    #[test]
    fn a_clean_history_passes() {
        let (history, replica) = clean();
        assert_eq!(all(&history, &replica), Vec::<String>::new());
    }

    #[test]
    fn a_lost_submit_is_found() {
        let (mut history, replica) = clean();
        let op = Op::SubmitTasks {
            tasks: vec![NewTask::default()],
        };
        let ids = vec![9];
        let reply = ModelReply::TasksSubmitted { ids };
        history.records.push(acked("s-9", op, reply, 9));
        let errors = all(&history, &replica).join("\n");
        assert!(errors.contains("key s-9 (test, sent at 900 ms"), "{errors}");
        assert!(errors.contains("the write was lost"), "{errors}");
        assert!(
            errors.contains("key s-9: task 9 was acknowledged"),
            "{errors}"
        );
    }

    #[test]
    fn a_stale_token_accepted_is_found() {
        let (mut history, replica) = clean();
        let stale = Op::StartTask {
            id: 1,
            fencing_token: 1,
        };
        history
            .records
            .push(acked("w-9", stale, ModelReply::Task { id: 1 }, 9));
        let errors = all(&history, &replica).join("\n");
        assert!(errors.contains("stale token 1 accepted"), "{errors}");
    }
}
