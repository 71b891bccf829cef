//! Pools and their clusters through gRPC and the CLI on a 3-node cluster.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use laneq::client::workers::{Outcome, WorkerProfile};
use laneq::client::ReadConsistency;
use laneq::proto::v1::{Lease, TaskSpec};
use serde_json::Value;
use tonic::Code;

use crate::support::{eventually, ok_if, Cluster, Timings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_created_changed_and_read_on_any_node() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let (a, b) = (c.client_for(2), c.client_for(3));

    let p = a
        .create_pool("gpu", &["a100".into(), "h100".into()])
        .await
        .unwrap();
    assert_eq!(p.clusters, vec!["a100", "h100"]);
    let p = b
        .get_pool("gpu", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!((p.clusters.len(), p.queues, p.version), (2, 0, 1));

    let p = a.change_cluster("gpu", "b200", true).await.unwrap();
    assert_eq!(p.clusters, vec!["a100", "b200", "h100"]);
    let p = b.change_cluster("gpu", "a100", false).await.unwrap();
    assert_eq!(p.clusters, vec!["b200", "h100"]);

    let q = a.create_queue_in("train", Some("gpu")).await.unwrap();
    assert_eq!(q.pool, "gpu");
    let p = b
        .get_pool("gpu", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(p.queues, 1);
    let pools = b.list_pools(ReadConsistency::Linearizable).await.unwrap();
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["default", "gpu"]);

    // Refusals name the field and change nothing.
    let e = a.create_pool("gpu", &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");
    let e = a
        .create_pool("cpu", &["ok".into(), "not ok".into()])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.to_string().starts_with("clusters[1]: "), "{e}");
    let e = a.change_cluster("gpu", "h100", true).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");
    let e = a.change_cluster("gpu", "nope", false).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.to_string().starts_with("cluster: "), "{e}");
    let e = a.change_cluster("nope", "x", true).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.to_string().starts_with("pool: "), "{e}");
    let e = a
        .get_pool("nope", ReadConsistency::Stale)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = a.create_queue_in("q2", Some("nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.to_string(), "pool: no pool named \"nope\"");
    let pools = a.list_pools(ReadConsistency::Linearizable).await.unwrap();
    assert_eq!(pools.len(), 2);
    assert!(b
        .get_queue("q2", ReadConsistency::Linearizable)
        .await
        .is_err());

    let index = c.status(1).await.unwrap().applied_index;
    c.wait_converged(&[1, 2, 3], index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_commands_of_the_cli_work_and_print_json() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let run = |args: &[&str]| c.cli(args);
    let (code, out, _) = run(&["pool", "create", "gpu", "--cluster", "a100", "-o", "json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "gpu");
    assert_eq!(v["clusters"], serde_json::json!(["a100"]));
    let (code, out, _) = run(&["pool", "add-cluster", "gpu", "h100"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("added cluster h100 to pool gpu"), "{out}");
    let (code, _, _) = run(&["queue", "create", "train", "--pool", "gpu"]);
    assert_eq!(code, Some(0));
    let (_, out, _) = run(&["queue", "get", "train", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pool"], "gpu");

    // `pool get`: its clusters, how many queues it holds, its version.
    let (code, out, err) = run(&["pool", "get", "gpu", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "gpu");
    assert_eq!(v["clusters"], serde_json::json!(["a100", "h100"]));
    assert_eq!(
        (v["queues"].as_u64(), v["version"].as_u64()),
        (Some(1), Some(2))
    );
    let created = v["created_ms"].as_u64().unwrap();
    assert!(
        created > 0 && v["updated_ms"].as_u64() >= Some(created),
        "{v}"
    );
    let (code, out, _) = run(&["pool", "get", "gpu"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("a100,h100"), "{out}");
    let (code, out, _) = run(&["pool", "get", "-o", "json"]);
    assert_eq!(code, Some(0), "the default pool by default");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["queues"].as_u64()),
        (Some("default"), Some(1))
    );
    let (code, _, err) = run(&["pool", "get", "nope"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("name: no pool named \"nope\""), "{err}");
    let (_, out, _) = run(&["pool", "list"]);
    assert!(out.contains("gpu") && out.contains("a100,h100"), "{out}");
    let (code, _, err) = run(&["pool", "remove-cluster", "gpu", "nope"]);
    assert_eq!(code, Some(3));
    assert!(
        err.contains("cluster: pool \"gpu\" has no cluster \"nope\""),
        "{err}"
    );
    let (code, _, err) = run(&["queue", "create", "x", "--pool", "nope"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("pool: no pool named \"nope\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_settings_are_kept_shown_and_enforced() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let run = |args: &[&str]| c.cli(args);
    assert_eq!(
        run(&["pool", "create", "gpu", "--cluster", "a100"]).0,
        Some(0)
    );
    let (code, out, err) = run(&[
        "queue",
        "create",
        "train",
        "--pool",
        "gpu",
        "--cluster",
        "a100",
        "--depth",
        "2",
        "--priority",
        "max",
        "--run-concurrency",
        "3",
        "--action-concurrency",
        "1",
        "--fairness",
        "shuffle_interleave",
        "--quota",
        "cpu=64,memory=256Gi,gpu=8",
        "--description",
        "nightly training",
        "-o",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "active");
    assert_eq!(v["priority"], 100);
    assert_eq!(v["depth"], 2);
    assert_eq!(v["run_concurrency"], 3);
    assert_eq!(v["action_concurrency"], 1);
    assert_eq!(v["fairness"], "shuffle_interleave");
    assert_eq!(v["quota"]["cpu"], 64_000);
    assert_eq!(v["quota"]["memory"], 256u64 << 30);
    assert_eq!(v["clusters"], serde_json::json!(["a100"]));
    assert_eq!(
        (v["queued"].as_u64(), v["running"].as_u64()),
        (Some(0), Some(0))
    );

    // Defaults: every cluster, depth 10000, medium, round_robin.
    let (_, out, _) = run(&["queue", "get", "default", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["depth"].as_u64(), v["priority"].as_u64()),
        (Some(10_000), Some(50))
    );
    assert_eq!(v["fairness"], "round_robin");
    assert_eq!(v["clusters"], serde_json::json!(["*"]));

    // The depth refuses a third task, with RESOURCE_EXHAUSTED (exit 6).
    for _ in 0..2 {
        assert_eq!(
            run(&["task", "submit", "--queue", "train", "--", "x"]).0,
            Some(0)
        );
    }
    let (code, _, err) = run(&["task", "submit", "--queue", "train", "--", "x"]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("queue \"train\" is full"), "{err}");
    let q = c
        .client()
        .get_queue("train", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(q.queued, 2);

    // Bad settings are refused before anything is written, naming the flag.
    for (args, needle) in [
        (vec!["--priority", "high"], "priority: "),
        (vec!["--fairness", "fifo"], "fairness: "),
        (vec!["--quota", "cpu=lots"], "quota: "),
        (
            vec!["--pool", "gpu", "--cluster", "h100"],
            "clusters: pool \"gpu\" has no cluster \"h100\"",
        ),
    ] {
        let mut all = vec!["queue", "create", "bad"];
        all.extend(args);
        let (code, _, err) = run(&all);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(needle), "{err}");
    }
    let e = c
        .client()
        .get_queue("bad", ReadConsistency::Linearizable)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let (code, _, err) = run(&["pool", "remove-cluster", "gpu", "a100"]);
    assert_eq!(code, Some(7), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_queue_refuses_submissions_until_activated() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let run = |args: &[&str]| c.cli(args);
    assert_eq!(run(&["queue", "create", "q"]).0, Some(0));
    assert_eq!(
        run(&["task", "submit", "--queue", "q", "--", "x"]).0,
        Some(0)
    );
    let (code, out, _) = run(&["queue", "drain", "q"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "queue q is draining");
    let (code, _, err) = run(&["task", "submit", "--queue", "q", "--", "x"]);
    assert_eq!(code, Some(7), "{err}");
    assert!(
        err.contains("queue \"q\" is draining and takes no new tasks"),
        "{err}"
    );
    let (code, _, err) = run(&["queue", "drain", "default"]);
    assert_eq!(code, Some(7));
    assert!(err.contains("cannot be drained"), "{err}");
    let (_, out, _) = run(&["queue", "activate", "q", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "active");
    assert_eq!(
        run(&["task", "submit", "--queue", "q", "--", "x"]).0,
        Some(0)
    );
    let q = c
        .client()
        .get_queue("q", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!((q.queued, q.state.as_str()), (2, "active"));
    check_in_flight_counts(&c).await;
}

/// What `laneq queue get NAME -o json` prints.
fn queue_json(c: &Cluster, name: &str) -> Value {
    let (code, out, err) = c.cli(&["queue", "get", name, "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

/// `queued`, `running` and `runs_active` of a queue's JSON.
fn counts(v: &Value) -> (Option<u64>, Option<u64>, Option<u64>) {
    (
        v["queued"].as_u64(),
        v["running"].as_u64(),
        v["runs_active"].as_u64(),
    )
}

/// Leases `n` tasks to `worker`, polling until they all came.
async fn lease_n(c: &Cluster, worker: &str, n: usize) -> Vec<Lease> {
    let client = c.client();
    let mut leases = vec![];
    let what = format!("{n} leases for {worker} (the count so far)");
    eventually(Duration::from_secs(10), &what, async || {
        let max = (n - leases.len()) as u32;
        let wait = Duration::from_millis(500);
        leases.extend(client.lease(worker, max, wait).await.unwrap());
        ok_if(leases.len() == n, leases.len())
    })
    .await;
    leases
}

/// `running` and `runs_active` follow leases, starts and completions made
/// through the worker API; `avg_wait_ms` appears once a task has started;
/// `queue list -o json` shows every queue with its counts.
async fn check_in_flight_counts(c: &Cluster) {
    let client = c.client();
    client.create_queue("work").await.unwrap();
    let v = queue_json(c, "work");
    assert_eq!(counts(&v), (Some(0), Some(0), Some(0)));
    assert!(v["avg_wait_ms"].is_null(), "nothing started yet: {v}");
    let submitted = Instant::now();
    for run in ["r1", "r1", "r2", "r3"] {
        let spec = TaskSpec {
            queue: "work".into(),
            run: run.into(),
            command: vec!["true".into()],
            ..Default::default()
        };
        client.submit(spec, None).await.unwrap();
    }
    let worker = WorkerProfile {
        name: "w1".into(),
        ip: "127.0.0.1".into(),
        queues: vec!["work".into()],
        slots: 3,
        ..Default::default()
    };
    client.register_worker(&worker).await.unwrap();
    let leases = lease_n(c, "w1", 3).await;
    let run_of = |l: &Lease| l.task.as_ref().unwrap().run.clone();
    let runs: BTreeSet<String> = leases.iter().map(run_of).collect();
    let v = queue_json(c, "work");
    assert_eq!(counts(&v), (Some(1), Some(3), Some(runs.len() as u64)));
    assert!(v["avg_wait_ms"].is_null(), "leased, not started: {v}");

    for l in &leases {
        let t = client.start_task(l.task.as_ref().unwrap().id, l.fencing_token, Vec::new());
        assert_eq!(t.await.unwrap().state, "running");
    }
    let waited_at_most = submitted.elapsed().as_millis() as u64;
    let v = queue_json(c, "work");
    assert_eq!(counts(&v), (Some(1), Some(3), Some(runs.len() as u64)));
    let avg = v["avg_wait_ms"].as_u64();
    assert!(avg.is_some_and(|ms| ms <= waited_at_most + 2), "{v}");

    // One run's tasks finish: one run fewer is active.
    let done = runs.first().unwrap();
    let finished: Vec<&Lease> = leases.iter().filter(|l| run_of(l) == *done).collect();
    let ok = Outcome {
        succeeded: true,
        exit_code: Some(0),
        condition: String::new(),
    };
    for l in &finished {
        let id = l.task.as_ref().unwrap().id;
        let t = client.complete_task(id, l.fencing_token, &ok, None).await;
        assert_eq!(t.unwrap().state, "succeeded");
    }
    let running = 3 - finished.len() as u64;
    let runs_active = runs.len() as u64 - 1;
    let v = queue_json(c, "work");
    assert_eq!(counts(&v), (Some(1), Some(running), Some(runs_active)));

    let (code, out, err) = c.cli(&["queue", "list", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    let queues = client
        .list_queues(ReadConsistency::Linearizable)
        .await
        .unwrap();
    let names = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|q| q["name"].as_str().unwrap().into())
            .collect()
    };
    let want: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    assert_eq!(names(&listed), want);
    assert!(["default", "q", "work"]
        .iter()
        .all(|n| want.contains(&n.to_string())));
    for (v, q) in listed.iter().zip(&queues) {
        let (queued, running) = (v["queued"].as_u64(), v["running"].as_u64());
        assert_eq!((queued, running), (Some(q.queued), Some(q.running)), "{v}");
    }
    let work = listed.iter().find(|v| v["name"] == "work").unwrap();
    assert_eq!(counts(work), (Some(1), Some(running), Some(runs_active)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_read_modify_write_and_a_concurrent_edit_is_refused() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let run = |args: &[&str]| c.cli(args);
    assert_eq!(
        run(&["queue", "create", "q", "--depth", "7", "--priority", "min"]).0,
        Some(0)
    );
    let (code, out, err) = run(&["queue", "update", "q", "--priority", "max", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Only the flag given changed.
    assert_eq!(
        (v["priority"].as_u64(), v["depth"].as_u64()),
        (Some(100), Some(7))
    );

    // Two editors read the same version; the second write is refused.
    let client = c.client();
    let q = client
        .get_queue("q", ReadConsistency::Linearizable)
        .await
        .unwrap();
    let mut spec = q.spec.clone().unwrap();
    spec.depth = Some(1);
    client
        .update_queue("q", spec.clone(), q.version, None)
        .await
        .unwrap();
    spec.depth = Some(2);
    let e = client
        .update_queue("q", spec, q.version, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e}");
    let now = client
        .get_queue("q", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(now.spec.unwrap().depth, Some(1));

    let (code, _, err) = run(&["queue", "update", "q", "--pool", "gpu"]);
    assert_eq!(code, Some(7), "{err}");
    assert!(
        err.contains("pool: queue \"q\" is in pool \"default\" for good"),
        "{err}"
    );
    let (code, _, err) = run(&["queue", "update", "nope", "--depth", "1"]);
    assert_eq!(code, Some(3), "{err}");
}
