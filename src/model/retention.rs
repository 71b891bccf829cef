//! How long finished tasks and lost workers are kept: the organisation's
//! policy ([`OrgRetention`], with a default), a queue's own rules
//! ([`QueueRetention`], kept apart from `QueueSpec` so that the queue's
//! record and the operations that carry a spec keep their encoding), and the
//! one rule that merges them ([`Retention::of_queue`]).
//!
//! The leader collects what the policy lets go, in bounded steps on its
//! stamped clock (`Op::CollectExpired`), as it finishes clears; apply decides
//! what goes by the command's stamp, so a change of policy takes effect at
//! the next step, without a restart.
//!
//! **Architecture Invariant:** plain data and pure rules; nothing here reads
//! a clock or the state.

use serde::{Deserialize, Serialize};

use super::limits::{
    LOST_WORKER_TTL_DEFAULT_MS, RETENTION_AGE_DEFAULT_MS, RETENTION_COUNT_DEFAULT,
};

/// The rules that bound a queue's finished tasks (succeeded, failed,
/// canceled, dequeued). A rule at 0 is off: with both off, finished tasks
/// are kept for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// A finished task goes this long after it finished (its last
    /// transition).
    pub age_ms: u64,
    /// At most this many finished tasks per queue: the oldest beyond go.
    pub count: u64,
}

/// The organisation's retention: the default of every queue, and how long a
/// lost worker is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRetention {
    pub tasks: Retention,
    /// A lost worker that has not come back for this long is removed; 0:
    /// never.
    pub lost_worker_ttl_ms: u64,
}

impl Default for OrgRetention {
    fn default() -> Self {
        Self {
            tasks: Retention {
                age_ms: RETENTION_AGE_DEFAULT_MS,
                count: RETENTION_COUNT_DEFAULT,
            },
            lost_worker_ttl_ms: LOST_WORKER_TTL_DEFAULT_MS,
        }
    }
}

/// A queue's own rules; a rule it does not set follows the organisation's.
/// Stored by queue id, so that it follows a rename; it goes with its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRetention {
    pub queue: u64,
    pub age_ms: Option<u64>,
    pub count: Option<u64>,
}

impl QueueRetention {
    /// Sets nothing: the queue follows the organisation's rules.
    pub fn is_default(&self) -> bool {
        self.age_ms.is_none() && self.count.is_none()
    }
}

impl Retention {
    /// The rules of a queue: its own where it has them, else the
    /// organisation's.
    pub fn of_queue(org: &OrgRetention, queue: Option<&QueueRetention>) -> Retention {
        Retention {
            age_ms: queue.and_then(|q| q.age_ms).unwrap_or(org.tasks.age_ms),
            count: queue.and_then(|q| q.count).unwrap_or(org.tasks.count),
        }
    }

    /// Whether the oldest finished task of a queue, finished at
    /// `finished_ms`, goes at `now_ms` when the queue keeps `kept`.
    pub fn lets_go(&self, finished_ms: u64, kept: u64, now_ms: u64) -> bool {
        let too_old = self.age_ms > 0 && finished_ms.saturating_add(self.age_ms) <= now_ms;
        let too_many = self.count > 0 && kept > self.count;
        too_old || too_many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_rule_overrides_the_organisation_and_zero_is_off() {
        let org = OrgRetention::default();
        let own = QueueRetention {
            queue: 2,
            age_ms: Some(0),
            count: None,
        };
        let r = Retention::of_queue(&org, Some(&own));
        assert_eq!((r.age_ms, r.count), (0, RETENTION_COUNT_DEFAULT));
        assert!(!r.lets_go(0, RETENTION_COUNT_DEFAULT, u64::MAX), "age off");
        assert!(
            r.lets_go(0, RETENTION_COUNT_DEFAULT + 1, 0),
            "over the count"
        );
        let d = Retention::of_queue(&org, None);
        assert_eq!(d, org.tasks);
        assert!(d.lets_go(5, 1, 5 + RETENTION_AGE_DEFAULT_MS));
        assert!(!d.lets_go(5, 1, 4 + RETENTION_AGE_DEFAULT_MS));
        let off = Retention {
            age_ms: 0,
            count: 0,
        };
        assert!(!off.lets_go(0, u64::MAX, u64::MAX), "both off keeps all");
    }
}
