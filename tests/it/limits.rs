//! The node's limit on client calls in progress (`max_concurrent_requests`):
//! past it a call is refused at once with RESOURCE_EXHAUSTED, probes still
//! answer, and the slots come back when the calls end. And a call its
//! client abandoned stops on the server.

use std::time::Duration;

use laneq::proto::v1::{GetQueueRequest, LeaseRequest};
use tonic::Code;

use crate::support::{eventually, free_port, get, meta, ok_if, Cluster, Node, Timings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_node_limit_are_refused_and_probes_still_answer() {
    let mut c = Cluster::empty(Timings::default(), false);
    let addr = format!("127.0.0.1:{}", free_port());
    let peers = [(1, addr.clone())];
    c.add_config_with(1, addr.clone(), &peers, "max_concurrent_requests = 1\n");
    c.start_node(1);
    c.init(1).await;
    let node = Node::new(&c, 1);
    node.create_queue("q", "", None).await;
    node.register("w1", &["q"], 1).await;
    // A long poll on an empty queue holds the one slot while it waits (it
    // tries again while the test's own calls hold the slot); meanwhile
    // other calls are refused.
    let poll = eventually(
        Duration::from_secs(10),
        "the poll to get the slot",
        async || {
            let req = LeaseRequest {
                meta: meta(),
                worker: "w1".into(),
                max_tasks: 1,
                wait_ms: 6_000,
            };
            match node.workers().lease(req).await {
                Err(s) if s.code() == Code::ResourceExhausted => Err(s),
                other => Ok(other.map(|r| r.into_inner().leases)),
            }
        },
    );
    let get_queue = async || {
        let req = GetQueueRequest {
            name: "q".into(),
            consistency: 0,
        };
        node.queues().get_queue(req).await
    };
    let meanwhile = async {
        let refusal = eventually(
            Duration::from_secs(5),
            "a call refused",
            async || match get_queue().await {
                Err(s) if s.code() == Code::ResourceExhausted => Ok(s),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
        (refusal, get(&addr, "/healthz").await.unwrap().0)
    };
    let (leases, (refusal, probe)) = tokio::join!(poll, meanwhile);
    assert!(
        refusal.message().contains("max_concurrent_requests"),
        "{refusal:?}"
    );
    assert_eq!(probe, 200, "a probe is never refused");
    let leases = leases.expect("the poll is answered");
    assert!(leases.is_empty(), "nothing to lease: {leases:?}");
    let queue = get_queue()
        .await
        .expect("the slot is back once the poll ends");
    assert_eq!(queue.into_inner().queue.unwrap().name, "q");
}

/// A lease poll on `node` that waits up to `wait_ms` for work, with a
/// client deadline of `deadline`.
async fn poll(node: &Node, wait_ms: u64, deadline: Duration) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(LeaseRequest {
        meta: meta(),
        worker: "w1".into(),
        max_tasks: 1,
        wait_ms,
    });
    req.set_timeout(deadline);
    node.workers().lease(req).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_its_client_abandoned_stops_on_the_server() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let l = Node::new(&c, leader);
    l.register("w1", &["default"], 1).await;
    // The poll would wait 60 s for work; its client gives up after 2 s.
    let abandoned = tokio::spawn({
        let l = l.clone();
        async move { poll(&l, 60_000, Duration::from_secs(2)).await }
    });
    let parked = |n: u32| {
        let c = &c;
        async move {
            let s = c.status(leader).await.ok_or(u32::MAX)?;
            ok_if(s.lease_polls_waiting == n, s.lease_polls_waiting)
        }
    };
    let what = format!("the poll to be parked on node {leader} (polls parked)");
    eventually(Duration::from_secs(5), &what, async || parked(1).await).await;
    let e = abandoned.await.unwrap().unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e}"
    );
    let what = format!("the abandoned poll to end on node {leader} (polls parked)");
    eventually(Duration::from_secs(5), &what, async || parked(0).await).await;
}
