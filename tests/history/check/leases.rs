//! Guarantee 4, and the end of a lease: a task whose success was
//! acknowledged is never leased again ([`after_success`]); once the workers
//! are gone and their leases have had time to expire, nothing is left
//! leased or running ([`all_expired`], for a program that waited for that).

use std::collections::BTreeMap;

use super::super::{History, Replica};
use super::fencing::{accepted, precedes};
use super::{Findings, DOUBLE_LEASES};

pub fn after_success(history: &History) -> Findings {
    let mut found = Findings::default();
    let mut first = BTreeMap::new();
    for c in accepted(history).into_iter().filter(|c| c.success) {
        let f = first.entry(c.task).or_insert(c.by);
        if c.by.done_ms < f.done_ms {
            *f = c.by;
        }
    }
    for g in history.grants() {
        let Some(done) = first.get(&g.task) else {
            continue;
        };
        // A replayed grant answers from an entry older than its own.
        if g.by.accepted() && precedes(done, g.by) {
            found.counted(
                DOUBLE_LEASES,
                1,
                format!(
                    "task {}: leased to {} (token {}, {}) after its success was acknowledged \
                     ({})",
                    g.task,
                    g.worker,
                    g.token,
                    g.by.at(),
                    done.at()
                ),
            );
        }
    }
    found
}

pub fn all_expired(replicas: &[Replica]) -> Findings {
    let mut found = Findings::default();
    for n in replicas {
        for t in &n.tasks {
            if t.state == "leased" || t.state == "running" {
                found.push(format!(
                    "node {}: task {} is still {} after every lease should have expired",
                    n.id, t.id, t.state
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    #[test]
    fn a_lease_after_an_acknowledged_success_is_found() {
        let mut h = History::default();
        h.records.push(grant(2, "w1", 1, 0));
        h.records.push(call(complete(2, 1), "w1", ok(), 10));
        assert_eq!(after_success(&h), Findings::default());
        h.records.push(grant(2, "w2", 2, 50));
        let c = after_success(&h);
        assert_eq!(c.count(DOUBLE_LEASES), 1, "{:?}", c.violations);
        // A failed completion leaves the task to be tried again.
        h.records[1].call = Call::Complete {
            task: 2,
            token: 1,
            succeeded: false,
        };
        assert_eq!(after_success(&h), Findings::default());
    }

    #[test]
    fn a_lease_left_at_the_end_is_found() {
        let n = node(1, "d", vec![task(1, "a", "leased")], &[]);
        assert_eq!(all_expired(&[n]).violations.len(), 1);
        let n = node(1, "d", vec![task(1, "a", "succeeded")], &[]);
        assert_eq!(all_expired(&[n]), Findings::default());
    }
}
