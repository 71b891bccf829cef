//! Tasks: atomic batches and their shared key, moves within and between
//! queues, cancel and dequeue.

use std::sync::Arc;

use super::{cmd, ids, new_queue, order, queued, run_op, submit, task_to};
use crate::model::spec::QueueState;
use crate::model::state::State;
use crate::model::{ErrorKind, MoveTo, Op, TaskState};

#[test]
fn a_batch_is_all_or_nothing_and_counts_itself_against_the_depth() {
    let mut s = State::new();
    new_queue(&mut s, "small", "default", 3);
    let bad = Op::SubmitTasks {
        tasks: vec![task_to("small", "", ""), task_to("nope", "", "")],
    };
    let e = run_op(&mut s, bad).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.field.as_deref(), Some("tasks[1].queue"));
    assert_eq!(queued(&s, "small"), 0);
    assert!(s.task(1).is_none(), "nothing was created");

    let over = Op::SubmitTasks {
        tasks: (0..4).map(|_| task_to("small", "", "")).collect(),
    };
    let e = run_op(&mut s, over).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceExhausted);
    assert_eq!(e.field.as_deref(), Some("tasks[3].queue"));
    let fits = Op::SubmitTasks {
        tasks: (0..3).map(|_| task_to("small", "", "")).collect(),
    };
    assert_eq!(ids(run_op(&mut s, fits)), vec![1, 2, 3]);
    assert_eq!(order(&s, "small"), vec![1, 2, 3]);
}

/// The tasks of a batch share one key in memory, and again once reloaded
/// from their encoded records in id order, as storage loads them.
#[test]
fn a_batch_shares_its_key_in_memory_and_after_a_reload() {
    let mut s = State::new();
    let mut changed = vec![];
    let batch = Op::SubmitTasks {
        tasks: (0..3).map(|_| task_to("default", "", "")).collect(),
    };
    s.apply(&cmd(1, "batch-key", batch), &mut changed);
    s.apply(&cmd(2, "alone-key", submit("default")), &mut changed);
    let check = |s: &State| {
        let key = |id| s.task(id).unwrap().idempotency_key.clone();
        assert_eq!(
            (&*key(1), &*key(3), &*key(4)),
            ("batch-key", "batch-key", "alone-key")
        );
        assert!(Arc::ptr_eq(&key(1), &key(2)) && Arc::ptr_eq(&key(2), &key(3)));
        assert!(!Arc::ptr_eq(&key(3), &key(4)));
    };
    check(&s);
    let mut reloaded = State::new();
    for id in 1..=4 {
        let record = crate::codec::encode(s.task(id).unwrap());
        reloaded.load_task(crate::codec::decode(&record).unwrap());
    }
    check(&reloaded);
}

#[test]
fn moves_reorder_a_queue_like_clearml() {
    let mut s = State::new();
    let all = Op::SubmitTasks {
        tasks: (0..5).map(|_| task_to("default", "", "")).collect(),
    };
    assert_eq!(ids(run_op(&mut s, all)), vec![1, 2, 3, 4, 5]);
    let mut mv = |id, to| run_op(&mut s, Op::MoveTask { id, to }).map(|_| ());
    mv(4, MoveTo::Front).unwrap();
    mv(1, MoveTo::Back).unwrap();
    mv(5, MoveTo::Forward(2)).unwrap();
    mv(4, MoveTo::Backward(1)).unwrap();
    mv(3, MoveTo::Position(0)).unwrap();
    mv(2, MoveTo::Position(99)).unwrap();
    assert!(mv(2, MoveTo::Before(2)).is_err());
    assert_eq!(
        mv(2, MoveTo::After(77)).unwrap_err().kind,
        ErrorKind::NotFound
    );
    mv(1, MoveTo::Before(4)).unwrap();
    mv(5, MoveTo::After(2)).unwrap();
    assert_eq!(order(&s, "default"), vec![3, 1, 4, 2, 5]);
    for (i, id) in [3, 1, 4, 2, 5].into_iter().enumerate() {
        assert_eq!(s.position(s.task(id).unwrap()), Some(i));
    }
}

#[test]
fn moves_to_another_queue_keep_pool_state_and_depth() {
    let mut s = State::new();
    run_op(
        &mut s,
        Op::CreatePool {
            name: "other".into(),
            clusters: vec![],
        },
    )
    .unwrap();
    new_queue(&mut s, "far", "other", 0);
    new_queue(&mut s, "near", "default", 1);
    let id = ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("default", "", "")],
        },
    ))[0];
    let to = |q: &str| Op::MoveTask {
        id,
        to: MoveTo::Queue(q.into()),
    };
    let e = run_op(&mut s, to("far")).unwrap_err();
    assert!(e.message.contains("never crosses pools"), "{e}");
    run_op(&mut s, to("near")).unwrap();
    let t = s.task(id).unwrap();
    assert_eq!(
        (t.queue, s.position(t)),
        (s.queue("near").unwrap().id, Some(0))
    );
    assert!(t
        .timeline
        .last()
        .unwrap()
        .reason
        .contains("moved from queue \"default\""));
    assert_eq!(queued(&s, "default"), 0);
    // near is full (depth 1), and a drained queue takes nothing.
    let other = ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("default", "", "")],
        },
    ))[0];
    let e = run_op(
        &mut s,
        Op::MoveTask {
            id: other,
            to: MoveTo::Queue("near".into()),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceExhausted);
    run_op(&mut s, to("default")).unwrap();
    run_op(
        &mut s,
        Op::DrainQueue {
            name: "near".into(),
        },
    )
    .unwrap();
    assert_eq!(s.queue("near").unwrap().state, QueueState::Drained);
    let e = run_op(&mut s, to("near")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
}

#[test]
fn cancel_and_dequeue_record_the_timeline_and_settle_a_draining_queue() {
    let mut s = State::new();
    new_queue(&mut s, "q", "default", 0);
    let two = Op::SubmitTasks {
        tasks: (0..2).map(|_| task_to("q", "", "")).collect(),
    };
    let ids = ids(run_op(&mut s, two));
    run_op(&mut s, Op::DrainQueue { name: "q".into() }).unwrap();
    assert_eq!(s.queue("q").unwrap().state, QueueState::Draining);
    run_op(
        &mut s,
        Op::CancelTask {
            id: ids[0],
            reason: "wrong lr".into(),
        },
    )
    .unwrap();
    let t = s.task(ids[0]).unwrap();
    assert_eq!(t.state, TaskState::Canceled);
    assert_eq!(t.condition.as_deref(), Some("wrong lr"));
    let states: Vec<_> = t
        .timeline
        .iter()
        .map(|e| (e.state, e.actor.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            (TaskState::Queued, "tester"),
            (TaskState::Canceled, "tester")
        ]
    );
    let e = run_op(
        &mut s,
        Op::CancelTask {
            id: ids[0],
            reason: String::new(),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
    run_op(
        &mut s,
        Op::DequeueTask {
            id: ids[1],
            reason: String::new(),
        },
    )
    .unwrap();
    assert_eq!(s.task(ids[1]).unwrap().state, TaskState::Dequeued);
    assert_eq!(s.queue("q").unwrap().state, QueueState::Drained);
}
