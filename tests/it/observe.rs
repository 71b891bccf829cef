//! What a node tells the world about itself, seen from outside as a load
//! balancer, Prometheus, grpcurl and an operator reading the log see it:
//! gRPC health from before a leader is known until after SIGTERM, server
//! reflection, `/healthz`, `/readyz`, `/metrics` after known actions, the
//! Grafana dashboard against those metrics, and each call's log line.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use laneq::proto::v1::*;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::{eventually, get, ok_if, signal, Cluster, Metrics, Node, Timings};

/// The health status of `service` ("" for the whole node) on `addr`, over
/// a new connection.
async fn health(addr: &str, service: &str) -> Result<ServingStatus, String> {
    let ch = laneq::wire::endpoint(addr)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let req = HealthCheckRequest {
        service: service.into(),
    };
    let r = HealthClient::new(ch)
        .check(req)
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.into_inner().status())
}

/// Waits until every service of node `addr`, and the node itself, report `want`.
async fn wait_health(addr: &str, want: ServingStatus) {
    let what = format!("{addr} to report {want:?} for itself and every laneq.v1 service");
    eventually(Duration::from_secs(20), &what, async || {
        let mut seen = BTreeMap::new();
        for s in std::iter::once("").chain(SERVICES.iter().copied()) {
            seen.insert(s, health(addr, s).await);
        }
        ok_if(seen.values().all(|s| s.as_ref() == Ok(&want)), seen)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_serves_once_a_leader_is_known() {
    let mut c = Cluster::configure(3, Timings::default());
    c.start_node(1);
    let one = c.addr(1);
    // Up, but one node of three that no one has initialised: no leader.
    let (code, _) = eventually(
        Duration::from_secs(10),
        "node 1 to answer HTTP",
        async || get(&one, "/healthz").await.map_err(|e| e.to_string()),
    )
    .await;
    assert_eq!(code, 200, "alive");
    wait_health(&one, ServingStatus::NotServing).await;
    let (code, body) = get(&one, "/readyz").await.unwrap();
    assert_eq!((code, body.trim()), (503, "no leader is known"));
    let missing = health(&one, "laneq.raft.RaftPeer").await.unwrap_err();
    assert!(missing.contains("not registered"), "{missing}");

    c.start_node(2);
    c.start_node(3);
    c.init(1).await;
    for id in [1, 2, 3] {
        wait_health(&c.addr(id), ServingStatus::Serving).await;
        let (code, body) = get(&c.addr(id), "/readyz").await.unwrap();
        assert_eq!((code, body.trim()), (200, "serving"), "node {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_health_off_while_a_call_in_flight_finishes() {
    let drain = Duration::from_millis(2_000);
    let timings = Timings {
        shutdown_drain_ms: drain.as_millis() as u64,
        ..Timings::default()
    };
    let mut c = Cluster::start(1, timings);
    c.init(1).await;
    let addr = c.addr(1);
    wait_health(&addr, ServingStatus::Serving).await;
    let n = Node::new(&c, 1);
    n.register("w1", &["default"], 1).await;

    // A long poll that waits past the drain, parked before the signal.
    let wait = Duration::from_millis(8_000);
    let poll = tokio::spawn({
        let n = n.clone();
        async move { n.lease("w1", 1, wait.as_millis() as u64).await }
    });
    eventually(
        Duration::from_secs(5),
        "the lease poll to be parked",
        async || {
            let s = c.status(1).await.expect("node 1 answers");
            ok_if(s.lease_polls_waiting == 1, s.lease_polls_waiting)
        },
    )
    .await;
    let signalled = Instant::now();
    signal(c.pid(1).unwrap(), "TERM");

    // Draining: health says so at once, new calls are still served.
    wait_health(&addr, ServingStatus::NotServing).await;
    let (code, body) = get(&addr, "/readyz").await.unwrap();
    assert_eq!((code, body.trim()), (503, "draining: shutting down"));
    assert_eq!(get(&addr, "/healthz").await.unwrap().0, 200, "still alive");
    assert!(
        signalled.elapsed() < drain,
        "the checks above ran within the drain; raise it if the machine is this slow"
    );

    // The poll outlives the server's stop, and still gets its answer.
    let leases = poll.await.unwrap();
    assert!(leases.is_empty(), "nothing was submitted: {leases:?}");
    let log = c.log_text(1);
    assert!(
        log.contains("shutting down: no new requests"),
        "the poll ended after the server stopped taking calls:\n{log}"
    );
    let status = c.wait_exit(1).await;
    assert!(status.success(), "exit {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_public_services_only() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let c = Cluster::start(1, Timings::default());
    let ch: Channel = Node::new(&c, 1).ch;
    let ask = |request: MessageRequest| {
        let mut client = ServerReflectionClient::new(ch.clone());
        async move {
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            };
            let mut answers = client
                .server_reflection_info(tokio_stream::once(req))
                .await?
                .into_inner();
            let answer = answers.message().await?.expect("one answer");
            Ok::<_, tonic::Status>(answer.message_response.expect("a response"))
        }
    };
    let listed = eventually(Duration::from_secs(10), "the reflection list", async || {
        ask(MessageRequest::ListServices(String::new()))
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let MessageResponse::ListServicesResponse(listed) = listed else {
        panic!("not a list: {listed:?}");
    };
    let mut names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, SERVICES, "the laneq.v1 services, and nothing else");
    assert!(names.contains(&"laneq.v1.Tasks".to_string()));

    // `describe`: a service resolves to its file, with its imports.
    let file = ask(MessageRequest::FileContainingSymbol(
        "laneq.v1.Workers".into(),
    ))
    .await
    .unwrap();
    let MessageResponse::FileDescriptorResponse(file) = file else {
        panic!("not a file: {file:?}");
    };
    let names: Vec<String> = file
        .file_descriptor_proto
        .iter()
        .map(|b| {
            let f: prost_types::FileDescriptorProto = prost::Message::decode(&b[..]).unwrap();
            f.name().to_string()
        })
        .collect();
    assert!(
        names.contains(&"laneq/v1/worker.proto".to_string()),
        "{names:?}"
    );
    // The peer protocol is not there.
    let peer = ask(MessageRequest::FileContainingSymbol(
        "laneq.raft.RaftPeer".into(),
    ))
    .await
    .unwrap_err();
    assert_eq!(peer.code(), tonic::Code::NotFound, "{peer}");
}

/// Submits 5 tasks to `q`, leases 2 to `w1`, completes 1.
async fn known_actions(n: &Node) -> (u64, u64) {
    let spec = QueueSpec {
        depth: Some(100),
        run_concurrency: 4,
        action_concurrency: 3,
        quota: [("cpu".to_string(), 4000)].into(),
        ..Default::default()
    };
    n.create_queue_with("q", "default", spec).await;
    n.register("w1", &["q"], 0).await;
    for _ in 0..5 {
        let spec = TaskSpec {
            queue: "q".into(),
            command: vec!["true".into()],
            resources: [("cpu".to_string(), 500)].into(),
            ..Default::default()
        };
        n.submit(spec).await.unwrap();
    }
    let leases = n.lease("w1", 2, 0).await;
    assert_eq!(leases.len(), 2);
    let first = leases[0].task.as_ref().unwrap().id;
    n.complete(first, leases[0].fencing_token, true)
        .await
        .unwrap();
    let second = leases[1].task.as_ref().unwrap().id;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_known_actions_on_every_node() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let follower = c.followers(leader)[0];
    let f = Node::new(&c, follower);
    known_actions(&f).await;
    let missing = f.get(999_999).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let (index, _) = c.wait_converged(&[1, 2, 3], 1).await;

    // Every node exports the same queue and worker figures.
    let mut scrapes = BTreeMap::new();
    for id in [1, 2, 3] {
        let m = eventually(
            Duration::from_secs(10),
            "the same applied index",
            async || {
                let m = Metrics::scrape(&c.addr(id)).await;
                let applied = m.value("laneq_raft_applied_index", &[]);
                ok_if(applied >= index as f64, applied).map(|()| m)
            },
        )
        .await;
        scrapes.insert(id, m);
    }
    let m = &scrapes[&follower];
    let q = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("queue", "q")];
        labels.extend_from_slice(extra);
        m.value(name, &labels)
    };
    assert_eq!(q("laneq_queue_tasks", &[("state", "queued")]), 3.0);
    assert_eq!(q("laneq_queue_tasks", &[("state", "running")]), 1.0);
    assert_eq!(
        q("laneq_queue_runs_active", &[]),
        1.0,
        "a task without a run is its own"
    );
    assert_eq!(q("laneq_queue_run_concurrency_limit", &[]), 4.0);
    assert_eq!(q("laneq_queue_action_concurrency_limit", &[]), 3.0);
    assert_eq!(q("laneq_queue_depth_limit", &[]), 100.0);
    assert_eq!(
        q("laneq_queue_quota", &[("resource", "cpu")]),
        4.0,
        "in cores"
    );
    assert_eq!(q("laneq_queue_quota_used", &[("resource", "cpu")]), 0.5);
    assert_eq!(q("laneq_queue_state", &[("state", "active")]), 1.0);
    assert_eq!(q("laneq_queue_state", &[("state", "draining")]), 0.0);
    assert_eq!(q("laneq_queue_info", &[("pool", "default")]), 1.0);
    // The counters apply keeps: 5 submitted, 2 leased, 1 succeeded.
    assert_eq!(q("laneq_queue_tasks_submitted_total", &[]), 5.0);
    assert_eq!(q("laneq_queue_dispatch_attempts_total", &[]), 2.0);
    assert_eq!(q("laneq_queue_leases_expired_total", &[]), 0.0);
    assert_eq!(
        q(
            "laneq_queue_tasks_finished_total",
            &[("outcome", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        q("laneq_queue_tasks_finished_total", &[("outcome", "failed")]),
        0.0
    );
    assert_eq!(q("laneq_queue_wait_seconds_count", &[]), 2.0);
    let buckets = m.buckets("laneq_queue_wait_seconds", &[("queue", "q")]);
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, 2.0)), "{buckets:?}");
    assert!(q("laneq_queue_wait_seconds_sum", &[]) >= 0.0);
    let default_queue = [("queue", "default"), ("state", "queued")];
    assert_eq!(m.value("laneq_queue_tasks", &default_queue), 0.0);
    let active = [("pool", "default"), ("state", "active")];
    assert_eq!(m.value("laneq_workers", &active), 1.0);
    assert_eq!(m.value("laneq_worker_tasks", &[("worker", "w1")]), 1.0);
    for id in [1, 2, 3] {
        let s = &scrapes[&id];
        for prefix in ["laneq_queue_", "laneq_worker"] {
            assert_eq!(
                s.with_prefix(prefix),
                m.with_prefix(prefix),
                "node {id} and node {follower} export the same {prefix}*"
            );
        }
    }

    // The calls node `follower` served, by method and code.
    let calls = |method: &str, code: &str| {
        let labels = [
            ("service", "laneq.v1.Tasks"),
            ("method", method),
            ("code", code),
        ];
        m.get("laneq_grpc_requests_total", &labels)
    };
    assert_eq!(calls("SubmitTask", "OK"), Some(5.0));
    assert_eq!(calls("GetTask", "NOT_FOUND"), Some(1.0));
    let latency = [("service", "laneq.v1.Tasks"), ("method", "SubmitTask")];
    assert_eq!(
        m.value("laneq_grpc_request_duration_seconds_count", &latency),
        5.0
    );

    // Raft: one leader, everyone knows it, the leader sees both followers.
    let sum = |name: &str| scrapes.values().map(|s| s.value(name, &[])).sum::<f64>();
    assert_eq!(sum("laneq_raft_is_leader"), 1.0);
    assert_eq!(sum("laneq_raft_has_leader"), 3.0);
    let l = &scrapes[&leader];
    for peer in c.followers(leader) {
        let lag = l.value(
            "laneq_raft_replication_lag_entries",
            &[("peer", &peer.to_string())],
        );
        assert!(lag >= 0.0, "peer {peer}: {lag}");
    }
    assert!(m.value("laneq_raft_leader_changes_total", &[]) >= 1.0);
    assert!(m.value("laneq_raft_term", &[]) >= 1.0);
    assert!(m.value("laneq_store_wal_fsync_duration_seconds_count", &[]) > 0.0);
    assert!(m.value("laneq_raft_apply_duration_seconds_count", &[]) > 0.0);
    assert!(m.value("laneq_store_disk_bytes", &[]) > 0.0);
    assert_eq!(m.value("laneq_raft_proposals_pending", &[]), 0.0);
    // The process.
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(m.value("process_open_fds", &[]) > 0.0);
    assert!(m.value("process_cpu_seconds_total", &[]) > 0.0);

    // The Grafana dashboard draws only metrics that exist.
    let families = families(&m.text);
    for name in dashboard_metrics() {
        assert!(
            families.contains(&name),
            "the dashboard draws {name}, which no node exports"
        );
    }
}

/// The metric families of a scrape, by their `# TYPE` lines, with the
/// sample names each gives (`_total`, `_bucket`, ...).
fn families(text: &str) -> Vec<String> {
    let mut out = vec![];
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
        out.push(name.to_string());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[],
        };
        out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    out
}

/// The metric names the dashboard's queries use.
fn dashboard_metrics() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/laneq.json");
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
    let mut names = vec![];
    let mut exprs = vec![];
    collect_exprs(&dashboard, &mut exprs);
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let word: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + word.len()..];
            if word.starts_with("laneq_") || word.starts_with("process_") {
                names.push(word);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == "expr" || k == "query" => {
                        out.push(s.clone())
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_is_well_formed_and_draws_clearml_graphs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/laneq.json");
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Queue average wait",
        "Queued tasks",
        "Workers",
        "Worker CPU",
        "Worker GPU",
        "Worker memory",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(want)),
            "no panel {want:?} in {titles:?}"
        );
    }
    let metrics = dashboard_metrics();
    assert!(metrics.len() > 10, "{metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_is_logged_with_its_request_id_code_and_latency() {
    let mut c = Cluster::configure(1, Timings::default());
    c.start_node_logging(1, &["--log-format", "json"], "info,laneq::rpc=debug");
    c.init(1).await;
    let n = Node::new(&c, 1);
    let mut req = tonic::Request::new(GetTaskRequest {
        id: 77,
        consistency: 0,
    });
    req.metadata_mut()
        .insert("x-request-id", "test-req-42".parse().unwrap());
    let refused = n.tasks().get_task(req).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    let echoed = refused
        .metadata()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(echoed.as_deref(), Some("test-req-42"), "the id comes back");
    // A call without an id gets one made up, and is told it.
    let r = n
        .tasks()
        .get_task(GetTaskRequest {
            id: 77,
            consistency: 0,
        })
        .await
        .unwrap_err();
    let made = r
        .metadata()
        .get("x-request-id")
        .expect("an id")
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(made).is_ok(), "{made}");

    let line = eventually(Duration::from_secs(10), "the call's log line", async || {
        let log = c.log_text(1);
        let line = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| {
                l["target"] == "laneq::rpc"
                    && l["fields"]["request_id"] == "test-req-42"
                    && l["fields"]["code"] == "NOT_FOUND"
            });
        line.ok_or("not yet")
    })
    .await;
    let fields = &line["fields"];
    assert_eq!(fields["method"], "laneq.v1.Tasks/GetTask", "{line}");
    assert!(
        fields["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
}

/// Receives what a node sends to `NOTIFY_SOCKET`, as systemd would.
struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        NotifySocket {
            socket,
            _dir: dir,
            path,
        }
    }

    /// Polls until a message with the line `line` arrives; returns every
    /// message read meanwhile.
    async fn wait_for(&self, line: &str) -> Vec<String> {
        let seen = std::sync::Mutex::new(Vec::new());
        let what = format!("the node to send {line:?} to NOTIFY_SOCKET");
        eventually(Duration::from_secs(20), &what, async || {
            let mut seen = seen.lock().unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = self.socket.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            let found = seen.iter().any(|m| m.lines().any(|l| l == line));
            ok_if(found, seen.clone())
        })
        .await;
        seen.into_inner().unwrap()
    }
}

/// Under systemd (`Type=notify`): READY=1 once the node takes calls, even
/// before a leader is known (init needs the nodes started), its readiness
/// as STATUS= as it changes, and STOPPING=1 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let mut c = Cluster::configure(1, Timings::default());
    let notify = NotifySocket::bind();
    let env = [("NOTIFY_SOCKET", notify.path.as_os_str())];
    c.start_node_env(1, &[], "info", &env);
    let seen = notify.wait_for("READY=1").await;
    assert!(
        seen.iter().all(|m| !m.contains("STATUS=serving")),
        "ready before serving: {seen:?}"
    );
    c.init(1).await;
    notify.wait_for("STATUS=serving").await;
    let status = c.terminate(1).await;
    assert!(status.success(), "{status:?}");
    notify.wait_for("STOPPING=1").await;
}
