//! The random steps of the dispatch and lease properties, each checking what
//! it did: leases (limits, placement, order, the reference), holders'
//! starts, completions and releases, stale tokens, heartbeats, expiry and
//! moves; and [`run_random`], which builds a random state and runs them.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::IndexedRandom;
use rand::Rng;

use super::harness::{build, complete, held, submit_some, test_queues, Sim, STEPS};
use super::reference::{check_limits, check_placement, lookahead_cannot_matter, reference};
use crate::model::state::State;
use crate::model::worker::{HeldTask, WorkerState};
use crate::model::{ErrorKind, MoveTo, Op, Task, TaskState};

/// Leases for a random worker and checks what it got (properties 2, 3, 5).
pub(super) fn lease_step(sim: &mut Sim) {
    let workers: Vec<String> = sim.s.workers().map(|w| w.name.clone()).collect();
    let worker = workers.choose(&mut sim.rng).expect("workers").clone();
    let max = sim.rng.random_range(1..=6);
    let ttl = sim.rng.random_range(1_000..=5_000);
    let pre = sim.s.clone();
    let leases = sim.lease(&worker, max, ttl);
    let picks: Vec<u64> = leases.iter().map(|l| l.0).collect();
    assert!(picks.len() <= max as usize);
    for &(id, token, expires) in &leases {
        let (before, after) = (pre.task(id).expect("task"), sim.s.task(id).expect("task"));
        assert_eq!(
            (before.state, after.state),
            (TaskState::Queued, TaskState::Leased)
        );
        assert_eq!(after.worker(), Some(worker.as_str()));
        assert_eq!(after.attempt, before.attempt + 1, "the next attempt");
        assert!(token > sim.max_token, "fencing tokens only grow");
        assert_eq!(expires, sim.now_ms + ttl);
        sim.max_token = token;
        sim.leased.push((id, token));
    }
    check_placement(&pre, &worker, &picks);
    if lookahead_cannot_matter(&pre) {
        let expected = reference(&pre, &worker, max as usize, &picks);
        if picks != expected && sim.stats.mismatch.is_none() {
            let log = sim.log.len();
            let what = format!("command {log}: {worker} leased {picks:?}, expected {expected:?}");
            sim.stats.mismatch = Some(what);
        }
        sim.stats.compared += 1;
    }
    sim.stats.leases += 1;
    sim.stats.picks += picks.len() as u64;
}

/// Starts, completes or releases a random in-flight task with its token.
pub(super) fn holder_step(sim: &mut Sim) {
    let Some(t) = sim.any_task(&[TaskState::Leased, TaskState::Running]) else {
        return;
    };
    let (id, fencing_token, roll) = (t.id, t.fencing_token(), sim.rng.random_range(0..10));
    if roll < 4 && t.state == TaskState::Leased {
        sim.ok(Op::StartTask { id, fencing_token });
        assert_eq!(sim.s.task(id).expect("task").state, TaskState::Running);
    } else if roll < 8 {
        let succeeded = sim.rng.random_bool(0.7);
        sim.ok(complete(id, fencing_token, succeeded));
        let done = match succeeded {
            true => TaskState::Succeeded,
            false => TaskState::Failed,
        };
        assert_eq!(sim.s.task(id).expect("task").state, done);
    } else {
        let reason = String::new();
        sim.ok(Op::ReleaseTask {
            id,
            fencing_token,
            reason,
        });
        let after = sim.s.task(id).expect("task");
        let got = (after.state, after.attempt, sim.s.position(after));
        assert_eq!(got, (TaskState::Queued, t.attempt - 1, Some(0)), "released");
    }
}

/// Leases ever granted whose token is no longer current.
pub(super) fn stale_leases(sim: &Sim) -> Vec<(u64, u64)> {
    let stale = |&(id, token): &(u64, u64)| {
        let t = sim.s.task(id).expect("task");
        !t.state.in_flight() || t.fencing_token() != token
    };
    sim.leased.iter().copied().filter(stale).collect()
}

/// Property 6: a start, progress, completion or release with a stale token
/// is refused with FailedPrecondition and changes no task, worker or queue.
pub(super) fn stale_step(sim: &mut Sim) {
    let stale = stale_leases(sim);
    let Some(&(id, fencing_token)) = stale.choose(&mut sim.rng) else {
        return;
    };
    let (iteration, reason) = (7, String::new());
    let op = match sim.rng.random_range(0..4) {
        0 => Op::StartTask { id, fencing_token },
        1 => Op::ReportProgress {
            id,
            fencing_token,
            iteration,
        },
        2 => complete(id, fencing_token, true),
        _ => Op::ReleaseTask {
            id,
            fencing_token,
            reason,
        },
    };
    let pre = sim.s.clone();
    let e = sim.apply(op).expect_err("a stale token is refused");
    assert_eq!(e.kind, ErrorKind::FailedPrecondition, "{e:?}");
    let same = |a: &State, b: &State| {
        a.tasks_after(0).eq(b.tasks_after(0))
            && a.workers().eq(b.workers())
            && a.queues().eq(b.queues())
    };
    assert!(same(&pre, &sim.s), "a stale call on {id} changed something");
    sim.stats.stale += 1;
}

/// A heartbeat naming some of a worker's leases and maybe a stale one: those
/// named with their tokens last `ttl` more; the stale one changes nothing.
pub(super) fn heartbeat_step(sim: &mut Sim) {
    let workers: Vec<String> = sim.s.workers().map(|w| w.name.clone()).collect();
    let worker = workers.choose(&mut sim.rng).expect("workers").clone();
    let holds = sim.s.worker(&worker).expect("worker").tasks.clone();
    let mut named: Vec<u64> = holds.iter().copied().collect();
    named.retain(|_| sim.rng.random_bool(0.8));
    let token = |id| sim.s.task(id).expect("task").fencing_token();
    let mut tasks: Vec<HeldTask> = named.iter().map(|&id| held(id, token(id))).collect();
    let mut stale = stale_leases(sim);
    stale.retain(|(id, _)| !holds.contains(id));
    tasks.extend(stale.choose(&mut sim.rng).map(|&(id, t)| held(id, t)));
    let ttl_ms = sim.rng.random_range(1_000..=5_000);
    let pre = sim.s.clone();
    assert_eq!(sim.beat(&worker, tasks.clone(), ttl_ms), named.len() as u64);
    let w = sim.s.worker(&worker).expect("worker");
    assert_eq!((w.state, w.last_seen_ms), (WorkerState::Active, sim.now_ms));
    for h in &tasks {
        let t = sim.s.task(h.id).expect("task");
        match named.contains(&h.id) {
            true => {
                let expires = t.execution.as_ref().and_then(|e| e.lease_expires_ms);
                assert_eq!(expires, Some(sim.now_ms + ttl_ms), "a renewed lease");
            }
            false => assert_eq!(Some(t), pre.task(h.id), "a stale heartbeat renews nothing"),
        }
    }
}

/// Property 7: once the clock passes, due leases and the leases of silent
/// workers end, each task to the front of its queue with its attempt, or
/// failed once it used its attempts; every other lease stays as it was.
pub(super) fn expire_step(sim: &mut Sim) {
    sim.now_ms += sim.rng.random_range(0..=6_000);
    let (now, timeout) = (sim.now_ms, sim.rng.random_range(4_000..=8_000));
    let pre = sim.s.clone();
    let lost: BTreeSet<&str> = (pre.workers())
        .filter(|w| w.state == WorkerState::Active && w.last_seen_ms + timeout <= now)
        .map(|w| w.name.as_str())
        .collect();
    let in_flight = pre.tasks_after(0).filter(|t| t.state.in_flight());
    let (due, kept): (Vec<&Task>, Vec<&Task>) = in_flight.partition(|t| {
        let e = t.execution.as_ref().expect("in flight");
        e.lease_expires_ms.expect("leased") <= now || lost.contains(e.worker.as_str())
    });
    let expired = sim.expire(timeout);
    assert_eq!(expired, (due.len() as u64, lost.len() as u64));
    for name in &lost {
        let w = sim.s.worker(name).expect("worker");
        assert!(w.state == WorkerState::Lost && w.tasks.is_empty(), "{name}");
    }
    let mut requeued = BTreeMap::<u64, usize>::new();
    for t in &due {
        let after = sim.s.task(t.id).expect("task");
        assert_eq!(after.attempt, t.attempt, "an expiry keeps the attempt");
        match t.attempt >= t.max_attempts {
            true => assert_eq!(after.state, TaskState::Failed, "task {} at its last", t.id),
            false => *requeued.entry(t.queue).or_default() += 1,
        }
    }
    for t in &due {
        let position = sim.s.position(sim.s.task(t.id).expect("task"));
        let front = position.is_none_or(|p| p < requeued[&t.queue]);
        assert!(front, "{} to the front", t.id);
    }
    for t in kept {
        assert_eq!(sim.s.task(t.id), Some(t), "a lease not due stays");
    }
    sim.stats.expired += due.len() as u64;
}

/// A random move of a queued task; a refused one (another pool) is fine.
pub(super) fn move_step(sim: &mut Sim) {
    let (t, other) = (
        sim.any_task(&[TaskState::Queued]),
        sim.any_task(&[TaskState::Queued]),
    );
    let (Some(t), Some(other)) = (t, other) else {
        return;
    };
    let queues = test_queues(&sim.s);
    let target = queues.choose(&mut sim.rng).expect("queues").0.clone();
    let n = sim.rng.random_range(0..5);
    let to = match sim.rng.random_range(0..8) {
        0 => MoveTo::Front,
        1 => MoveTo::Back,
        2 => MoveTo::Forward(n),
        3 => MoveTo::Backward(n),
        4 => MoveTo::Position(n),
        5 => MoveTo::Before(other.id),
        6 => MoveTo::After(other.id),
        _ => MoveTo::Queue(target),
    };
    let _ = sim.apply(Op::MoveTask { id: t.id, to });
}

pub(super) fn run_random(seed: u64, run_limits: bool) -> Sim {
    let mut sim = Sim::new(seed);
    sim.run_limits = run_limits;
    build(&mut sim);
    for _ in 0..STEPS {
        sim.now_ms += sim.rng.random_range(0..100);
        match sim.rng.random_range(0..100) {
            0..=34 => lease_step(&mut sim),
            35..=62 => holder_step(&mut sim),
            63..=70 => submit_some(&mut sim),
            71..=77 => heartbeat_step(&mut sim),
            78..=85 => expire_step(&mut sim),
            86..=93 => stale_step(&mut sim),
            _ => move_step(&mut sim),
        }
        check_limits(&sim.s);
    }
    sim
}
