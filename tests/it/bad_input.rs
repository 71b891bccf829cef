//! Bad input gets a clear error that names the problem, and nothing is
//! written: configs, data dirs, names, unknown queues, unreachable peers.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use laneq::client::{Client, ReadConsistency};
use tonic::Code;

use crate::support::{eventually, Cluster, Timings, BIN};

fn laneq(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_malformed_config_is_refused_with_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("id = \"one\"\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"", "id"),
        ("id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"\ncolour = \"red\"", "colour"),
        ("id = 1\nlisten = \"localhost\"\ndata_dir = \"d\"", "listen"),
        ("id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"\n[raft]\nelection_timeout_min_ms = 10", "election_timeout_min_ms"),
        ("this is not toml", "not valid"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let o = laneq(&["node", "--config", path.to_str().unwrap()]);
        assert!(!o.status.success(), "case {i} started");
        let err = stderr(&o);
        assert!(err.contains(needle), "case {i}: {err}");
        assert!(!dir.path().join("d").exists(), "case {i} wrote a data dir");
    }
    let o = laneq(&["node", "--config", "/nonexistent/laneq.toml"]);
    assert!(
        stderr(&o).contains("cannot read config /nonexistent/laneq.toml"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_node_or_cluster_is_refused() {
    let mut c = Cluster::configure(2, Timings::default());
    c.start_node(1);
    eventually(Duration::from_secs(20), "node 1 to serve", async || {
        c.status(1).await.ok_or("no answer")
    })
    .await;
    assert!(c.terminate(1).await.success());
    let node = &c.nodes[&1];
    let node1_dir = node.data_dir.to_str().unwrap().to_string();
    let config2 = c.nodes[&2].config.to_str().unwrap().to_string();

    let o = laneq(&["node", "--config", &config2, "--data-dir", &node1_dir]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("belongs to node 1, not node 2"),
        "{}",
        stderr(&o)
    );

    let other = c.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&node.config)
        .unwrap()
        .replace("cluster = \"test\"", "cluster = \"prod\"");
    std::fs::write(&other, text).unwrap();
    let o = laneq(&["node", "--config", other.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("belongs to cluster \"test\", not \"prod\""),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_unknown_queues_are_refused_and_write_nothing() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let client = c.client();
    client.create_queue("real").await.unwrap();
    let before = c.wait_converged(&[1, 2, 3], 0).await;
    let log_before = c.status(leader).await.unwrap().last_log_index;

    let long = "x".repeat(64);
    for (name, needle) in [
        ("", "must not be empty"),
        (long.as_str(), "the limit is 63"),
        ("bad name", "' ' at position 3"),
        ("-x", "starting with a letter or digit"),
    ] {
        let e = client.create_queue(name).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}: {e}");
        assert!(e.to_string().starts_with("name: "), "{e}");
        assert!(e.to_string().contains(needle), "{name:?}: {e}");
        if name.is_empty() {
            continue; // A task without a queue goes to its project's default queue.
        }
        let e = client
            .submit_task(name, vec!["x".into()], vec![], None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.to_string().starts_with("queue: "), "{e}");
    }
    let e = client
        .submit_task("real", vec![], vec![], None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("command: must not be empty"),
        "{e}"
    );
    let e = client
        .submit_task("real", vec!["x".into()], vec![0; 1024 * 1024 + 1], None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("payload: is 1048577 bytes long"),
        "{e}"
    );
    // Shape errors never reach the log.
    assert_eq!(c.status(leader).await.unwrap().last_log_index, log_before);

    let e = client
        .submit_task("nope", vec!["x".into()], vec![], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.to_string(), "queue: no queue named \"nope\"");
    let e = client.create_queue("real").await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(client
        .get_task(1, ReadConsistency::Linearizable)
        .await
        .is_err());
    let queues = client
        .list_queues(ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(queues.len(), 2);
    assert!(queues.iter().all(|q| q.queued == 0));
    let after = c.wait_converged(&[1, 2, 3], before.0).await;
    assert!(after.0 >= before.0);

    // The CLI says the same, with an exit code per kind of error.
    let ep = c.addr(leader);
    let o = laneq(&[
        "--endpoints",
        &ep,
        "task",
        "submit",
        "--queue",
        "nope",
        "--",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("queue: no queue named \"nope\""),
        "{}",
        stderr(&o)
    );
    let o = laneq(&["--endpoints", &ep, "queue", "create", "bad name"]);
    assert_eq!(o.status.code(), Some(2));
    let o = laneq(&["--endpoints", "nohost", "queue", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"nohost\" is not host:port"),
        "{}",
        stderr(&o)
    );
    // Every node is still alive.
    for id in [1, 2, 3] {
        assert!(c.status(id).await.is_some(), "node {id} died");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_is_skipped_and_an_all_dead_list_fails_in_time() {
    // Node 3 is configured but never started: 1 and 2 still make a majority.
    let mut c = Cluster::configure(3, Timings::default());
    c.start_node(1);
    c.start_node(2);
    c.init(1).await;
    let leader = c.wait_leader(&[1, 2]).await;
    let dead = c.addr(3);
    let mut eps = vec![dead.clone()];
    eps.extend([c.addr(1), c.addr(2)]);
    let client = Client::with_deadline(&eps, Duration::from_secs(10));
    let r = client
        .submit_task("default", vec!["x".into()], vec![], None)
        .await
        .unwrap();
    assert_eq!(r.id, 1);
    assert_eq!(c.status(leader).await.unwrap().role, "leader");

    let only_dead = Client::with_deadline(std::slice::from_ref(&dead), Duration::from_secs(2));
    let start = Instant::now();
    let e = only_dead
        .list_queues(ReadConsistency::Stale)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(e.to_string().contains(&dead), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "took {:?}",
        start.elapsed()
    );

    let o = laneq(&["--endpoints", &dead, "--timeout", "2", "queue", "list"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(stderr(&o).contains("cluster unavailable"), "{}", stderr(&o));
}
