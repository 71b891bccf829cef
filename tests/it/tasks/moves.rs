//! Moves and removals of single tasks: reordering within a queue like
//! ClearML, moving to another queue of the same pool (and the refusals of
//! one that cannot take the task), cancel and dequeue.

use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::*;
use tonic::Code;

use super::{create_project, ml, spec, Ml};
use crate::support::{code, meta, Cluster, Node, Timings, ACTOR};

/// Reordering like ClearML (front, back, forward, backward, position,
/// before and after another task), through different nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_reorder_within_a_queue_through_any_node() {
    let Ml { c, n1, n2, n3, .. } = ml().await;
    let ids = n3
        .batch((0..4).map(|_| spec("b", "", "")).collect())
        .await
        .unwrap();
    let [t1, t2, t3, t4] = ids[..] else { panic!() };
    n1.mv(t4, To::Front(true)).await.unwrap();
    n2.mv(t1, To::Back(true)).await.unwrap();
    n3.mv(t3, To::Forward(1)).await.unwrap();
    assert_eq!(n1.order("b").await, [t4, t3, t2, t1]);
    n1.mv(t4, To::Backward(2)).await.unwrap();
    n2.mv(t1, To::Position(1)).await.unwrap();
    let moved = n3.mv(t2, To::Before(t1)).await.unwrap();
    assert_eq!(moved.position, Some(1));
    n1.mv(t3, To::After(t4)).await.unwrap();
    assert_eq!(n2.order("b").await, [t2, t1, t4, t3]);
    let (code_, msg) = code(n1.mv(t1, To::Position(0)).await);
    assert_eq!(code_, Code::InvalidArgument, "{msg}");
    let (code_, msg) = code(n1.mv(t1, To::Before(999)).await);
    assert_eq!(code_, Code::NotFound, "{msg}");
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// A move to another queue stays in its pool, lands at the back of the
/// target and is noted in the timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_across_queues_stays_in_its_pool() {
    let Ml { c, n1, n2, n3, .. } = ml().await;
    // Queue a holds one task already.
    n2.submit(spec("", "ml", "r1")).await.unwrap();
    let ids = n3
        .batch((0..4).map(|_| spec("b", "", "")).collect())
        .await
        .unwrap();
    let t1 = ids[0];
    let (code_, msg) = code(n1.mv(t1, To::Queue("far".into())).await);
    assert_eq!(code_, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("never crosses pools"), "{msg}");
    let moved = n2.mv(t1, To::Queue("a".into())).await.unwrap();
    assert_eq!((moved.queue.as_str(), moved.position), ("a", Some(2)));
    assert_eq!(moved.timeline.len(), 2);
    assert!(moved.timeline[1].reason.contains("moved from queue \"b\""));
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// Cancel and dequeue take a queued task out, with the reason in its
/// condition and timeline; a canceled task cannot be canceled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_dequeue_take_tasks_out_with_their_reasons() {
    let Ml { c, n1, n2, n3, .. } = ml().await;
    let ids = n3
        .batch((0..4).map(|_| spec("b", "", "")).collect())
        .await
        .unwrap();
    let [t1, t2, t3, t4] = ids[..] else { panic!() };
    // t1 leaves b for a: b holds t2, t3 and t4.
    n2.mv(t1, To::Queue("a".into())).await.unwrap();
    let cancel = CancelTaskRequest {
        meta: meta(),
        id: t2,
        reason: "wrong learning rate".into(),
    };
    let t = n3
        .tasks()
        .cancel_task(cancel)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(
        (t.state.as_str(), t.condition.as_str()),
        ("canceled", "wrong learning rate")
    );
    assert_eq!(t.position, None);
    let again = CancelTaskRequest {
        meta: meta(),
        id: t2,
        reason: String::new(),
    };
    assert_eq!(
        code(n1.tasks().cancel_task(again).await).0,
        Code::FailedPrecondition
    );
    let dq = DequeueTaskRequest {
        meta: meta(),
        id: t4,
        reason: String::new(),
    };
    n1.tasks().dequeue_task(dq).await.unwrap();
    assert_eq!(n3.order("b").await, [t3]);
    let canceled = ListTasksRequest {
        state: "canceled".into(),
        ..Default::default()
    };
    assert_eq!(n2.list(canceled).await.unwrap().tasks.len(), 1);
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// A move to another queue is refused into a full, a draining or a
/// not-allowed queue (gRPC and CLI), leaving the task exactly where it was;
/// into an open queue of the pool it lands at the back, with a timeline entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_into_a_full_draining_or_forbidden_queue_is_refused() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let n = &Node::new(&c, 2);
    for q in ["m-src", "m-open", "m-closed", "m-fenced"] {
        n.create_queue(q, "", None).await;
    }
    n.create_queue("m-full", "", Some(1)).await;
    let allowed = ["m-src", "m-open", "m-closed", "m-full"];
    create_project(n, "movers", &allowed, "").await.unwrap();
    let task = |queue: &str| spec(queue, "movers", "");
    let mut ids = vec![];
    for _ in 0..3 {
        ids.push(n.submit(task("m-src")).await.unwrap().id);
    }
    let already = n.submit(task("m-open")).await.unwrap().id;
    n.submit(task("m-full")).await.unwrap();
    n.submit(task("m-closed")).await.unwrap();
    let drain = DrainQueueRequest {
        meta: meta(),
        name: "m-closed".into(),
    };
    n.queues().drain_queue(drain).await.unwrap();
    assert_eq!(n.queue("m-closed").await.state, "draining");

    let id = ids[1];
    let before = n.get(id).await.unwrap();
    assert_eq!(before.position, Some(2));
    for (target, want, exit, needle) in [
        ("m-full", Code::ResourceExhausted, 6, "is full"),
        ("m-closed", Code::FailedPrecondition, 7, "is draining"),
        ("m-fenced", Code::PermissionDenied, 8, "may not use queue"),
    ] {
        let (got, msg) = code(n.mv(id, To::Queue(target.into())).await);
        assert_eq!(got, want, "into {target}: {msg}");
        assert!(msg.starts_with("queue: ") && msg.contains(needle), "{msg}");
        let (exit_, _, err) = c.cli(&["task", "move", &id.to_string(), "--queue", target]);
        assert_eq!(exit_, Some(exit), "into {target}: {err}");
        assert!(err.contains(needle), "{err}");
        assert_eq!(n.order("m-src").await, ids, "refused into {target}");
        assert_eq!(n.get(id).await.unwrap(), before, "refused into {target}");
    }
    let queued = [
        ("m-full", 1),
        ("m-closed", 1),
        ("m-fenced", 0),
        ("m-open", 1),
    ];
    for (q, count) in queued {
        assert_eq!(n.queue(q).await.queued, count, "{q}");
    }

    let moved = n.mv(id, To::Queue("m-open".into())).await.unwrap();
    assert_eq!(
        (moved.queue.as_str(), moved.position, moved.state.as_str()),
        ("m-open", Some(2), "queued")
    );
    assert_eq!(n.order("m-open").await, [already, id], "at the back");
    assert_eq!(n.order("m-src").await, [ids[0], ids[2]]);
    assert_eq!(moved.timeline.len(), 2);
    let entry = &moved.timeline[1];
    assert_eq!(
        (entry.state.as_str(), entry.actor.as_str()),
        ("queued", ACTOR)
    );
    assert!(
        entry
            .reason
            .contains("moved from queue \"m-src\" to \"m-open\""),
        "{entry:?}"
    );
    let (exit, out, err) = c.cli(&["task", "move", &ids[0].to_string(), "--queue", "m-open"]);
    assert_eq!(exit, Some(0), "{err}");
    assert!(out.contains("is in m-open at position 3"), "{out}");
    assert_eq!(n.order("m-open").await, [already, id, ids[0]]);
}
