//! The metrics history on a real 3-node cluster: after a scripted load,
//! `GetQueueMetrics`, `GetWorkerStats` and `GetWorkerActivity` answer the
//! same from every node (and plausibly), again after the leader is killed
//! and after the whole cluster restarts; and the CLI shows it. The bucket
//! arithmetic is the model's unit tests' business: a test here cannot wait
//! for many 10 s buckets cheaply.

use std::time::Duration;

use laneq::client::{Range, ReadConsistency};
use laneq::proto::v1::{
    GetQueueMetricsResponse, GetWorkerActivityResponse, GetWorkerStatsResponse, GpuUsage,
    HeartbeatRequest, Usage,
};

use crate::support::{eventually, Cluster, Node, Timings};

/// The three answers of one node.
type Answers = (
    GetQueueMetricsResponse,
    GetWorkerStatsResponse,
    GetWorkerActivityResponse,
);

async fn answers(c: &Cluster, id: u64, range: Range) -> Result<Answers, String> {
    let client = c.client_for(id);
    let stale = ReadConsistency::Stale;
    let e = |e: laneq::client::ClientError| format!("node {id}: {e}");
    Ok((
        client.queue_metrics(&[], range, stale).await.map_err(e)?,
        client
            .worker_stats("hw-1", &[], range, stale)
            .await
            .map_err(e)?,
        client.worker_activity(range, stale).await.map_err(e)?,
    ))
}

/// Waits until every node of `ids` has applied the same entries and answers
/// the same; returns that answer.
async fn same_everywhere(c: &Cluster, ids: &[u64], range: Range) -> Answers {
    c.wait_converged(ids, 1).await;
    let what = format!("nodes {ids:?} to answer the same history");
    eventually(Duration::from_secs(20), &what, async || {
        let mut all = vec![];
        for &id in ids {
            all.push(answers(c, id, range).await?);
        }
        match all.iter().all(|a| *a == all[0]) {
            true => Ok(all.swap_remove(0)),
            false => Err(format!("{} answers differ", all.len())),
        }
    })
    .await
}

fn usage(cpu_pct: f64, at_ms: u64) -> Option<Usage> {
    Some(Usage {
        cpu_pct: Some(cpu_pct),
        memory_used_bytes: Some(1 << 30),
        gpus: vec![GpuUsage {
            index: 0,
            name: "test".into(),
            util_pct: 90.0,
            memory_used_bytes: 2 << 30,
            memory_total_bytes: 8 << 30,
        }],
        at_ms,
        ..Default::default()
    })
}

/// Queues, a worker, submits, two leases run to the end, heartbeats with
/// usage: the load every answer below is about.
async fn scripted_load(c: &Cluster, leader: u64) {
    let node = Node::new(c, leader);
    node.create_queue("hq-a", "default", None).await;
    node.create_queue("hq-b", "default", None).await;
    node.register("hw-1", &["hq-a"], 2).await;
    let client = c.client();
    c.submit_many(&client, "hq-a", 6).await;
    c.submit_many(&client, "hq-b", 3).await;
    let leases = node.lease("hw-1", 2, 1_000).await;
    assert_eq!(leases.len(), 2);
    for (i, cpu) in [20.0, 40.0, 30.0].into_iter().enumerate() {
        let req = HeartbeatRequest {
            worker: "hw-1".into(),
            tasks: vec![],
            usage: usage(cpu, 1_000 + i as u64),
        };
        node.send_heartbeat(req).await;
        let what = format!("heartbeat {i} to be applied");
        eventually(Duration::from_secs(10), &what, async || {
            let w = node.worker("hw-1").await;
            match w.usage.map(|u| u.at_ms) {
                Some(at) if at == 1_000 + i as u64 => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }
    for l in &leases {
        let id = l.task.as_ref().unwrap().id;
        node.start(id, l.fencing_token).await.unwrap();
        node.complete(id, l.fencing_token, true).await.unwrap();
    }
}

/// What the load implies, whichever node answered.
fn plausible((queues, stats, activity): &Answers) {
    let span = queues.span.unwrap();
    assert_eq!(span.resolution_ms, 10_000, "{span:?}");
    assert!(!span.partial, "{span:?}");
    assert_eq!(queues.queues[0].queue, "", "the aggregate comes first");
    let named: Vec<&str> = queues.queues.iter().map(|q| q.queue.as_str()).collect();
    assert!(
        named.contains(&"hq-a") && named.contains(&"hq-b"),
        "{named:?}"
    );
    let of = |name: &str| {
        &queues
            .queues
            .iter()
            .find(|q| q.queue == name)
            .unwrap()
            .points
    };
    let peak = |name: &str| {
        of(name)
            .iter()
            .filter_map(|p| p.queued.as_ref())
            .map(|s| s.max)
            .fold(0.0, f64::max)
    };
    assert_eq!(peak("hq-a"), 6.0);
    assert_eq!(peak("hq-b"), 3.0);
    assert_eq!(peak(""), 9.0);
    let leased: u64 = of("hq-a")
        .iter()
        .filter_map(|p| p.wait_ms.as_ref())
        .map(|s| s.count)
        .sum();
    assert_eq!(leased, 2, "two leases from hq-a");
    let last = of("").last().unwrap().queued.unwrap();
    assert!(
        last.min <= 7.0 && last.max >= 7.0,
        "7 queued at the end: {last:?}"
    );
    let cpu = stats.metrics.iter().find(|m| m.metric == "cpu").unwrap();
    let (mut n, mut lo, mut hi) = (0, f64::MAX, f64::MIN);
    for s in cpu.points.iter().filter_map(|p| p.stat.as_ref()) {
        (n, lo, hi) = (n + s.count, lo.min(s.min), hi.max(s.max));
    }
    assert_eq!((n, lo, hi), (3, 20.0, 40.0), "cpu samples");
    let gpu = stats.metrics.iter().find(|m| m.metric == "gpu").unwrap();
    assert_eq!(gpu.variant, "gpu0");
    let total = activity
        .points
        .iter()
        .filter_map(|p| p.total.as_ref())
        .map(|s| s.max);
    assert_eq!(total.fold(0.0, f64::max), 1.0, "one worker");
}

#[tokio::test]
async fn every_node_answers_the_same_history_across_failover_and_restart() {
    let timings = Timings {
        lease_ttl_ms: 600_000,
        worker_timeout_ms: 600_000,
        ..Timings::default()
    };
    let mut c = Cluster::start(3, timings);
    let leader = c.init(1).await;
    let from_ms = laneq::clock::now_ms() - 30_000;
    scripted_load(&c, leader).await;
    // A range that ends now: nothing after it can change the answers.
    let range = Range {
        from_ms,
        to_ms: laneq::clock::now_ms(),
        interval_ms: 10_000,
    };
    let ids = [1, 2, 3];
    let before = same_everywhere(&c, &ids, range).await;
    plausible(&before);

    c.kill(leader);
    let rest = c.followers(leader);
    c.wait_leader(&rest).await;
    assert!(
        same_everywhere(&c, &rest, range).await == before,
        "after failover"
    );

    c.start_node(leader);
    c.wait_converged(&ids, 1).await;
    for id in ids {
        c.terminate(id).await;
    }
    for id in ids {
        c.start_node(id);
    }
    c.wait_leader(&ids).await;
    assert!(
        same_everywhere(&c, &ids, range).await == before,
        "after a restart"
    );

    // The CLI: a table of one queue, JSON for programs, and a clear error.
    let (code, out, err) = c.cli(&["queue", "metrics", "hq-a", "--since", "10m"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("QUEUED MIN") && out.contains("every"), "{out}");
    let (code, out, err) = c.cli(&["worker", "stats", "hw-1", "--since", "10m", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["worker"], "hw-1");
    let (code, _, err) = c.cli(&["queue", "metrics", "--since", "6x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--since") && err.contains("not a duration"),
        "{err}"
    );
}
