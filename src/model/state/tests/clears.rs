//! Clears and forced deletes: bounded chunks per command, decided by the
//! first, and a clear left without a step for a while.

use super::{new_queue, order, run_op, task_to};
use crate::model::state::State;
use crate::model::{ErrorKind, MoveTo, Op, Reply, TaskState};

#[test]
fn clear_and_forced_delete_work_in_bounded_chunks_decided_by_the_first() {
    use crate::model::limits::{BATCH_MAX_TASKS, CLEAR_MAX_PER_COMMAND};
    use crate::model::worker::Registration;
    use crate::model::Clearing;
    let mut s = State::new();
    new_queue(&mut s, "big", "default", 0);
    new_queue(&mut s, "other", "default", 0);
    let total = CLEAR_MAX_PER_COMMAND + 1;
    for start in (0..total).step_by(BATCH_MAX_TASKS) {
        let n = BATCH_MAX_TASKS.min(total - start);
        let batch = Op::SubmitTasks {
            tasks: (0..n).map(|_| task_to("big", "", "")).collect(),
        };
        run_op(&mut s, batch).unwrap();
    }
    let clear = || Op::ClearQueue { name: "big".into() };
    let first = run_op(&mut s, clear()).unwrap();
    assert_eq!(
        first,
        Reply::QueueCleared {
            name: "big".into(),
            dequeued: CLEAR_MAX_PER_COMMAND as u64,
            remaining: 1
        }
    );
    // The back went first, and the head is as good as gone: the first step
    // decided the clear for every queued task.
    assert_eq!(order(&s, "big"), vec![1]);
    assert_eq!(s.queue("big").unwrap().clearing, Some(Clearing::Clear));
    let refused = [
        Op::SubmitTasks {
            tasks: vec![task_to("big", "", "")],
        },
        Op::MoveTask {
            id: 1,
            to: MoveTo::Queue("other".into()),
        },
        Op::DequeueTask {
            id: 1,
            reason: String::new(),
        },
        Op::CancelTask {
            id: 1,
            reason: String::new(),
        },
        Op::RenameQueue {
            name: "big".into(),
            new_name: "huge".into(),
        },
    ];
    for op in refused {
        let what = format!("{op:?}");
        let e = run_op(&mut s, op).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FailedPrecondition, "{what}");
        assert!(e.message.contains("being cleared"), "{what}: {e:?}");
    }
    let worker = Registration {
        name: "w".into(),
        ip: "10.0.0.1".into(),
        pool: "default".into(),
        queues: vec!["big".into()],
        ..Default::default()
    };
    run_op(&mut s, Op::RegisterWorker(worker)).unwrap();
    let lease = Op::LeaseTasks {
        worker: "w".into(),
        max_tasks: 1,
        ttl_ms: 1000,
    };
    assert_eq!(
        run_op(&mut s, lease).unwrap(),
        Reply::Leased { leases: vec![] }
    );
    assert_eq!(s.task(1).unwrap().state, TaskState::Queued);
    s.check_invariants();

    // A forced delete takes the clear over and ends it.
    let delete = Op::DeleteQueue {
        name: "big".into(),
        force: true,
    };
    let last = run_op(&mut s, delete).unwrap();
    assert_eq!(
        last,
        Reply::QueueCleared {
            name: "big".into(),
            dequeued: 1,
            remaining: 0
        }
    );
    assert!(s.queue("big").is_none());
    assert_eq!(s.task(1).unwrap().state, TaskState::Dequeued);
    s.check_invariants();
}

#[test]
fn a_clear_without_a_step_for_a_while_is_stalled() {
    use crate::model::limits::{BATCH_MAX_TASKS, CLEAR_MAX_PER_COMMAND};
    let mut s = State::new();
    new_queue(&mut s, "big", "default", 0);
    for _ in 0..=CLEAR_MAX_PER_COMMAND / BATCH_MAX_TASKS {
        let batch = Op::SubmitTasks {
            tasks: (0..BATCH_MAX_TASKS)
                .map(|_| task_to("big", "", ""))
                .collect(),
        };
        run_op(&mut s, batch).unwrap();
    }
    assert!(s.stalled_clears(u64::MAX, 0).is_empty(), "no clear yet");
    run_op(&mut s, Op::ClearQueue { name: "big".into() }).unwrap();
    let at = s.queue("big").unwrap().activity_ms;
    assert!(s.stalled_clears(at + 1_999, 2_000).is_empty());
    assert_eq!(s.stalled_clears(at + 2_000, 2_000), vec!["big".to_string()]);
    // The leader's step (any actor) ends it.
    let Reply::QueueCleared { remaining: 0, .. } =
        run_op(&mut s, Op::ClearQueue { name: "big".into() }).unwrap()
    else {
        panic!("the second step ends the clear");
    };
    assert!(s.stalled_clears(u64::MAX, 0).is_empty());
    assert_eq!(s.queued(s.queue("big").unwrap().id), 0);
}

#[test]
fn a_clear_that_fits_one_command_leaves_no_mark() {
    let mut s = State::new();
    new_queue(&mut s, "q", "default", 0);
    for _ in 0..3 {
        let submit = Op::SubmitTasks {
            tasks: vec![task_to("q", "", "")],
        };
        run_op(&mut s, submit).unwrap();
    }
    let version = s.queue("q").unwrap().version;
    let cleared = run_op(&mut s, Op::ClearQueue { name: "q".into() }).unwrap();
    assert_eq!(
        cleared,
        Reply::QueueCleared {
            name: "q".into(),
            dequeued: 3,
            remaining: 0
        }
    );
    let q = s.queue("q").unwrap();
    assert_eq!((q.clearing, q.version), (None, version));
    // The queue takes tasks again at once.
    let submit = Op::SubmitTasks {
        tasks: vec![task_to("q", "", "")],
    };
    run_op(&mut s, submit).unwrap();
}
