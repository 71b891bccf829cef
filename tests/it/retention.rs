//! Retention end to end: the leader collects finished tasks once the
//! organisation's rules (set through the CLI) let them go, every node then
//! answers not found, the queue's counters keep them, a queue's own rules
//! show in `queue retention`, and `worker remove` refuses a busy worker
//! until forced.

use std::time::Duration;

use laneq::client::workers::WorkerProfile;
use laneq::client::ReadConsistency;
use tonic::Code;

use crate::support::{eventually, Cluster, Metrics, Timings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_go_after_the_retention_and_counters_stay() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let client = c.client();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = (client
            .submit_task("default", vec!["true".into()], vec![], None)
            .await)
            .unwrap();
        ids.push(r.id);
    }
    client.cancel_task(ids[0], "not needed").await.unwrap();
    client.dequeue_task(ids[1], "not needed").await.unwrap();
    let (code, out, err) = c.cli(&["config", "set", "retention-age", "1s", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let config: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(config["retention"]["age_ms"], 1_000, "{out}");

    // The leader looks every 5 s; both finished tasks go, the queued stays.
    for id in 1..=3 {
        let node = c.client_for(id);
        eventually(
            Duration::from_secs(20),
            "the finished tasks to go",
            async || {
                let gone = node.get_task(ids[0], ReadConsistency::Stale).await;
                match gone.map_err(|e| e.code()) {
                    Err(Code::NotFound) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        let s = ReadConsistency::Linearizable;
        assert_eq!(
            node.get_task(ids[1], s).await.unwrap_err().code(),
            Code::NotFound
        );
        assert_eq!(node.get_task(ids[2], s).await.unwrap().state, "queued");
    }
    let (code, out, _) = c.cli(&["task", "get", &ids[0].to_string()]);
    assert_eq!(code, Some(3), "{out}");
    let q = client
        .get_queue("default", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(q.retention.unwrap().finished_kept, 0);
    // The counters keep what the collect removed.
    let m = Metrics::scrape(&c.addr(1)).await;
    let q = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("queue", "default")];
        labels.extend_from_slice(extra);
        m.value(name, &labels)
    };
    assert_eq!(q("laneq_queue_tasks_submitted_total", &[]), 3.0);
    for outcome in ["canceled", "dequeued"] {
        let finished = q("laneq_queue_tasks_finished_total", &[("outcome", outcome)]);
        assert_eq!(finished, 1.0, "{outcome}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_rules_and_worker_removal_through_the_cli() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let client = c.client();
    client.create_queue("train").await.unwrap();
    let (code, out, err) = c.cli(&[
        "queue",
        "retention",
        "train",
        "--age",
        "2d",
        "--count",
        "1000",
        "-o",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["own_age_ms"].as_u64(), r["count"].as_u64()),
        (Some(172_800_000), Some(1000))
    );
    let (code, out, _) = c.cli(&["queue", "retention", "train", "--count", "default"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("100000 (organisation)"), "{out}");
    let (code, _, err) = c.cli(&["queue", "retention", "train", "--age", "soon"]);
    assert_eq!(code, Some(2), "{err}");

    let worker = WorkerProfile {
        name: "w1".into(),
        queues: vec!["train".into()],
        slots: 1,
        ..Default::default()
    };
    client.register_worker(&worker).await.unwrap();
    let task = (client
        .submit_task("train", vec!["true".into()], vec![], None)
        .await)
        .unwrap();
    let leases = client.lease("w1", 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(leases.len(), 1);
    let (code, _, err) = c.cli(&["worker", "remove", "w1"]);
    assert_eq!(code, Some(7), "refused while it holds a task: {err}");
    let (code, out, err) = c.cli(&["worker", "remove", "w1", "--force", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let removed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(removed["requeued"], 1, "{out}");
    let s = ReadConsistency::Linearizable;
    assert_eq!(client.get_task(task.id, s).await.unwrap().state, "queued");
    assert_eq!(
        client.get_worker("w1", s).await.unwrap_err().code(),
        Code::NotFound
    );
}
