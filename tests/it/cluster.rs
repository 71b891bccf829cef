//! Three (and four) real `laneq node` processes on loopback: replication,
//! forwarding, linearizable reads, failover, catch-up by log and by
//! snapshot, membership changes and whole-cluster restarts.

use std::time::{Duration, Instant};

use laneq::client::ReadConsistency;

use crate::support::{eventually, free_port, ok_if, signal, Cluster, Node, Timings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_follower_is_read_linearizably_on_the_other_follower() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let f = c.followers(leader);
    let (writer, reader) = (c.client_for(f[0]), c.client_for(f[1]));
    writer.create_queue("q").await.unwrap();
    for i in 0..20 {
        let r = writer
            .submit_task("q", vec!["echo".into(), i.to_string()], vec![], None)
            .await
            .unwrap();
        // The very next linearizable read on the other follower sees it.
        let t = reader
            .get_task(r.id, ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(t.command[1], i.to_string());
        assert_eq!(t.position, Some(i + 1), "positions count from 1");
        let q = reader
            .get_queue("q", ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(q.queued, i + 1);
    }
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_leader_kill_writes_go_on_and_the_node_catches_up_on_restart() {
    let mut c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let client = c.client();
    let mut ids = c.submit_many(&client, "default", 20).await;

    c.kill(leader);
    let killed_at = Instant::now();
    let r = client
        .submit_task("default", vec!["echo".into(), "after".into()], vec![], None)
        .await
        .unwrap();
    println!(
        "leader kill to first acknowledged write: {:?}",
        killed_at.elapsed()
    );
    ids.push(r.id);
    let rest: Vec<u64> = c.followers(leader);
    let new_leader = c.wait_leader(&rest).await;
    assert_ne!(new_leader, leader);
    ids.extend(c.submit_many(&client, "default", 20).await);

    c.start_node(leader);
    let index = c.status(new_leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
    c.assert_has_tasks(leader, &ids).await;
    let q = c
        .client_for(leader)
        .get_queue("default", ReadConsistency::Stale)
        .await
        .unwrap();
    assert_eq!(q.queued, ids.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_more_than_the_snapshot_threshold_catches_up_by_snapshot() {
    let timings = Timings {
        snapshot_logs_since_last: 20,
        max_in_snapshot_log_to_keep: 0,
        ..Timings::default()
    };
    let mut c = Cluster::start(3, timings);
    let leader = c.init(1).await;
    let lagger = c.followers(leader)[0];
    c.kill(lagger);
    let client = c.client();
    let ids = c.submit_many(&client, "default", 120).await;

    // The leader has snapshotted and purged past everything the lagger has.
    let what = "the leader to purge its log past index 20";
    eventually(Duration::from_secs(20), what, async || {
        let s = c.status(leader).await.unwrap();
        ok_if(s.purged_index > 20, s)
    })
    .await;

    c.start_node(lagger);
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
    assert!(
        c.log_text(lagger).contains("installed snapshot"),
        "node {lagger} caught up without a snapshot"
    );
    c.assert_has_tasks(lagger, &ids).await;
    // And it keeps following by log afterwards.
    let more = c.submit_many(&client, "default", 5).await;
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
    c.assert_has_tasks(lagger, &more).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_and_a_node_is_removed() {
    let mut c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let client = c.client();
    let ids = c.submit_many(&client, "default", 10).await;

    let addr4 = format!("127.0.0.1:{}", free_port());
    c.add_config(4, addr4.clone(), &[(4, addr4.clone())]);
    c.start_node(4);
    let r = client.add_node(4, &addr4).await.unwrap();
    assert!(
        r.members.iter().any(|m| m.id == 4 && m.kind == "voter"),
        "{r:?}"
    );
    // A retry of the same add is a no-op; the id at another address is refused.
    let again = client.add_node(4, &addr4).await.unwrap();
    assert_eq!(again.members.len(), 4);
    let e = client.add_node(4, "127.0.0.1:1").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3, 4], index).await;
    c.assert_has_tasks(4, &ids).await;

    let gone = c.followers(leader)[0];
    let r = client.remove_node(gone).await.unwrap();
    assert_eq!(r.members.len(), 3, "{r:?}");
    assert!(!r.members.iter().any(|m| m.id == gone));
    c.kill(gone);
    let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|&id| id != gone).collect();
    let more = c.submit_many(&c.client(), "default", 5).await;
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&remaining, index).await;
    c.assert_has_tasks(4, &more).await;
    let m = client.membership().await.unwrap();
    assert_eq!(m.members.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_whole_cluster_keeps_every_acknowledged_write() {
    let mut c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let client = c.client();
    client.create_queue("keep").await.unwrap();
    let ids = c.submit_many(&client, "keep", 50).await;
    for id in [1, 2, 3] {
        c.kill(id);
    }
    for id in [1, 2, 3] {
        c.start_node(id);
    }
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let client = c.client();
    for &id in &ids {
        let t = client
            .get_task(id, ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(t.queue, "keep");
    }
    let q = client
        .get_queue("keep", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(q.queued, 50);
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly_and_it_rejoins() {
    let mut c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let client = c.client();
    let ids = c.submit_many(&client, "default", 5).await;
    let status = c.terminate(leader).await;
    assert!(status.success(), "SIGTERM exit: {status:?}");
    assert!(c.log_text(leader).contains("stopped"));
    let more = c.submit_many(&client, "default", 5).await;
    c.start_node(leader);
    let rest = c.followers(leader);
    let new_leader = c.wait_leader(&rest).await;
    let index = c.status(new_leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
    c.assert_has_tasks(leader, &ids).await;
    c.assert_has_tasks(leader, &more).await;
}

/// A follower that forwarded a call's write names the leader in the
/// response, and the client sends its next writes there directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_names_the_leader_and_the_client_goes_there() {
    use laneq::proto::v1::{SubmitTaskRequest, TaskSpec, WriteMeta};
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let follower = c.followers(leader)[0];
    let submit = |key: &str| SubmitTaskRequest {
        meta: Some(WriteMeta {
            idempotency_key: key.into(),
            actor: String::new(),
        }),
        task: Some(TaskSpec {
            queue: "default".into(),
            command: vec!["true".into()],
            ..Default::default()
        }),
    };
    let header = |md: &tonic::metadata::MetadataMap, name: &str| {
        md.get(name).map(|v| v.to_str().unwrap().to_string())
    };

    let reply = Node::new(&c, follower)
        .tasks()
        .submit_task(submit("hint-1"))
        .await
        .unwrap();
    let md = reply.metadata();
    assert_eq!(
        header(md, laneq::wire::LEADER_ID_HEADER),
        Some(leader.to_string())
    );
    assert_eq!(
        header(md, laneq::wire::LEADER_ADDR_HEADER),
        Some(c.addr(leader))
    );
    let reply = Node::new(&c, leader)
        .tasks()
        .submit_task(submit("hint-2"))
        .await
        .unwrap();
    assert_eq!(
        header(reply.metadata(), laneq::wire::LEADER_ADDR_HEADER),
        None
    );

    // A client that knows only the follower sends its next write to the
    // leader: with the follower paused, it is still acknowledged within a
    // deadline shorter than one attempt on the follower.
    let client = laneq::client::Client::with_deadline(&[c.addr(follower)], Duration::from_secs(1));
    client
        .submit_task("default", vec!["x".into()], vec![], None)
        .await
        .unwrap();
    let pid = c.pid(follower).unwrap();
    signal(pid, "STOP");
    let next = client
        .submit_task("default", vec!["y".into()], vec![], None)
        .await;
    signal(pid, "CONT");
    next.expect("the second write goes straight to the leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_submit_with_the_same_key_creates_one_task() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let client = c.client();
    let a = client
        .submit_task("default", vec!["x".into()], vec![], Some("retry-1".into()))
        .await
        .unwrap();
    // The retry lands on another node: the outcome is the first one.
    let b = c
        .client_for(3)
        .submit_task("default", vec!["x".into()], vec![], Some("retry-1".into()))
        .await
        .unwrap();
    assert!(a.created);
    assert!(!b.created);
    assert_eq!(a.id, b.id);
    let q = client
        .get_queue("default", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(q.queued, 1);
}

/// Kills the leader five times in a row; every acknowledged write survives
/// and the time from each kill to the next acknowledged write is printed
/// (`cargo test -- --nocapture` shows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_leader_kills_lose_no_acknowledged_write() {
    let mut c = Cluster::start(3, Timings::default());
    let mut leader = c.init(1).await;
    let client = c.client();
    let mut ids = c.submit_many(&client, "default", 5).await;
    let mut failovers = vec![];
    for round in 0..5 {
        c.kill(leader);
        let killed_at = Instant::now();
        let r = client
            .submit_task(
                "default",
                vec!["round".into(), round.to_string()],
                vec![],
                None,
            )
            .await
            .unwrap();
        failovers.push(killed_at.elapsed());
        ids.push(r.id);
        let rest = c.followers(leader);
        let new_leader = c.wait_leader(&rest).await;
        c.start_node(leader);
        let index = c.status(new_leader).await.unwrap().applied_index;
        c.wait_converged(&[1, 2, 3], index).await;
        leader = new_leader;
    }
    failovers.sort();
    println!("leader kill to first acknowledged write, 5 kills, sorted: {failovers:?}");
    for id in [1, 2, 3] {
        c.assert_has_tasks(id, &ids).await;
    }
    let q = client
        .get_queue("default", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(q.queued, ids.len() as u64);
}

/// Tasks at the payload limit replicate, survive a snapshot and read back
/// whole from a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_at_the_limit_replicate_and_read_back_whole() {
    let timings = Timings {
        snapshot_logs_since_last: 10,
        max_in_snapshot_log_to_keep: 0,
        ..Timings::default()
    };
    let c = Cluster::start(3, timings);
    let leader = c.init(1).await;
    let client = c.client();
    let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut ids = vec![];
    for i in 0..12 {
        let r = client
            .submit_task(
                "default",
                vec!["big".into(), i.to_string()],
                payload.clone(),
                None,
            )
            .await
            .unwrap();
        ids.push(r.id);
    }
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
    let follower = c.followers(leader)[0];
    let t = c
        .client_for(follower)
        .get_task(ids[11], ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(t.payload, payload);
}

/// Initialising again, through any node or with `--init` on every start,
/// never splits the cluster or loses data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialising_again_never_splits_the_cluster() {
    let mut c = Cluster::configure(3, Timings::default());
    for id in [1, 2, 3] {
        c.start_node_with(id, &["--init"]);
    }
    let ids = [1, 2, 3];
    let leader = c.wait_leader(&ids).await;
    let client = c.client();
    let tasks = c.submit_many(&client, "default", 5).await;
    let term = c.status(leader).await.unwrap().term;
    for id in ids {
        let r = c.client_for(id).init(None).await.unwrap();
        assert!(!r.initialized_now, "node {id} initialised again");
        assert_eq!(r.members.len(), 3);
    }
    assert_eq!(c.wait_leader(&ids).await, leader);
    assert_eq!(c.status(leader).await.unwrap().term, term);

    // Restart everything, again with --init: same cluster, same data.
    for id in ids {
        c.kill(id);
    }
    for id in ids {
        c.start_node_with(id, &["--init"]);
    }
    let leader = c.wait_leader(&ids).await;
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&ids, index).await;
    for id in ids {
        c.assert_has_tasks(id, &tasks).await;
    }
    let m = client.membership().await.unwrap();
    assert_eq!(m.members.len(), 3);
}

/// A follower that fell behind by large entries (batches of 3 MB) catches
/// up. Before appends were cut to a byte budget, it was sent all it missed
/// in one message, too big to send and store within the append deadline
/// (the heartbeat interval): the message timed out, was sent again, and the
/// follower never caught up (found by the scale benchmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_by_large_entries_catches_up() {
    let timings = Timings {
        heartbeat_interval_ms: 25,
        election_timeout_min_ms: 100,
        election_timeout_max_ms: 200,
        ..Timings::default()
    };
    let mut c = Cluster::start(3, timings);
    let leader = c.init(1).await;
    let behind = c.followers(leader)[0];
    c.kill(behind);
    let client = c.client();
    let unlimited = laneq::proto::v1::QueueSpec {
        depth: Some(0),
        ..Default::default()
    };
    client
        .create_queue_with("big", None, Some(unlimited))
        .await
        .unwrap();
    let task = laneq::proto::v1::TaskSpec {
        queue: "big".into(),
        command: vec!["true".into()],
        payload: vec![7; 3 * 1024],
        ..Default::default()
    };
    for _ in 0..24 {
        let r = client
            .submit_batch(vec![task.clone(); 1000], None)
            .await
            .unwrap();
        assert_eq!(r.ids.len(), 1000);
    }
    c.start_node(behind);
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
    let q = c
        .client_for(behind)
        .get_queue("big", ReadConsistency::Stale)
        .await
        .unwrap();
    assert_eq!(q.queued, 24_000);
}

/// `cluster health` exits 0 on a whole cluster, 11 naming the member that
/// does not answer, and 0 again once it is back and caught up; `cluster
/// status` marks it unreachable meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_health_names_an_unreachable_member() {
    let mut c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let (code, out, err) = c.cli(&["cluster", "health"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("healthy: 3 members answer, node {leader} leads")),
        "{out}"
    );

    let down = c.followers(leader)[0];
    c.kill(down);
    let (code, out, err) = c.cli(&["cluster", "health", "-o", "json"]);
    assert_eq!(code, Some(11), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["healthy"], false, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    let problem = problems[0].as_str().unwrap();
    assert!(
        problem.starts_with(&format!("node {down} (")) && problem.contains("unreachable"),
        "{problem}"
    );
    assert!(err.contains("unhealthy (1 problem(s))"), "{err}");
    let (code, out, _) = c.cli(&["cluster", "status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("unreachable"), "{out}");

    c.start_node(down);
    let index = c.status(leader).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
    let what = "cluster health to exit 0 again";
    eventually(Duration::from_secs(20), what, async || {
        let (code, out, err) = c.cli(&["cluster", "health"]);
        ok_if(code == Some(0), format!("{out}{err}"))
    })
    .await;
}
