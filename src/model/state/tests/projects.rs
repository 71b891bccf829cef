//! Projects: where their tasks go by default, the queues they may use, and
//! the per-run queued limit.

use super::{ids, new_queue, run_op, task_to};
use crate::model::state::State;
use crate::model::{ErrorKind, MoveTo, Op, ProjectSettings};

#[test]
fn queue_choice_goes_project_default_then_organisation_default() {
    let mut s = State::new();
    new_queue(&mut s, "org", "default", 0);
    new_queue(&mut s, "ml-q", "default", 0);
    let project = |default_queue: &str| Op::CreateProject {
        name: "ml".into(),
        settings: ProjectSettings {
            default_queue: default_queue.into(),
            ..Default::default()
        },
    };
    run_op(&mut s, project("ml-q")).unwrap();
    let id = ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("", "ml", "")],
        },
    ))[0];
    assert_eq!(s.task(id).unwrap().queue, s.queue("ml-q").unwrap().id);

    run_op(
        &mut s,
        Op::SetDefaultQueue {
            queue: "org".into(),
        },
    )
    .unwrap();
    let id = ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("", "", "")],
        },
    ))[0];
    assert_eq!(s.task(id).unwrap().queue, s.queue("org").unwrap().id);
    assert_eq!(s.task(id).unwrap().project, "default");

    let e = run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("", "ghost", "")],
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::NotFound, Some("project"))
    );
    // The organisation's default queue cannot be deleted.
    let e = run_op(
        &mut s,
        Op::DeleteQueue {
            name: "org".into(),
            force: true,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
}

#[test]
fn allowed_queues_and_the_per_run_limit_are_enforced() {
    let mut s = State::new();
    new_queue(&mut s, "a", "default", 0);
    new_queue(&mut s, "b", "default", 0);
    let op = Op::CreateProject {
        name: "ml".into(),
        settings: ProjectSettings {
            default_queue: "a".into(),
            allowed_queues: ["a".to_string()].into(),
            max_queued_per_run: 2,
            description: String::new(),
        },
    };
    run_op(&mut s, op).unwrap();
    let e = run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("b", "ml", "")],
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::PermissionDenied, Some("queue"))
    );
    assert!(e.message.contains("allowed queues are a"), "{e}");

    let two = (0..2).map(|_| task_to("a", "ml", "r1")).collect();
    let first = ids(run_op(&mut s, Op::SubmitTasks { tasks: two }));
    let e = run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("a", "ml", "r1")],
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::ResourceExhausted, Some("run"))
    );
    // Another run, or the same run once a task has left the queue, fits.
    run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("a", "ml", "r2")],
        },
    )
    .unwrap();
    run_op(
        &mut s,
        Op::CancelTask {
            id: first[0],
            reason: String::new(),
        },
    )
    .unwrap();
    run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("a", "ml", "r1")],
        },
    )
    .unwrap();
    // A move into a queue the project may not use is refused too.
    let e = run_op(
        &mut s,
        Op::MoveTask {
            id: first[1],
            to: MoveTo::Queue("b".into()),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    // A queue a project names cannot be deleted.
    let e = run_op(
        &mut s,
        Op::DeleteQueue {
            name: "a".into(),
            force: true,
        },
    )
    .unwrap_err();
    assert!(e.message.contains("project \"ml\""), "{e}");
}
