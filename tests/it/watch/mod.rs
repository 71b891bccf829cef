//! Watch streams (`laneq.v1.Watch`) on a 3-node cluster: a follower's task
//! watch sees every transition in order with indexes that only grow; a watch
//! resumed from a middle index, and the client's watch across the death of
//! its node, miss and repeat nothing; watchers that never read hold up no
//! submit and are skipped forward; a node refuses watchers past its limit.
//! `cli` runs the live views as a person would, in a pseudo-terminal.

mod cli;

use std::time::Duration;

use futures::StreamExt;
use laneq::client::ReadConsistency;
use laneq::proto::v1::watch_client::WatchClient;
use laneq::proto::v1::*;
use prost::Message;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{eventually, Cluster, Node, Timings};

fn watch(node: &Node) -> WatchClient<Channel> {
    WatchClient::new(node.ch.clone())
}

/// Runs task `id` through a lease, a start and a completion on worker `w`.
async fn run_task(n: &Node, w: &str, id: u64, ok: bool) {
    let leases = n.lease(w, 1, 5_000).await;
    assert_eq!(leases[0].task.as_ref().unwrap().id, id);
    let token = leases[0].fencing_token;
    n.start(id, token).await.unwrap();
    n.complete(id, token, ok).await.unwrap();
}

/// Every event of a task watch, until the stream ends OK.
async fn all_events(mut s: tonic::Streaming<TaskEvent>) -> Vec<TaskEvent> {
    let mut events = vec![];
    let read = async {
        while let Some(e) = s.message().await.unwrap() {
            events.push(e);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the watch ends after the terminal transition");
    events
}

fn states(events: &[TaskEvent]) -> Vec<(u64, String)> {
    events
        .iter()
        .map(|e| (e.index, e.transition.clone().unwrap().state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_watch_sees_every_transition_in_order() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let follower = c.followers(leader)[0];
    let (l, f) = (Node::new(&c, leader), Node::new(&c, follower));
    l.register("w1", &["default"], 1).await;
    let id = l.submit_to("default", "").await;
    let req = WatchTaskRequest {
        id,
        ..Default::default()
    };
    let stream = watch(&f).watch_task(req).await.unwrap().into_inner();
    let watcher = tokio::spawn(all_events(stream));
    run_task(&l, "w1", id, true).await;
    let events = watcher.await.unwrap();

    let seen: Vec<String> = states(&events).into_iter().map(|(_, s)| s).collect();
    assert_eq!(seen, ["queued", "leased", "running", "succeeded"]);
    let indexes: Vec<u64> = events.iter().map(|e| e.index).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    assert!(indexes[0] > 0, "applied through the log: {indexes:?}");
    let last = events.last().unwrap();
    assert!(last.terminal && events.iter().rev().skip(1).all(|e| !e.terminal));
    // The same transitions, with the same indexes, as the task's timeline.
    let timeline = f.task(id).await.timeline;
    let recorded: Vec<u64> = timeline.iter().map(|t| t.index).collect();
    assert_eq!(recorded, indexes);
    assert_eq!(last.transition.as_ref(), timeline.last());
}

/// A watch from a middle index gets exactly the transitions after it, and
/// the client's watch goes on through the death of the node it was on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_misses_nothing() {
    let mut c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let (f1, f2) = (c.followers(leader)[0], c.followers(leader)[1]);
    let l = Node::new(&c, leader);
    l.register("w1", &["default"], 1).await;

    // The client watches through f1 first: its only other endpoint is f2.
    let client =
        laneq::client::Client::with_deadline(&[c.addr(f1), c.addr(f2)], Duration::from_secs(20));
    let id = l.submit_to("default", "").await;
    let mut events = Box::pin(client.watch_task(id, 0, ReadConsistency::Linearizable));
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.transition.unwrap().state, "queued");
    c.kill(f1);
    run_task(&l, "w1", id, false).await;
    let mut rest = vec![];
    while let Some(e) = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("the watch resumes on the other node")
    {
        rest.push(e.unwrap());
    }
    let seen: Vec<String> = states(&rest).into_iter().map(|(_, s)| s).collect();
    assert_eq!(seen, ["leased", "running", "failed"], "no gap, no repeat");
    assert!(rest.last().unwrap().exit_code == Some(3));

    // From the middle: the lease's index.
    let all = all_events(
        watch(&Node::new(&c, f2))
            .watch_task(WatchTaskRequest {
                id,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(all.len(), 4);
    let middle = all[1].index;
    let req = WatchTaskRequest {
        id,
        from_index: middle,
        ..Default::default()
    };
    let resumed = all_events(watch(&l).watch_task(req).await.unwrap().into_inner()).await;
    assert_eq!(states(&resumed), states(&all[2..]));
}

/// The flow-control window of a stalled watcher's stream: what the node may
/// send it before it reads.
const TINY_WINDOW: usize = 128;

/// Watchers on the leader whose connection never reads (a 128-byte window,
/// full after a few views) hold up no submit: apply goes on, and every submit is
/// answered. Read at last, each watcher gets what its window held and then,
/// skipped forward, the latest view: nothing was queued for it beyond the
/// window (a bound in bytes, not in time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watchers_do_not_slow_submits() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let tiny = laneq::wire::endpoint(&c.addr(leader))
        .initial_stream_window_size(Some(TINY_WINDOW as u32))
        .initial_connection_window_size(Some(1 << 20))
        .connect()
        .await
        .unwrap();
    let mut stalled = vec![];
    for _ in 0..20 {
        let req = WatchQueueRequest {
            name: "default".into(),
            ..Default::default()
        };
        let s = WatchClient::new(tiny.clone())
            .watch_queue(req)
            .await
            .unwrap();
        stalled.push(s.into_inner());
    }
    let client = c.client();
    let submits = async {
        for i in 0..200 {
            client
                .submit_task("default", vec!["echo".into(), i.to_string()], vec![], None)
                .await
                .unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), submits)
        .await
        .expect("200 submits to be answered while 20 watchers stall");

    for (n, mut s) in stalled.into_iter().enumerate() {
        let mut seen: Vec<QueueEvent> = vec![];
        let latest = async {
            while seen.last().map(|e| e.queue.as_ref().unwrap().queued) != Some(200) {
                seen.push(s.message().await.unwrap().expect("the watch goes on"));
            }
        };
        let reached = tokio::time::timeout(Duration::from_secs(30), latest).await;
        let queued: Vec<u64> = seen
            .iter()
            .map(|e| e.queue.as_ref().unwrap().queued)
            .collect();
        assert!(
            reached.is_ok(),
            "stalled watcher {n} to see 200 queued: {queued:?}"
        );
        // gRPC frames: a flag byte and a 4-byte length, then the message.
        let bytes: Vec<usize> = seen.iter().map(|e| 5 + e.encoded_len()).collect();
        let held: usize = bytes[..bytes.len() - 1].iter().sum();
        let largest = bytes.iter().max().unwrap();
        // The window, the view that straddled its end, and one to spare.
        assert!(
            held <= TINY_WINDOW + 2 * largest,
            "watcher {n}: {held} bytes of views before the latest, more than its window \
             ({TINY_WINDOW}) holds: {queued:?}"
        );
        let indexes: Vec<u64> = seen.iter().map(|e| e.index).collect();
        assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_watchers_past_its_limit() {
    let mut c = Cluster::configure(1, Timings::default());
    let config = c.nodes[&1].config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[watch]\nmax_watchers = 2\n")).unwrap();
    c.start_node(1);
    c.init(1).await;
    let n = Node::new(&c, 1);
    let queues = || WatchQueuesRequest::default();
    let a = watch(&n).watch_queues(queues()).await.unwrap();
    let _b = watch(&n)
        .watch_workers(WatchWorkersRequest::default())
        .await
        .unwrap();
    let task = WatchTaskRequest {
        id: n.submit_to("default", "").await,
        ..Default::default()
    };
    let e = watch(&n).watch_task(task).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    assert!(e.message().contains("max_watchers"), "{e}");
    // The client gives up at once: a refusal, not a break to resume from.
    let client = c.client_for(1);
    let mut refused = Box::pin(client.watch_task(task.id, 0, ReadConsistency::Linearizable));
    let refused = refused.next().await;
    let e = refused.expect("an answer").unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");

    // A watcher that goes frees its slot.
    drop(a);
    eventually(Duration::from_secs(10), "a slot to free", async || {
        watch(&n)
            .watch_task(task)
            .await
            .map(|_| ())
            .map_err(|e| e.code())
    })
    .await;
}
