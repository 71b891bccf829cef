//! Guarantee 3: a task has at most one valid lease, and a stale holder's
//! start, progress, completion or release is refused by its token.
//!
//! - A token names one lease: one task, one worker.
//! - An accepted call used a token granted for its task, and no newer lease
//!   of the task was known to precede it.
//! - A task's accepted tokens never go back.
//! - No task succeeds twice; one that succeeded ends succeeded, with the
//!   token of that completion ([`ends`], which needs a replica's tasks).
//!
//! "Known to precede" is what the history can prove: one answer came back
//! before the other call was sent, or, where the program sees the log, one
//! entry has the lower index.

use std::collections::{BTreeMap, BTreeSet};

use super::super::{Call, Grant, History, Record, TaskView};
use super::{Findings, DOUBLE_LEASES};

/// Whether `a` is known to have taken effect before `b` did.
pub fn precedes(a: &Record, b: &Record) -> bool {
    let by_log = match (&a.entry, &b.entry) {
        (Some(x), Some(y)) => x.index < y.index,
        _ => false,
    };
    by_log || a.done_ms < b.sent_ms
}

/// A start, progress, completion or release the cluster accepted.
pub struct Accepted<'h> {
    pub task: u64,
    pub token: u64,
    pub success: bool,
    pub by: &'h Record,
}

pub fn accepted(history: &History) -> Vec<Accepted<'_>> {
    let calls = history.records.iter().filter(|r| r.accepted());
    calls
        .filter_map(|r| {
            let (task, token) = r.call.fenced()?;
            let success = matches!(
                r.call,
                Call::Complete {
                    succeeded: true,
                    ..
                }
            );
            Some(Accepted {
                task,
                token,
                success,
                by: r,
            })
        })
        .collect()
}

/// Every property here that the history alone can judge.
pub fn check(history: &History) -> Findings {
    let grants = history.grants();
    let calls = accepted(history);
    let mut found = one_lease_per_token(&grants);
    found.extend(current_tokens(&grants, &calls));
    found.extend(never_back(&calls));
    found.extend(one_success(&calls));
    found
}

fn one_lease_per_token(grants: &[Grant<'_>]) -> Findings {
    let mut found = Findings::default();
    let mut first: BTreeMap<u64, &Grant<'_>> = BTreeMap::new();
    for g in grants {
        let f = *first.entry(g.token).or_insert(g);
        if f.task != g.task {
            found.push(format!(
                "token {} was granted for task {} ({}) and for task {} ({})",
                g.token,
                f.task,
                f.by.at(),
                g.task,
                g.by.at()
            ));
        } else if f.worker != g.worker {
            found.counted(
                DOUBLE_LEASES,
                1,
                format!(
                    "task {}: token {} was given to {} ({}) and to {} ({})",
                    g.task,
                    g.token,
                    f.worker,
                    f.by.at(),
                    g.worker,
                    g.by.at()
                ),
            );
        }
    }
    found
}

fn current_tokens(grants: &[Grant<'_>], calls: &[Accepted<'_>]) -> Findings {
    let mut found = Findings::default();
    for c in calls {
        let kind = c.by.call.kind();
        let of_task = grants.iter().filter(|g| g.task == c.task);
        if !of_task.clone().any(|g| g.token == c.token) {
            let as_ = grants.iter().find(|g| g.token == c.token).map(|g| g.task);
            found.push(format!(
                "task {}: {kind} with token {} accepted ({}), but that token was granted for \
                 task {as_:?}",
                c.task,
                c.token,
                c.by.at()
            ));
        }
        let newer = of_task.filter(|g| g.token > c.token && precedes(g.by, c.by));
        if let Some(g) = newer.min_by_key(|g| g.token) {
            found.counted(
                DOUBLE_LEASES,
                1,
                format!(
                    "task {}: {kind} with stale token {} accepted ({}), but {} had been \
                     granted token {} ({})",
                    c.task,
                    c.token,
                    c.by.at(),
                    g.worker,
                    g.token,
                    g.by.at()
                ),
            );
        }
    }
    found
}

fn never_back(calls: &[Accepted<'_>]) -> Findings {
    let mut found = Findings::default();
    for b in calls {
        let mut higher = (calls.iter()).filter(|a| a.task == b.task && a.token > b.token);
        if let Some(a) = higher.find(|a| precedes(a.by, b.by)) {
            found.push(format!(
                "task {}: token {} accepted ({}) after token {} was ({})",
                b.task,
                b.token,
                b.by.at(),
                a.token,
                a.by.at()
            ));
        }
    }
    found
}

/// Successful completions accepted under more than one call (a retried call
/// shares its key, and its token).
fn one_success(calls: &[Accepted<'_>]) -> Findings {
    let mut found = Findings::default();
    let mut by_task: BTreeMap<u64, BTreeMap<(&str, u64), &Record>> = BTreeMap::new();
    for c in calls.iter().filter(|c| c.success) {
        let calls = by_task.entry(c.task).or_default();
        calls.entry((c.by.key.as_str(), c.token)).or_insert(c.by);
    }
    for (task, calls) in by_task.iter().filter(|(_, c)| c.len() > 1) {
        let tokens: BTreeSet<u64> = calls.keys().map(|(_, t)| *t).collect();
        let at: Vec<String> = calls.values().map(|r| r.at()).collect();
        found.push(format!(
            "task {task} succeeded twice, with tokens {tokens:?}: {}",
            at.join("; ")
        ));
    }
    found
}

/// A task whose success was acknowledged ends succeeded with that
/// completion's token, and no task's timeline succeeds twice.
pub fn ends(history: &History, tasks: &[TaskView]) -> Findings {
    let mut found = Findings::default();
    let by_id: BTreeMap<u64, &TaskView> = tasks.iter().map(|t| (t.id, t)).collect();
    for c in accepted(history).iter().filter(|c| c.success) {
        match by_id.get(&c.task) {
            Some(t) if t.state == "succeeded" && t.token == c.token => {}
            other => found.push(format!(
                "task {} succeeded with token {} ({}), but it ends as {:?}",
                c.task,
                c.token,
                c.by.at(),
                other.map(|t| (&t.state, t.token))
            )),
        }
    }
    for t in tasks.iter().filter(|t| t.successes > 1) {
        found.push(format!("task {} has {} successes", t.id, t.successes));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    #[test]
    fn a_clean_history_passes() {
        let mut h = History::default();
        h.records.push(grant(1, "w1", 1, 40));
        h.records.push(call(start(1, 1), "w1", ok(), 45));
        h.records.push(grant(1, "w2", 2, 50));
        h.records.push(call(complete(1, 2), "w2", ok(), 60));
        // The stale holder is refused.
        h.records.push(call(complete(1, 1), "w1", refused(), 70));
        assert_eq!(check(&h), Findings::default());
        let tasks = [task_with(1, "a", "succeeded", 2)];
        assert_eq!(ends(&h, &tasks), Findings::default());
    }

    #[test]
    fn a_stale_token_accepted_after_a_newer_grant_is_a_double_lease() {
        let mut h = History::default();
        h.records.push(grant(7, "w1", 1, 0));
        h.records.push(grant(7, "w2", 2, 100));
        // w1 completes with token 1 after w2 already held token 2.
        h.records.push(call(complete(7, 1), "w1", ok(), 150));
        let c = check(&h);
        assert_eq!(c.count(DOUBLE_LEASES), 1, "{:?}", c.violations);
        assert!(c.violations[0].contains("stale token 1"), "{c:?}");
        // The same completion refused is fine.
        h.records[2].outcome = refused();
        assert_eq!(check(&h), Findings::default());
    }

    #[test]
    fn by_log_index_a_stale_token_is_found_without_times() {
        let mut h = History::default();
        h.records.push(at_index(grant(7, "w1", 1, 0), 3));
        // Answered after the call was sent, but applied before it.
        let mut newer = at_index(grant(7, "w2", 2, 100), 5);
        newer.done_ms = 500;
        h.records.push(newer);
        h.records
            .push(at_index(call(start(7, 1), "w1", ok(), 150), 6));
        let c = check(&h);
        assert_eq!(c.count(DOUBLE_LEASES), 1, "{:?}", c.violations);
        // A replayed answer says nothing about where the call took effect.
        h.records[2] = replayed(h.records[2].clone());
        assert_eq!(check(&h), Findings::default());
    }

    #[test]
    fn one_token_for_two_workers_or_two_tasks_is_found() {
        let mut h = History::default();
        h.records.push(grant(1, "w1", 5, 0));
        h.records.push(grant(1, "w2", 5, 1));
        let c = check(&h);
        assert_eq!(c.count(DOUBLE_LEASES), 1, "{:?}", c.violations);

        let mut h = History::default();
        h.records.push(grant(1, "w1", 5, 0));
        h.records.push(grant(2, "w1", 5, 1));
        let c = check(&h);
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert!(c.violations[0].contains("for task 1"), "{c:?}");
    }

    #[test]
    fn a_token_never_granted_and_tokens_going_back_are_found() {
        let mut h = History::default();
        h.records.push(call(start(3, 9), "w1", ok(), 0));
        let c = check(&h);
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert!(c.violations[0].contains("granted for task None"), "{c:?}");

        let mut h = History::default();
        h.records.push(at_index(grant(3, "w1", 1, 0), 1));
        h.records.push(at_index(grant(3, "w2", 2, 0), 2));
        h.records
            .push(at_index(call(start(3, 2), "w2", ok(), 10), 4));
        h.records
            .push(at_index(call(start(3, 1), "w1", ok(), 10), 5));
        let c = check(&h);
        let back = (c.violations.iter()).filter(|v| v.contains("after token 2 was"));
        assert_eq!(back.count(), 1, "{:?}", c.violations);
    }

    #[test]
    fn two_successes_and_a_success_that_did_not_stay_are_found() {
        let mut h = History::default();
        h.records.push(grant(2, "w1", 1, 0));
        h.records.push(call(complete(2, 1), "w1", ok(), 10));
        h.records.push(grant(2, "w2", 2, 11));
        h.records.push(call(complete(2, 2), "w2", ok(), 20));
        let c = check(&h);
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert!(c.violations[0].contains("succeeded twice"), "{c:?}");

        let tasks = [
            task_with(2, "a", "queued", 2),
            task_with(3, "b", "failed", 0),
        ];
        let mut tasks = tasks.to_vec();
        tasks[1].successes = 2;
        let c = ends(&h, &tasks);
        assert_eq!(c.violations.len(), 3, "{:?}", c.violations);
    }
}
