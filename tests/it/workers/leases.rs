//! Leases: the long poll, fencing tokens, expiry back to the front of the
//! queue, max attempts, a drain with work in flight, and completions sent
//! in one call.

use std::time::Duration;

use laneq::proto::v1::queues_client::QueuesClient;
use laneq::proto::v1::*;
use tonic::Code;

use super::short_leases;
use crate::support::{eventually, meta, ok_if, Cluster, Node, Timings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fence_stale_holders_and_expire_back_to_the_front() {
    let c = Cluster::start(3, short_leases());
    let leader = c.init(1).await;
    let follower = c.followers(leader)[0];
    let (l, f) = (Node::new(&c, leader), Node::new(&c, follower));
    f.register("w1", &["default"], 2).await;
    f.register("w2", &["default"], 2).await;

    // The long poll answers once work arrives: work submitted only once
    // the poll is parked on the follower, waiting.
    let poll = tokio::spawn({
        let f = f.clone();
        async move { f.lease("w1", 1, 5_000).await }
    });
    let what = format!("the lease poll to be parked on node {follower} (polls parked)");
    eventually(Duration::from_secs(5), &what, async || {
        let s = c.status(follower).await.expect("node answers");
        ok_if(s.lease_polls_waiting == 1, s.lease_polls_waiting)
    })
    .await;
    let first = l.submit_to("default", "").await;
    let leases = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leases.len(), 1);
    let (task, token) = (leases[0].task.as_ref().unwrap(), leases[0].fencing_token);
    assert_eq!(
        (task.id, task.state.as_str(), task.worker.as_str()),
        (first, "leased", "w1")
    );
    assert_eq!(task.command, ["true"], "a lease carries the command line");

    // Not renewed: the lease expires and the task goes back to the front.
    let second = l.submit_to("default", "").await;
    let what = format!("the lease of task {first} to expire (its state)");
    let t = eventually(Duration::from_secs(20), &what, async || {
        let t = f.task(first).await;
        if t.state == "queued" {
            Ok(t)
        } else {
            Err(t.state)
        }
    })
    .await;
    assert_eq!((t.position, t.attempt), (Some(1), 1));
    assert!(t
        .timeline
        .iter()
        .any(|e| e.reason.contains("lease expired on worker w1")));

    // w2 gets it again with a larger token; w1's late calls are refused.
    let leases = l.lease("w2", 1, 1_000).await;
    let newer = leases[0].fencing_token;
    assert_eq!(leases[0].task.as_ref().unwrap().id, first);
    assert!(newer > token, "tokens only grow: {newer} after {token}");
    let e = f.complete(first, token, true).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("stale"), "{e}");
    let e = f.start(first, token).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let revoked = f.heartbeat("w1", &[(first, token)]).await.revoked;
    assert_eq!(revoked, [first], "the stale holder is told to stop");
    assert_eq!(f.task(first).await.worker, "w2", "nothing changed");

    // The current holder starts and completes; attempts are counted.
    let t = f.start(first, newer).await.unwrap();
    assert_eq!((t.state.as_str(), t.attempt), ("running", 2));
    let t = l.complete(first, newer, false).await.unwrap();
    assert_eq!(
        (t.state.as_str(), t.exit_code, t.condition.as_str()),
        ("failed", Some(3), "exit code 3")
    );
    let e = l.complete(first, newer, true).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "no task completes twice"
    );

    // Max attempts: task `second` (default 3) fails after three expiries.
    for attempt in 1..=3 {
        let leases = f.lease("w1", 1, 2_000).await;
        assert_eq!(
            leases[0].task.as_ref().unwrap().id,
            second,
            "attempt {attempt}"
        );
        let what = format!("attempt {attempt} of task {second} to expire");
        eventually(Duration::from_secs(20), &what, async || {
            let t = f.task(second).await;
            ok_if(t.state != "leased", t.state)
        })
        .await;
    }
    let t = f.task(second).await;
    assert_eq!((t.state.as_str(), t.attempt), ("failed", 3));
    assert!(
        t.condition.contains("used all 3 attempts"),
        "{}",
        t.condition
    );
    let get = GetWorkerRequest {
        name: "w1".into(),
        consistency: 0,
    };
    let w = f.workers().get_worker(get).await.unwrap();
    let w = w.into_inner().worker.unwrap();
    assert!(w.tasks.is_empty() && w.usage.is_some(), "{w:?}");
    c.wait_converged(&[1, 2, 3], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_queue_lets_in_flight_work_finish_then_is_drained() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let n = Node::new(&c, 2);
    let create = CreateQueueRequest {
        meta: meta(),
        name: "gpu".into(),
        pool: String::new(),
        spec: Some(QueueSpec {
            action_concurrency: 1,
            ..Default::default()
        }),
    };
    QueuesClient::new(n.ch.clone())
        .create_queue(create)
        .await
        .unwrap();
    n.register("w1", &["gpu"], 4).await;
    let a = n.submit_to("gpu", "r1").await;
    let b = n.submit_to("gpu", "r1").await;
    // action_concurrency 1: one lease at a time, however many slots.
    let leases = n.lease("w1", 4, 500).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].task.as_ref().unwrap().id, a);
    assert!(
        n.lease("w1", 4, 300).await.is_empty(),
        "the queue is at its limit"
    );

    let drain = DrainQueueRequest {
        meta: meta(),
        name: "gpu".into(),
    };
    let q = QueuesClient::new(n.ch.clone())
        .drain_queue(drain)
        .await
        .unwrap();
    let q = q.into_inner().queue.unwrap();
    assert_eq!(
        (q.state.as_str(), q.running, q.workers.clone()),
        ("draining", 1, vec!["w1".to_string()])
    );
    n.complete(a, leases[0].fencing_token, true).await.unwrap();
    let leases = n.lease("w1", 4, 500).await;
    assert_eq!(
        leases[0].task.as_ref().unwrap().id,
        b,
        "queued work still drains"
    );
    n.complete(b, leases[0].fencing_token, true).await.unwrap();
    let get = GetQueueRequest {
        name: "gpu".into(),
        consistency: 0,
    };
    let q = QueuesClient::new(n.ch.clone())
        .get_queue(get)
        .await
        .unwrap();
    let q = q.into_inner().queue.unwrap();
    assert_eq!((q.state.as_str(), q.running, q.queued), ("drained", 0, 0));
}

/// Leases `n` tasks submitted to `default` for worker `name` through `node`.
async fn lease_all(node: &Node, name: &str, n: usize) -> Vec<(u64, u64)> {
    let mut held = Vec::new();
    let what = format!("{n} leases for {name} (the count so far)");
    eventually(Duration::from_secs(20), &what, async || {
        let max = (n - held.len()).min(64) as u32;
        for l in node.lease(name, max, 1_000).await {
            held.push((l.task.unwrap().id, l.fencing_token));
        }
        ok_if(held.len() == n, held.len())
    })
    .await;
    held
}

/// Independent completions in one call (`CompleteEach`, what the client
/// library sends for concurrent completions): each has its own key and
/// outcome, one refused leaves the others done, a repeated key answers its
/// first outcome, and a follower forwards them like single completions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_in_one_call_each_get_their_own_outcome() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let follower = c.followers(leader)[0];
    let (l, f) = (Node::new(&c, leader), Node::new(&c, follower));
    f.register("w", &["default"], 0).await;
    for _ in 0..3 {
        l.submit_to("default", "").await;
    }
    let held = lease_all(&l, "w", 3).await;
    let complete =
        |meta: Option<WriteMeta>, (id, token): (u64, u64), ok: bool| CompleteTaskRequest {
            meta,
            id,
            fencing_token: token,
            succeeded: ok,
            exit_code: Some(if ok { 0 } else { 3 }),
            condition: String::new(),
        };
    let (a, b, d) = (held[0], held[1], held[2]);
    let first = meta();
    let req = CompleteEachRequest {
        completes: vec![
            complete(first.clone(), a, true),
            complete(meta(), (b.0, b.1 + 1), true),
            complete(meta(), d, false),
            complete(first.clone(), a, true),
            complete(None, b, true),
        ],
    };
    let outcomes = f.workers().complete_each(req).await.unwrap().into_inner();
    use complete_outcome::Outcome;
    let got: Vec<_> = outcomes
        .outcomes
        .into_iter()
        .map(|o| o.outcome.unwrap())
        .collect();
    assert_eq!(got.len(), 5, "{got:?}");
    let state = |o: &Outcome| match o {
        Outcome::Completed(r) => {
            let t = r.task.as_ref().unwrap();
            (t.id, t.state.clone())
        }
        Outcome::Refused(r) => panic!("refused: {r:?}"),
    };
    assert_eq!(state(&got[0]), (a.0, "succeeded".into()));
    assert_eq!(state(&got[2]), (d.0, "failed".into()));
    assert_eq!(
        state(&got[3]),
        (a.0, "succeeded".into()),
        "a repeated key answers its first outcome"
    );
    let Outcome::Refused(r) = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(Code::from_i32(r.code), Code::FailedPrecondition, "{r:?}");
    let Outcome::Refused(r) = &got[4] else {
        panic!("{got:?}")
    };
    assert_eq!(Code::from_i32(r.code), Code::InvalidArgument, "{r:?}");
    assert_eq!(
        f.task(b.0).await.state,
        "leased",
        "the refused one is untouched"
    );
    assert_eq!(l.complete(b.0, b.1, true).await.unwrap().state, "succeeded");

    let too_many = CompleteEachRequest {
        completes: (0..1001).map(|_| complete(meta(), a, true)).collect(),
    };
    let e = l.workers().complete_each(too_many).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // The client library shares calls between concurrent completions: 200
    // at once all complete, and the one with a stale token alone fails.
    for _ in 0..200 {
        l.submit_to("default", "").await;
    }
    let held = lease_all(&f, "w", 200).await;
    let client = c.client();
    let ok = laneq::client::workers::Outcome {
        succeeded: true,
        exit_code: Some(0),
        condition: String::new(),
    };
    let completions = held.iter().enumerate().map(|(i, &(id, token))| {
        let (client, ok) = (client.clone(), ok.clone());
        let token = if i == 7 { token + 1 } else { token };
        async move { client.complete_task(id, token, &ok, None).await }
    });
    let results = futures::future::join_all(completions).await;
    for (i, (r, &(id, _))) in results.iter().zip(&held).enumerate() {
        match r {
            Ok(t) if i != 7 => assert_eq!((t.id, t.state.as_str()), (id, "succeeded")),
            Err(e) if i == 7 => assert!(e.to_string().contains("stale"), "{e}"),
            other => panic!("completion {i}: {other:?}"),
        }
    }
    assert_eq!(f.task(held[7].0).await.state, "leased");
    c.wait_converged(&[1, 2, 3], 0).await;
}
