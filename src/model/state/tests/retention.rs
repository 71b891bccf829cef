//! Retention: what a collect removes and keeps (by age, by count, a
//! queue's own rules, a change of rules), that each step is bounded, that
//! counters and the history outlive the tasks they counted, and the removal
//! of workers, lost or by hand.

use super::harness::{register, Sim};
use super::steady::{Steady, DAY_MS};
use super::{cmd, submit};
use crate::model::limits::COLLECT_MAX_PER_COMMAND;
use crate::model::worker::WorkerState;
use crate::model::{ErrorKind, Key, Op, Reply, State, TaskState};

fn no_sink(_: &State, _: &[Key]) {}

fn set_org(age_ms: Option<u64>, count: Option<u64>, ttl_ms: Option<u64>) -> Op {
    Op::SetRetention {
        age_ms,
        count,
        lost_worker_ttl_ms: ttl_ms,
    }
}

/// Ten simulated days at 1,000 tasks a day with a 2-day retention: the
/// finished tasks kept are exactly those that finished in the last two
/// days, every counter equals what was submitted and how it ended, the
/// invariants (the history's recount among them) hold after every day, and
/// the lost workers of each day are gone a day later.
#[test]
fn ten_days_at_two_day_retention_keep_the_last_two_days_and_every_count() {
    let sink = &mut no_sink;
    let mut w = Steady::new(3, 4, sink);
    w.finished_at = Some(Default::default());
    w.apply(vec![set_org(Some(2 * DAY_MS), Some(0), Some(DAY_MS))], sink);
    let steps_per_day = 40;
    let mut kept_by_day = Vec::new();
    for day in 0..10 {
        w.passing_worker(&format!("passing-{day}"), sink);
        for _ in 0..steps_per_day {
            w.step(25, DAY_MS / steps_per_day, sink);
        }
        w.s.check_invariants();
        kept_by_day.push(w.s.tasks_after(0).count());
        let workers = w.s.workers().count();
        assert!(workers <= 4 + 2, "day {day}: {workers} workers");
    }
    let now = w.s.clock_ms();
    let at = w.finished_at.take().unwrap();
    for (&id, &finished_ms) in &at {
        let young = finished_ms + 2 * DAY_MS > now;
        assert_eq!(
            w.s.task(id).is_some(),
            young,
            "task {id}, finished {finished_ms}"
        );
    }
    let young = at.values().filter(|&&ms| ms + 2 * DAY_MS > now).count();
    assert!((1_950..=2_050).contains(&young), "{young} kept");
    assert_eq!(w.counted(), (w.submitted, w.outcomes));
    assert_eq!(w.submitted, 10_000);
    assert_eq!(w.collected.0 as usize + young, 10_000);
    assert!(w.collected.1 >= 8, "{:?} lost workers removed", w.collected);
    // Flat after the window: the days after the second keep the same.
    let (lo, hi) = (kept_by_day[2..].iter().min(), kept_by_day[2..].iter().max());
    assert!(hi.unwrap() - lo.unwrap() <= 50, "{kept_by_day:?}");
    assert!(!w.s.collectable(now));
}

/// The count rule keeps a queue's last N finished, a queue's own rules
/// override the organisation's and follow it again once reset, and a
/// change of rules applies at the next collect.
#[test]
fn counts_and_queue_rules_apply_at_the_next_collect() {
    let sink = &mut no_sink;
    let mut w = Steady::new(2, 2, sink);
    w.apply(vec![set_org(Some(0), Some(0), None)], sink);
    for _ in 0..10 {
        w.step(100, 60_000, sink);
    }
    let (q0, q1) = (w.s.queue("q0").unwrap().id, w.s.queue("q1").unwrap().id);
    assert_eq!((w.s.finished_kept(q0), w.s.finished_kept(q1)), (500, 500));
    assert!(!w.s.collectable(w.now_ms), "both rules off keep everything");
    let own = Op::SetQueueRetention {
        name: "q0".into(),
        age_ms: None,
        count: Some(Some(30)),
    };
    w.apply(vec![own], sink);
    assert_eq!(w.s.finished_kept(q0), 500, "nothing goes before a collect");
    w.collect(sink);
    assert_eq!((w.s.finished_kept(q0), w.s.finished_kept(q1)), (30, 500));
    let newest: Vec<u64> =
        w.s.tasks_after(0)
            .filter(|t| t.queue == q0)
            .map(|t| t.id)
            .collect();
    assert_eq!(newest.len(), 30);
    assert!(
        newest.iter().all(|&id| id > 900),
        "the last 30 stay: {newest:?}"
    );
    // Back to the organisation's rules, which now keep 40 per queue.
    let reset = Op::SetQueueRetention {
        name: "q0".into(),
        age_ms: None,
        count: Some(None),
    };
    w.apply(vec![reset, set_org(None, Some(40), None)], sink);
    assert!(w.s.queue_retention(q0).is_none());
    w.collect(sink);
    assert_eq!((w.s.finished_kept(q0), w.s.finished_kept(q1)), (30, 40));
    assert_eq!(w.counted(), (w.submitted, w.outcomes));
}

/// A collect removes at most `COLLECT_MAX_PER_COMMAND` tasks and says
/// whether more remains; a removed task is not found, is revoked if a
/// worker still names it, and its queue's counters keep it.
#[test]
fn a_collect_is_bounded_and_a_removed_task_is_gone() {
    let sink = &mut no_sink;
    let mut w = Steady::new(1, 4, sink);
    for _ in 0..25 {
        w.step(100, 1_000, sink);
    }
    let first = w.s.tasks_after(0).next().unwrap().clone();
    w.apply(vec![set_org(Some(1), None, None)], sink);
    let reply = w.apply(vec![Op::CollectExpired], sink);
    let limit = COLLECT_MAX_PER_COMMAND as u64;
    assert_eq!(
        reply[..],
        [Reply::Collected {
            tasks: limit,
            workers: 0,
            remaining: true
        }]
    );
    assert!(w.s.task(first.id).is_none());
    assert_eq!(w.s.revoked([(first.id, first.fencing_token())]), [first.id]);
    let next = w.s.meta().next_task_id;
    assert!(w.s.revoked([(next, 1)]).is_empty(), "not yet submitted");
    w.collect(sink);
    assert_eq!(w.s.tasks_after(0).count(), 0);
    assert_eq!(w.counted(), (2_500, w.outcomes));
    w.s.check_invariants();
    let e = w.s.clone().apply(
        &cmd(
            w.now_ms,
            "x",
            Op::CancelTask {
                id: first.id,
                reason: String::new(),
            },
        ),
        &mut vec![],
    );
    assert_eq!(e.result.unwrap_err().kind, ErrorKind::NotFound);
}

/// Queued, leased and running tasks are never collected, however old.
#[test]
fn only_finished_tasks_are_collected() {
    let mut sim = Sim::new(1);
    register(&mut sim, "w", &["default"]);
    for _ in 0..3 {
        sim.ok(submit("default"));
    }
    let leases = sim.lease("w", 1, 1_000_000);
    sim.ok(Op::StartTask {
        id: leases[0].0,
        fencing_token: leases[0].1,
    });
    sim.lease("w", 1, 1_000_000);
    sim.ok(set_org(Some(1), Some(1), Some(0)));
    sim.now_ms += 10 * DAY_MS;
    sim.ok(Op::WorkerHeartbeats {
        reports: vec![],
        ttl_ms: 1_000,
    });
    assert!(!sim.s.collectable(sim.now_ms));
    assert!(matches!(
        sim.ok(Op::CollectExpired),
        Reply::Collected { tasks: 0, .. }
    ));
    let states: Vec<TaskState> = sim.s.tasks_after(0).map(|t| t.state).collect();
    assert_eq!(
        states,
        [TaskState::Running, TaskState::Leased, TaskState::Queued]
    );
}

/// `RemoveWorker` refuses a worker holding tasks, unless forced, which puts
/// them back at the front of their queues without using an attempt; a lost
/// worker goes at the collect after its TTL, not before.
#[test]
fn workers_are_removed_by_hand_or_after_the_lost_ttl() {
    let mut sim = Sim::new(2);
    register(&mut sim, "busy", &["default"]);
    register(&mut sim, "gone", &["default"]);
    sim.ok(submit("default"));
    let [(id, _, _)] = sim.lease("busy", 1, 60_000)[..] else {
        panic!("one lease")
    };
    let remove = |force| Op::RemoveWorker {
        name: "busy".into(),
        force,
    };
    let e = sim.apply(remove(false)).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::FailedPrecondition, Some("name"))
    );
    assert!(sim.s.worker("busy").is_some(), "a refusal changes nothing");
    let reply = sim.ok(remove(true));
    assert_eq!(
        reply,
        Reply::WorkerRemoved {
            name: "busy".into(),
            requeued: 1
        }
    );
    let task = sim.s.task(id).unwrap();
    assert_eq!((task.state, task.attempt), (TaskState::Queued, 0));
    assert_eq!(sim.s.next_task(crate::model::DEFAULT_QUEUE_ID), Some(id));
    assert_eq!(
        sim.apply(remove(false)).unwrap_err().kind,
        ErrorKind::NotFound
    );

    sim.ok(set_org(None, None, Some(3_600_000)));
    sim.now_ms += 20_000;
    sim.expire(15_000);
    assert_eq!(sim.s.worker("gone").unwrap().state, WorkerState::Lost);
    sim.now_ms += 3_500_000;
    assert!(!sim.s.collectable(sim.now_ms), "not yet");
    sim.now_ms += 200_000;
    assert!(sim.s.collectable(sim.now_ms));
    sim.ok(Op::CollectExpired);
    assert!(sim.s.worker("gone").is_none());
    sim.s.check_invariants();
}

/// A queue's own rules go with the queue; bad rules are refused by name.
#[test]
fn queue_rules_go_with_their_queue_and_bad_rules_are_refused() {
    let mut sim = Sim::new(3);
    super::harness::create(&mut sim, "q", 50, 0);
    let own = |name: &str, age_ms| Op::SetQueueRetention {
        name: name.into(),
        age_ms,
        count: None,
    };
    sim.ok(own("q", Some(Some(5_000))));
    let id = sim.s.queue("q").unwrap().id;
    assert_eq!(sim.s.retention_of(id).age_ms, 5_000);
    let missing = sim.apply(own("nope", Some(None))).unwrap_err();
    assert_eq!(
        (missing.kind, missing.field.as_deref()),
        (ErrorKind::NotFound, Some("name"))
    );
    let nothing = sim.apply(own("q", None)).unwrap_err();
    assert_eq!(nothing.field.as_deref(), Some("retention"));
    let long = sim.apply(set_org(Some(u64::MAX), None, None)).unwrap_err();
    assert_eq!(
        (long.kind, long.field.as_deref()),
        (ErrorKind::InvalidArgument, Some("age_ms"))
    );
    sim.ok(Op::DeleteQueue {
        name: "q".into(),
        force: false,
    });
    assert!(sim.s.queue_retention(id).is_none());
    sim.s.check_invariants();
}
