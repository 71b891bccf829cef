//! Queues: settings (depth, cluster selectors), drain and activate,
//! versioned updates, renames and deletes, and edits racing submits.

use super::{cmd, ids, new_queue, order, queued, run_op, submit, task_to};
use crate::model::state::State;
use crate::model::{ErrorKind, Op, Reply, TaskState};

#[test]
fn queue_settings_apply_depth_and_cluster_selectors() {
    use crate::model::spec::{ClusterSelector, QueueSpec};
    let mut s = State::new();
    let mut changed = vec![];
    let pool = Op::CreatePool {
        name: "gpu".into(),
        clusters: vec!["a100".into()],
    };
    s.apply(&cmd(1, "p", pool), &mut changed);
    let queue = |name: &str, clusters: &[&str], depth: u64| Op::CreateQueue {
        name: name.into(),
        pool: "gpu".into(),
        spec: QueueSpec {
            clusters: if clusters.is_empty() {
                ClusterSelector::All
            } else {
                ClusterSelector::Only(clusters.iter().map(|c| c.to_string()).collect())
            },
            depth,
            ..QueueSpec::default()
        },
    };
    let e = s
        .apply(&cmd(2, "q1", queue("q", &["h100"], 2)), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::InvalidArgument, Some("clusters"))
    );
    assert!(s
        .apply(&cmd(3, "q2", queue("q", &["a100"], 2)), &mut changed)
        .result
        .is_ok());
    assert_eq!(s.queue("q").unwrap().spec.depth, 2);

    for i in 0..2 {
        let r = s.apply(&cmd(4 + i, &format!("s{i}"), submit("q")), &mut changed);
        assert!(r.result.is_ok());
    }
    let e = s
        .apply(&cmd(9, "s9", submit("q")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::ResourceExhausted, Some("queue"))
    );
    assert!(e.message.contains("depth 2"), "{e}");
    assert_eq!(queued(&s, "q"), 2);

    let remove = Op::RemoveCluster {
        pool: "gpu".into(),
        cluster: "a100".into(),
    };
    let e = s
        .apply(&cmd(10, "r", remove), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
    assert!(
        e.message.contains("queue \"q\" selects cluster \"a100\""),
        "{e}"
    );
    // Depth 0 is unlimited.
    assert!(s
        .apply(&cmd(11, "q3", queue("big", &[], 0)), &mut changed)
        .result
        .is_ok());
    for i in 0..20 {
        assert!(s
            .apply(&cmd(12 + i, &format!("b{i}"), submit("big")), &mut changed)
            .result
            .is_ok());
    }
    s.check_invariants();
}

#[test]
fn draining_stops_submissions_and_activate_resumes_them() {
    let mut s = State::new();
    let mut changed = vec![];
    let create = Op::CreateQueue {
        name: "q".into(),
        pool: "default".into(),
        spec: Default::default(),
    };
    s.apply(&cmd(1, "c", create), &mut changed);
    s.apply(&cmd(2, "s1", submit("q")), &mut changed);
    let drain = |name: &str| Op::DrainQueue { name: name.into() };
    let activate = |name: &str| Op::ActivateQueue { name: name.into() };
    assert!(s
        .apply(&cmd(3, "d", drain("q")), &mut changed)
        .result
        .is_ok());
    assert_eq!(s.queue("q").unwrap().state.as_str(), "draining");
    let e = s
        .apply(&cmd(4, "s2", submit("q")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::FailedPrecondition, Some("queue"))
    );
    let e = s
        .apply(&cmd(5, "d2", drain("q")), &mut changed)
        .result
        .unwrap_err();
    assert!(e.message.contains("already draining"), "{e}");
    assert!(s
        .apply(&cmd(6, "a", activate("q")), &mut changed)
        .result
        .is_ok());
    assert!(s
        .apply(&cmd(7, "s3", submit("q")), &mut changed)
        .result
        .is_ok());
    let e = s
        .apply(&cmd(8, "a2", activate("q")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);

    // An empty queue is drained at once; the default queue never drains.
    let create = Op::CreateQueue {
        name: "empty".into(),
        pool: "default".into(),
        spec: Default::default(),
    };
    s.apply(&cmd(9, "c2", create), &mut changed);
    s.apply(&cmd(10, "d3", drain("empty")), &mut changed);
    assert_eq!(s.queue("empty").unwrap().state.as_str(), "drained");
    let e = s
        .apply(&cmd(11, "d4", drain("default")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
    let e = s
        .apply(&cmd(12, "d5", drain("nope")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    s.check_invariants();
}

#[test]
fn updates_check_the_version_and_keep_the_pool() {
    use crate::model::spec::QueueSpec;
    let mut s = State::new();
    let mut changed = vec![];
    let create = Op::CreateQueue {
        name: "q".into(),
        pool: "default".into(),
        spec: QueueSpec::default(),
    };
    s.apply(&cmd(1, "c", create), &mut changed);
    let version = s.queue("q").unwrap().version;
    let update = |pool: Option<&str>, priority: u8, expected_version: u64| Op::UpdateQueue {
        name: "q".into(),
        pool: pool.map(str::to_string),
        spec: QueueSpec {
            priority,
            ..QueueSpec::default()
        },
        expected_version,
    };
    let r = s.apply(&cmd(2, "u1", update(None, 90, version)), &mut changed);
    assert_eq!(r.result, Ok(Reply::QueueChanged { name: "q".into() }));
    assert_eq!(s.queue("q").unwrap().spec.priority, 90);
    // A second edit based on the old version loses, and changes nothing.
    let e = s
        .apply(&cmd(3, "u2", update(None, 10, version)), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Aborted, Some("expected_version"))
    );
    assert_eq!(s.queue("q").unwrap().spec.priority, 90);
    let now = s.queue("q").unwrap().version;
    let e = s
        .apply(&cmd(4, "u3", update(Some("gpu"), 10, now)), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::FailedPrecondition, Some("pool"))
    );
    let r = s.apply(
        &cmd(5, "u4", update(Some("default"), 10, now)),
        &mut changed,
    );
    assert!(r.result.is_ok());
    let e = s
        .apply(&cmd(6, "u5", update(None, 0, now + 1)), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    s.check_invariants();
}

#[test]
fn rename_clear_and_delete_keep_tasks_and_protect_the_default_queue() {
    let mut s = State::new();
    new_queue(&mut s, "old", "default", 0);
    let three = Op::SubmitTasks {
        tasks: (0..3).map(|_| task_to("old", "", "")).collect(),
    };
    let ids = ids(run_op(&mut s, three));
    run_op(
        &mut s,
        Op::RenameQueue {
            name: "old".into(),
            new_name: "new".into(),
        },
    )
    .unwrap();
    assert!(s.queue("old").is_none());
    assert_eq!(order(&s, "new"), ids);
    let rename = Op::RenameQueue {
        name: "default".into(),
        new_name: "x".into(),
    };
    assert_eq!(
        run_op(&mut s, rename).unwrap_err().kind,
        ErrorKind::FailedPrecondition
    );
    let delete = Op::DeleteQueue {
        name: "default".into(),
        force: true,
    };
    assert_eq!(
        run_op(&mut s, delete).unwrap_err().kind,
        ErrorKind::FailedPrecondition
    );
    let taken = Op::RenameQueue {
        name: "new".into(),
        new_name: "default".into(),
    };
    assert_eq!(
        run_op(&mut s, taken).unwrap_err().kind,
        ErrorKind::AlreadyExists
    );

    let e = run_op(
        &mut s,
        Op::DeleteQueue {
            name: "new".into(),
            force: false,
        },
    )
    .unwrap_err();
    assert!(e.message.contains("3 queued tasks"), "{e}");
    run_op(
        &mut s,
        Op::DequeueTask {
            id: ids[0],
            reason: String::new(),
        },
    )
    .unwrap();
    assert_eq!(
        run_op(&mut s, Op::ClearQueue { name: "new".into() }),
        Ok(Reply::QueueCleared {
            name: "new".into(),
            dequeued: 2,
            remaining: 0
        })
    );
    new_queue(&mut s, "gone", "default", 0);
    let id = self::ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("gone", "", "")],
        },
    ))[0];
    assert_eq!(
        run_op(
            &mut s,
            Op::DeleteQueue {
                name: "gone".into(),
                force: true
            }
        ),
        Ok(Reply::QueueCleared {
            name: "gone".into(),
            dequeued: 1,
            remaining: 0
        })
    );
    assert!(s.queue("gone").is_none());
    assert_eq!(s.task(id).unwrap().state, TaskState::Dequeued);
    // The name is free again, under a new id.
    new_queue(&mut s, "gone", "default", 0);
    assert_ne!(s.queue("gone").unwrap().id, s.task(id).unwrap().queue);
}

#[test]
fn an_edit_races_no_submit_but_a_concurrent_edit() {
    let mut s = State::new();
    new_queue(&mut s, "q", "default", 0);
    let version = s.queue("q").unwrap().version;
    run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("q", "", "")],
        },
    )
    .unwrap();
    let update = |v| Op::UpdateQueue {
        name: "q".into(),
        pool: None,
        spec: Default::default(),
        expected_version: v,
    };
    run_op(&mut s, update(version)).unwrap();
    assert_eq!(
        run_op(&mut s, update(version)).unwrap_err().kind,
        ErrorKind::Aborted
    );
}
