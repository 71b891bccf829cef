//! Unit tests of the chaos checker (tests/chaos/check.rs): it must find each
//! kind of violation in a made-up history, and none in a clean one. The
//! chaos run itself is `tests/chaos/main.rs` (`scripts/chaos`).

#[path = "chaos/check.rs"]
mod check;
#[path = "chaos/history.rs"]
mod history;

use check::*;
use history::*;

fn submit(key: &str, outcome: Outcome, ids: &[u64], at: u64) -> Submit {
    Submit {
        key: key.into(),
        tasks: 1,
        sent_ms: at,
        done_ms: at + 5,
        outcome,
        ids: ids.to_vec(),
    }
}

fn task(id: u64, key: &str, state: &str) -> FinalTask {
    FinalTask {
        id,
        queue: "default".into(),
        state: state.into(),
        key: key.into(),
    }
}

fn grant(task: u64, worker: &str, token: u64, at: u64) -> Grant {
    Grant {
        task,
        worker: worker.into(),
        token,
        sent_ms: at,
        done_ms: at + 2,
    }
}

fn op(kind: TaskOpKind, task: u64, worker: &str, token: u64, at: u64) -> TaskOp {
    TaskOp {
        kind,
        task,
        worker: worker.into(),
        token,
        sent_ms: at,
        done_ms: at + 2,
        outcome: Outcome::Ok,
    }
}

#[test]
fn a_clean_history_has_no_violations() {
    let mut h = History::default();
    h.submits
        .push(submit("a", Outcome::Unknown("timeout".into()), &[], 0));
    h.submits.push(submit("a", Outcome::Ok, &[1], 10));
    h.submits
        .push(submit("b", Outcome::Refused("draining".into()), &[], 20));
    h.submits
        .push(submit("c", Outcome::Unknown("timeout".into()), &[], 30));
    h.grants.push(grant(1, "w1", 1, 40));
    h.task_ops.push(op(TaskOpKind::Start, 1, "w1", 1, 45));
    h.grants.push(grant(1, "w2", 2, 50));
    h.task_ops.push(op(TaskOpKind::Complete, 1, "w2", 2, 60));
    let tasks = [task(1, "a", "succeeded"), task(2, "c", "queued")];
    assert_eq!(check_submits(&h, &tasks), SubmitCheck::default());
    assert_eq!(check_leases(&h), LeaseCheck::default());
}

#[test]
fn a_lost_and_a_duplicated_submit_are_found() {
    let mut h = History::default();
    h.submits.push(submit("a", Outcome::Ok, &[1], 0));
    h.submits
        .push(submit("b", Outcome::Unknown("timeout".into()), &[], 10));
    h.submits.push(submit("b", Outcome::Ok, &[2], 20));
    let tasks = [task(2, "b", "queued"), task(3, "b", "queued")];
    let c = check_submits(&h, &tasks);
    assert_eq!((c.lost, c.duplicates), (1, 1));
    assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
}

#[test]
fn a_refused_submit_that_exists_and_a_stray_task_are_found() {
    let mut h = History::default();
    h.submits
        .push(submit("a", Outcome::Refused("draining".into()), &[], 0));
    let c = check_submits(&h, &[task(1, "a", "queued"), task(2, "zz", "queued")]);
    assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
}

#[test]
fn a_stale_token_accepted_after_a_newer_grant_is_a_double_lease() {
    let mut h = History::default();
    h.grants.push(grant(7, "w1", 1, 0));
    h.grants.push(grant(7, "w2", 2, 100));
    // w1 completes with token 1 after w2 already held token 2.
    h.task_ops.push(op(TaskOpKind::Complete, 7, "w1", 1, 150));
    let c = check_leases(&h);
    assert_eq!(c.double_leases, 1, "{:?}", c.violations);
    // The same completion refused is fine.
    h.task_ops[0].outcome = Outcome::Refused("stale token".into());
    assert_eq!(check_leases(&h), LeaseCheck::default());
}

#[test]
fn one_token_for_two_workers_two_completions_and_a_lease_after_success_are_found() {
    let mut h = History::default();
    h.grants.push(grant(1, "w1", 5, 0));
    h.grants.push(grant(1, "w2", 5, 1));
    let c = check_leases(&h);
    assert_eq!(c.double_leases, 1, "{:?}", c.violations);

    let mut h = History::default();
    h.grants.push(grant(2, "w1", 1, 0));
    h.task_ops.push(op(TaskOpKind::Complete, 2, "w1", 1, 10));
    h.grants.push(grant(2, "w2", 2, 50));
    h.task_ops.push(op(TaskOpKind::Complete, 2, "w2", 2, 60));
    let c = check_leases(&h);
    assert_eq!(c.double_leases, 1, "{:?}", c.violations);
    assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
}

fn node(id: u64, digest: &str, tasks: Vec<FinalTask>, queued: &[(u64, u64)]) -> FinalNode {
    FinalNode {
        id,
        applied: 10,
        digest: digest.into(),
        tasks,
        queued: [("default".to_string(), queued.to_vec())].into(),
    }
}

#[test]
fn the_final_check_accepts_consistent_nodes() {
    let tasks = vec![task(1, "a", "queued"), task(2, "b", "succeeded")];
    let n1 = node(1, "d", tasks.clone(), &[(1, 1)]);
    let n2 = node(2, "d", tasks, &[(1, 1)]);
    assert_eq!(check_final(&[n1, n2]), FinalCheck::default());
}

#[test]
fn the_final_check_finds_divergence_bad_positions_and_stuck_leases() {
    let tasks = vec![task(1, "a", "queued"), task(2, "b", "queued")];
    let n1 = node(1, "d", tasks.clone(), &[(1, 1), (2, 3)]);
    let n2 = node(2, "e", tasks, &[(1, 1), (2, 2)]);
    let c = check_final(&[n1, n2]);
    assert_eq!(c.digest_mismatches, 1);
    assert_eq!(c.violations.len(), 2, "{:?}", c.violations);

    let n = node(1, "d", vec![task(1, "a", "leased")], &[]);
    assert_eq!(check_final(&[n]).violations.len(), 1);
}

#[test]
fn availability_measures_the_longest_gap_and_the_failover() {
    let mut h = History::default();
    for t in [0, 100, 200, 1500, 1600] {
        h.submits
            .push(submit(&format!("k{t}"), Outcome::Ok, &[t], t));
    }
    h.submits
        .push(submit("late", Outcome::Unknown("timeout".into()), &[], 300));
    h.faults.push(Fault {
        kind: "kill-leader".into(),
        target: "node 1".into(),
        hit_leader: true,
        start_ms: 250,
        end_ms: 900,
    });
    let a = availability(&h, 0, 2000);
    assert_eq!(a.max_unavailable_ms, 1505 - 205);
    assert_eq!(a.failovers_ms, vec![1505 - 250]);
    assert_eq!(a.windows_with_writes, 1.0);
    assert!((a.submits_acknowledged - 5.0 / 6.0).abs() < 1e-9);
}
