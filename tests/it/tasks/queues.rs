//! Queue operations: counts, rename, clear (also of more tasks than one
//! command dequeues) and delete, with the refusals that keep a queue that
//! holds tasks or that a project names.

use laneq::proto::v1::*;
use tonic::Code;

use super::{ml, on_a_follower, spec, submit_n, Ml};
use crate::support::{code, meta, Cluster, Node, Timings};

/// Queue counts; a rename, refused onto a taken name or for the default
/// queue; a clear; a delete, refused while the queue holds tasks or a
/// project allows it, until a read-modify-write of the project frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_count_rename_clear_and_delete() {
    let Ml {
        c,
        n1,
        n2,
        n3,
        settings,
        ..
    } = ml().await;
    // Queue a holds two tasks, r first; b holds t3.
    let r = n2.submit(spec("", "ml", "r1")).await.unwrap();
    n2.submit(spec("a", "", "")).await.unwrap();
    let t3 = n3.submit(spec("b", "", "")).await.unwrap().id;

    let q = n1.queue("a").await;
    assert_eq!((q.queued, q.running, q.next_task_id), (2, 0, Some(r.id)));
    assert!(q.activity_ms >= q.created_ms);
    let rename = RenameQueueRequest {
        meta: meta(),
        name: "b".into(),
        new_name: "bee".into(),
    };
    n2.queues().rename_queue(rename).await.unwrap();
    let taken = RenameQueueRequest {
        meta: meta(),
        name: "bee".into(),
        new_name: "a".into(),
    };
    assert_eq!(
        code(n1.queues().rename_queue(taken).await).0,
        Code::AlreadyExists
    );
    assert_eq!(n3.get(t3).await.unwrap().queue, "bee");
    let rename_default = RenameQueueRequest {
        meta: meta(),
        name: "default".into(),
        new_name: "x".into(),
    };
    let (code_, _) = code(n1.queues().rename_queue(rename_default).await);
    assert_eq!(code_, Code::FailedPrecondition);
    let delete = |name: &str, force| DeleteQueueRequest {
        meta: meta(),
        name: name.into(),
        force,
    };
    let (code_, msg) = code(n1.queues().delete_queue(delete("bee", false)).await);
    assert_eq!(code_, Code::FailedPrecondition, "{msg}");
    let clear = ClearQueueRequest {
        meta: meta(),
        name: "bee".into(),
    };
    let cleared = n3.queues().clear_queue(clear).await.unwrap().into_inner();
    assert_eq!(cleared.dequeued, 1);
    assert_eq!(n1.get(t3).await.unwrap().state, "dequeued");
    let (code_, msg) = code(n1.queues().delete_queue(delete("bee", false)).await);
    assert!(msg.contains("project \"ml\""), "{code_:?} {msg}");
    // Read-modify-write of a project frees the queue.
    let update = |version| UpdateProjectRequest {
        meta: meta(),
        name: "ml".into(),
        settings: Some(ProjectSettings {
            max_queued_per_run: 10,
            allowed_queues: vec!["a".into()],
            ..settings.clone()
        }),
        expected_version: version,
    };
    n3.projects().update_project(update(1)).await.unwrap();
    let (code_, msg) = code(n1.projects().update_project(update(1)).await);
    assert_eq!(code_, Code::Aborted, "{msg}");
    n1.queues()
        .delete_queue(delete("bee", false))
        .await
        .unwrap();
    assert_eq!(
        n2.get(t3).await.unwrap().queue,
        "#3",
        "a deleted queue shows its id"
    );
    let (code_, _) = code(n1.queues().delete_queue(delete("default", true)).await);
    assert_eq!(code_, Code::FailedPrecondition);
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// Deleting a queue that holds queued tasks is refused (gRPC and CLI exit
/// 7) and changes nothing; with force, its tasks are dequeued and it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_holding_tasks_is_deleted_only_with_force() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let n = &Node::new(&c, 3);
    let delete = |name: &str, force| DeleteQueueRequest {
        meta: meta(),
        name: name.into(),
        force,
    };
    n.create_queue("doomed", "", None).await;
    let ids = submit_n(n, "doomed", "", 3).await;
    let (got, msg) = code(n.queues().delete_queue(delete("doomed", false)).await);
    assert_eq!(got, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("3 queued tasks"), "{msg}");
    assert_eq!(
        n.order("doomed").await,
        ids,
        "a refused delete changes nothing"
    );
    let r = n.queues().delete_queue(delete("doomed", true)).await;
    assert_eq!(r.unwrap().into_inner().dequeued, 3);
    for id in &ids {
        let t = n.get(*id).await.unwrap();
        assert_eq!((t.state.as_str(), t.position), ("dequeued", None), "{t:?}");
        let last = t.timeline.last().unwrap();
        assert_eq!(last.state, "dequeued");
    }
    assert_eq!(code(n.get_queue("doomed").await).0, Code::NotFound);
    let (got, _) = code(n.queues().delete_queue(delete("doomed", true)).await);
    assert_eq!(got, Code::NotFound);

    // The same through the CLI: exit 7, then 0 with --force, then 3.
    n.create_queue("doomed2", "", None).await;
    let ids = submit_n(n, "doomed2", "", 2).await;
    let (exit, _, err) = c.cli(&["queue", "delete", "doomed2"]);
    assert_eq!(exit, Some(7), "{err}");
    assert!(err.contains("2 queued tasks"), "{err}");
    assert_eq!(n.order("doomed2").await, ids);
    let (exit, out, err) = c.cli(&["queue", "delete", "doomed2", "--force", "-o", "json"]);
    assert_eq!(exit, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["dequeued"].as_u64()),
        (Some("doomed2"), Some(2))
    );
    for id in ids {
        assert_eq!(n.get(id).await.unwrap().state, "dequeued");
    }
    let (exit, _, err) = c.cli(&["queue", "get", "doomed2"]);
    assert_eq!(exit, Some(3), "{err}");
}

/// A clear of more tasks than one command dequeues (10,000) empties the
/// queue, head included, and leaves it active with no clear under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_of_a_long_queue_empties_it_head_included() {
    let (c, n) = &on_a_follower().await;
    n.create_queue("long", "", Some(0)).await;
    for _ in 0..10 {
        let batch = (0..1000).map(|_| spec("long", "", "")).collect();
        n.batch(batch).await.unwrap();
    }
    let head = n.submit(spec("long", "", "")).await.unwrap().id;
    let first = n.order("long").await[0];
    assert_eq!(n.queue("long").await.queued, 10_001);
    let (exit, out, err) = c.cli(&["queue", "clear", "long", "-o", "json"]);
    assert_eq!(exit, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dequeued"].as_u64(), Some(10_001), "{out}");
    let q = n.queue("long").await;
    assert_eq!(
        (q.queued, q.state.as_str(), q.clearing.as_str()),
        (0, "active", "")
    );
    for id in [first, head] {
        assert_eq!(n.get(id).await.unwrap().state, "dequeued");
    }
    n.submit(spec("long", "", "")).await.unwrap();
}
