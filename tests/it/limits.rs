//! Limits against abuse: a node sheds requests past `[limits]
//! max_requests` with RESOURCE_EXHAUSTED (its probes still answer), and a
//! request its client abandoned stops on the server.

use std::time::Duration;

use laneq::proto::v1::{LeaseRequest, ListQueuesRequest};
use tonic::Code;

use crate::support::{eventually, get, meta, ok_if, Cluster, Node, Timings};

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
async fn a_node_sheds_requests_past_its_limit_and_recovers() {
    let c = Cluster::start(
        3,
        Timings {
            extra: "\n[limits]\nmax_requests = 2\n".into(),
            ..Timings::default()
        },
    );
    let leader = c.init(1).await;
    let l = Node::new(&c, leader);
    l.register("w1", &["default"], 2).await;

    // Two parked lease polls hold both of the leader's permits.
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { poll(&l, 20_000, Duration::from_secs(30)).await })
        })
        .collect();
    let list = || async {
        let req = ListQueuesRequest { consistency: 1 };
        l.queues().list_queues(req).await.map(|_| ())
    };
    let what = format!("node {leader} to shed a third request (its answer)");
    let e = eventually(Duration::from_secs(10), &what, async || {
        match list().await {
            Err(e) if e.code() == Code::ResourceExhausted => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(e.message().contains("max_requests"), "{e}");
    let (status, _) = get(&c.addr(leader), "/healthz").await.unwrap();
    assert_eq!(status, 200, "probes are not shed");
    // Another node has room of its own.
    let f = Node::new(&c, c.followers(leader)[0]);
    f.queues()
        .list_queues(ListQueuesRequest { consistency: 1 })
        .await
        .unwrap();

    // Once the polls end, the node serves again.
    for p in polls {
        p.abort();
    }
    eventually(
        Duration::from_secs(10),
        "the leader to serve again",
        async || list().await.map_err(|e| e.code()),
    )
    .await;
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
