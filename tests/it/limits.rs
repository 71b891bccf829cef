//! The node's limit on client calls in progress (`max_concurrent_requests`):
//! past it a call is refused at once with RESOURCE_EXHAUSTED, probes still
//! answer, and the slots come back when the calls end.

use std::time::Duration;

use laneq::proto::v1::GetQueueRequest;
use tonic::Code;

use crate::support::{eventually, free_port, get, Cluster, Node, Timings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_node_limit_are_refused_and_probes_still_answer() {
    let mut c = Cluster::empty(Timings::default(), false);
    let addr = format!("127.0.0.1:{}", free_port());
    let peers = [(1, addr.clone())];
    c.add_config_with(1, addr.clone(), &peers, "max_concurrent_requests = 2\n");
    c.start_node(1);
    c.init(1).await;
    let node = Node::new(&c, 1);
    node.create_queue("q", "", None).await;
    node.register("w1", &["q"], 1).await;
    node.register("w2", &["q"], 1).await;
    // Two long polls on an empty queue hold both slots while they wait.
    let polls: Vec<_> = ["w1", "w2"]
        .map(|w| {
            let node = node.clone();
            tokio::spawn(async move { node.lease(w, 1, 8_000).await })
        })
        .into();
    let get_queue = async || {
        let req = GetQueueRequest {
            name: "q".into(),
            consistency: 0,
        };
        node.queues().get_queue(req).await
    };
    let refusal = eventually(Duration::from_secs(5), "a third call refused", async || {
        match get_queue().await {
            Err(s) if s.code() == Code::ResourceExhausted => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(refusal.message().contains("max_concurrent_requests"), "{refusal:?}");
    let (status, _) = get(&addr, "/healthz").await.unwrap();
    assert_eq!(status, 200, "a probe is never refused");
    for poll in polls {
        assert!(poll.await.unwrap().is_empty(), "nothing to lease");
    }
    let queue = get_queue().await.expect("slots are back once the polls end");
    assert_eq!(queue.into_inner().queue.unwrap().name, "q");
}
