//! Leases and fencing: expiry unless renewed, lost workers, and the revoke
//! rule ([`LeaseView`], [`State::revoked`]) that the heartbeat answers with.

use super::harness::{create, held, register, Sim};
use super::task_to;
use crate::model::state::State;
use crate::model::worker::WorkerState;
use crate::model::{LeaseView, Op, TaskState};

/// Property 7 by hand: heartbeats keep a lease; without them it expires to
/// the front, the next lease is the next attempt, the last attempt fails;
/// a silent worker is lost, and its leases end before their TTL.
#[test]
fn leases_expire_unless_renewed_and_silent_workers_are_lost() {
    let mut sim = Sim::new(0);
    create(&mut sim, "q", 50, 0);
    register(&mut sim, "w", &["q"]);
    let mut tasks = vec![task_to("q", "", ""), task_to("q", "", "")];
    tasks[0].max_attempts = 2;
    sim.ok(Op::SubmitTasks { tasks });
    let (queued, failed) = (TaskState::Queued, TaskState::Failed);
    let task = |sim: &Sim, id| {
        let t = sim.s.task(id).expect("task");
        (t.state, t.attempt, sim.s.position(t))
    };
    let [(id, token, _)] = sim.lease("w", 1, 1_000)[..] else {
        panic!("one lease")
    };
    sim.now_ms += 800;
    assert_eq!(sim.beat("w", vec![held(id, token)], 1_000), 1);
    sim.now_ms += 800;
    assert_eq!(sim.expire(60_000), (0, 0), "a renewed lease stays");
    sim.now_ms += 300;
    assert_eq!(sim.expire(60_000), (1, 0));
    assert_eq!(task(&sim, id), (queued, 1, Some(0)), "to the front");
    let stale = vec![held(id, token)];
    assert_eq!(sim.beat("w", stale, 1_000), 0, "a stale token");
    let [(again, token2, _)] = sim.lease("w", 1, 1_000)[..] else {
        panic!("one lease")
    };
    assert_eq!((again, task(&sim, id).1), (id, 2), "the next attempt");
    assert!(token2 > token, "fencing tokens only grow");
    sim.now_ms += 1_000;
    assert_eq!(sim.expire(60_000), (1, 0));
    assert_eq!(task(&sim, id), (failed, 2, None), "2 of 2 attempts");
    let [(other, ..)] = sim.lease("w", 1, 3_600_000)[..] else {
        panic!("one lease")
    };
    sim.now_ms += 5_000;
    assert_eq!(sim.expire(5_000), (1, 1), "silent: lost before the TTL");
    let w = sim.s.worker("w").expect("worker");
    assert_eq!((w.state, w.tasks.len()), (WorkerState::Lost, 0));
    assert_eq!(task(&sim, other), (queued, 1, Some(0)));
}

/// What a replica knows of a lease: current while the task is in flight
/// under that token, over once a newer lease is granted or the lease ends,
/// and not yet applied while the task's token is older.
#[test]
fn a_lease_view_is_current_over_or_not_yet_applied() {
    let mut sim = Sim::new(0);
    create(&mut sim, "q", 50, 0);
    register(&mut sim, "w", &["q"]);
    let tasks = vec![task_to("q", "", ""), task_to("q", "", "")];
    sim.ok(Op::SubmitTasks { tasks });
    let view = |sim: &Sim, id, token| sim.s.task(id).expect("task").lease_view(token);
    let [(a, first, _)] = sim.lease("w", 1, 1_000)[..] else {
        panic!("one lease")
    };
    assert_eq!(view(&sim, a, first), LeaseView::Current, "leased");
    assert_eq!(view(&sim, a, first + 1), LeaseView::NotYetApplied);
    sim.now_ms += 1_000;
    assert_eq!(sim.expire(60_000), (1, 0));
    assert_eq!(view(&sim, a, first), LeaseView::Over, "the lease ended");
    let [(again, second, _)] = sim.lease("w", 1, 60_000)[..] else {
        panic!("one lease")
    };
    assert_eq!(again, a, "the expired task is at the front");
    assert_eq!(view(&sim, a, first), LeaseView::Over, "a newer lease");
    assert_eq!(view(&sim, a, second), LeaseView::Current);
    let fencing_token = second;
    sim.ok(Op::StartTask {
        id: a,
        fencing_token,
    });
    assert_eq!(view(&sim, a, second), LeaseView::Current, "running");
    assert_eq!(view(&sim, a, second + 1), LeaseView::NotYetApplied);
    sim.ok(super::harness::complete(a, second, true));
    assert_eq!(sim.s.task(a).expect("task").state, TaskState::Succeeded);
    assert_eq!(view(&sim, a, second), LeaseView::Over, "completed");
}

/// The heartbeat's revokes: the leases this replica knows to be over, in
/// the order given; never one it has not applied yet, nor an unknown task.
#[test]
fn revoked_names_only_leases_known_to_be_over() {
    let mut sim = Sim::new(0);
    create(&mut sim, "q", 50, 0);
    register(&mut sim, "w", &["q"]);
    let tasks = (0..3).map(|_| task_to("q", "", "")).collect();
    sim.ok(Op::SubmitTasks { tasks });
    let [(ended, ended_token, _), (renewed, old_token, _)] = sim.lease("w", 2, 1_000)[..] else {
        panic!("two leases")
    };
    sim.ok(super::harness::complete(ended, ended_token, false));
    sim.now_ms += 1_000;
    assert_eq!(sim.expire(60_000), (1, 0));
    let [(again, new_token, _), (current, current_token, _)] = sim.lease("w", 2, 60_000)[..] else {
        panic!("two leases")
    };
    assert_eq!(again, renewed);
    let s: &State = &sim.s;
    let unknown = 999;
    assert!(s.task(unknown).is_none());
    let held = [
        (current, current_token),
        (renewed, old_token),
        (current, current_token + 1),
        (unknown, 1),
        (ended, ended_token),
        (renewed, new_token),
    ];
    assert_eq!(s.revoked(held), vec![renewed, ended]);
    assert_eq!(
        s.revoked([(ended, ended_token), (renewed, old_token)]),
        [ended, renewed]
    );
    assert!(s
        .revoked([(current, current_token), (renewed, new_token)])
        .is_empty());
    assert!(
        s.revoked([(current, current_token + 1)]).is_empty(),
        "not yet applied"
    );
    assert!(s.revoked([(unknown, 0)]).is_empty(), "an unknown task");
    assert!(s.revoked(std::iter::empty()).is_empty());
}
