//! Leases and fencing: expiry unless renewed, and lost workers.

use super::harness::{create, held, register, Sim};
use super::task_to;
use crate::model::worker::WorkerState;
use crate::model::{Op, TaskState};

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
