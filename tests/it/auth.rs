//! Authentication and roles on a cluster with tokens: every public RPC and
//! HTTP route against every kind of caller (none, malformed, unknown,
//! revoked, expired, a wrong secret, and each role), the scope of bound
//! roles (a submitter's projects, a worker's pools), the identity recorded
//! in timelines, and tokens managed from the CLI. No refused call changes
//! anything.

use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use laneq::client::{Client, ClientOptions, Credentials, ReadConsistency, TaskFilter};
use laneq::proto::v1::{ProjectSettings, SubmitTaskRequest, TaskSpec, WriteMeta};
use prost::Message;
use tonic::codegen::http;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{eventually, get_tls, Cluster, Node, Timings};

/// A cluster whose callers must present tokens: TLS, and the admin's
/// token made by `init`.
fn secure() -> Cluster {
    Cluster::start_secure(3, Timings::default())
}

/// A client of every node of `c` with `credentials`.
fn with(c: &Cluster, credentials: Credentials) -> Client {
    let options = ClientOptions {
        deadline: Duration::from_secs(20),
        tls: c.client_tls(None),
        credentials,
    };
    Client::connect(&c.endpoints(), options).unwrap()
}

/// Every method of the public API, as `/laneq.v1.Service/Method`.
fn public_methods() -> Vec<String> {
    let set =
        prost_types::FileDescriptorSet::decode(laneq::proto::v1::FILE_DESCRIPTOR_SET).unwrap();
    let mut paths = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "laneq.v1") {
        for s in &file.service {
            for m in &s.method {
                paths.push(format!("/laneq.v1.{}/{}", s.name(), m.name()));
            }
        }
    }
    paths
}

/// What the spec gives each role, written out apart from the server's own
/// table: a read is a Get, List or Watch, the metrics, the membership, a
/// node's status and a task's logs; tokens are the admin's alone.
fn allowed(role: &str, path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap();
    let service = path
        .trim_start_matches("/laneq.v1.")
        .split('/')
        .next()
        .unwrap();
    let read = ["Get", "List", "Watch"]
        .iter()
        .any(|p| method.starts_with(p))
        || service == "Metrics"
        || matches!(method, "Membership" | "NodeStatus" | "TaskLogs")
        || (service == "Watch");
    let task_writes = matches!(
        method,
        "SubmitTask" | "SubmitTasks" | "SubmitEach" | "CancelTask" | "DequeueTask" | "MoveTask"
    );
    // Removing a worker is the admin's, not a worker's.
    let worker = service == "Workers" && !read && method != "RemoveWorker";
    if service == "Tokens" {
        return role == "admin";
    }
    match role {
        "admin" => true,
        "submitter" => read || (service == "Tasks" && task_writes),
        "worker" => worker,
        "viewer" => read,
        _ => false,
    }
}

/// Calls `path` with an empty request and `authorization` (if any);
/// returns the code, with DEADLINE_EXCEEDED for a watch that stays open.
async fn call(ch: Channel, path: &str, authorization: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(ch);
    if grpc.ready().await.is_err() {
        return Code::Unavailable;
    }
    let mut req = tonic::Request::new(());
    req.set_timeout(Duration::from_secs(2));
    if let Some(a) = authorization {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match tokio::time::timeout(Duration::from_secs(3), grpc.unary(req, path, codec)).await {
        Ok(Ok(_)) => Code::Ok,
        Ok(Err(s)) => s.code(),
        Err(_) => Code::DeadlineExceeded,
    }
}

/// What a refused call must leave as it was: every record a read shows.
async fn everything(c: &Client) -> String {
    let s = ReadConsistency::Linearizable;
    let filter = TaskFilter {
        page_size: 1000,
        ..Default::default()
    };
    let tasks = c.list_tasks(&filter, "", s).await.unwrap().tasks;
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        c.list_queues(s).await.unwrap(),
        c.list_pools(s).await.unwrap(),
        c.list_projects(s).await.unwrap(),
        c.list_tokens(s).await.unwrap(),
        tasks,
        c.list_workers(s).await.unwrap().len(),
    )
}

/// The tokens of the matrix, made by the admin: one per role, a submitter
/// of `ml`, a worker of `gpu`, a revoked one and an expired one.
struct Tokens {
    admin: String,
    submitter: String,
    worker: String,
    viewer: String,
    revoked: String,
    expired: String,
}

async fn make_tokens(c: &Cluster) -> Tokens {
    let admin = c.client();
    admin.create_pool("gpu", &[]).await.unwrap();
    for p in ["ml", "web"] {
        admin
            .create_project(p, ProjectSettings::default())
            .await
            .unwrap();
    }
    let make = async |name: &str, role: &str, projects: &[&str], pools: &[&str], ttl_ms| {
        let (token, digest) = laneq::client::new_token(name);
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        admin
            .create_token(
                name,
                role,
                &owned(projects),
                &owned(pools),
                digest,
                Duration::from_millis(ttl_ms),
            )
            .await
            .unwrap();
        token
    };
    let revoked = make("gone", "viewer", &[], &[], 0).await;
    admin.revoke_token("gone").await.unwrap();
    Tokens {
        admin: c.admin.get().unwrap().clone(),
        submitter: make("sub-ml", "submitter", &["ml"], &[], 0).await,
        worker: make("w-gpu", "worker", &[], &["gpu"], 0).await,
        viewer: make("watcher", "viewer", &[], &[], 0).await,
        revoked,
        expired: make("old", "viewer", &[], &[], 1).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_checked_for_every_kind_of_caller() {
    let c = secure();
    let leader = c.init(1).await;
    let t = make_tokens(&c).await;
    let admin = c.client();
    let before = everything(&admin).await;
    let methods = public_methods();
    assert!(methods.len() >= 54, "{} methods", methods.len());
    let ch = Node::new(&c, c.followers(leader)[0]).ch;

    // Refused: no credentials, malformed ones, and tokens that are unknown,
    // revoked, expired or carry a wrong secret.
    let wrong_secret = format!("{}0", t.viewer);
    let refused: Vec<(&str, Option<String>)> = vec![
        ("no credentials", None),
        ("malformed", Some("Bearer no-dot-here".into())),
        ("not bearer", Some(format!("Basic {}", t.admin))),
        ("unknown", Some("Bearer nobody.0123".into())),
        ("revoked", Some(format!("Bearer {}", t.revoked))),
        ("expired", Some(format!("Bearer {}", t.expired))),
        ("wrong secret", Some(format!("Bearer {wrong_secret}"))),
    ];
    let mut calls = 0;
    for (what, auth) in &refused {
        let codes =
            futures::future::join_all(methods.iter().map(|m| call(ch.clone(), m, auth.as_deref())))
                .await;
        for (m, code) in methods.iter().zip(codes) {
            calls += 1;
            let expected = match m.as_str() {
                "/laneq.v1.Cluster/Init" => code,
                _ => Code::Unauthenticated,
            };
            assert_eq!(code, expected, "{what}: {m}");
            assert_ne!(code, Code::PermissionDenied, "{what}: {m}");
        }
    }

    // Each role: refused (PERMISSION_DENIED) exactly where the spec says.
    let roles = [
        ("admin", &t.admin),
        ("submitter", &t.submitter),
        ("worker", &t.worker),
        ("viewer", &t.viewer),
    ];
    for (role, token) in roles {
        let auth = format!("Bearer {token}");
        let denied: Vec<&String> = methods.iter().filter(|m| !allowed(role, m)).collect();
        let codes =
            futures::future::join_all(denied.iter().map(|m| call(ch.clone(), m, Some(&auth))))
                .await;
        for (m, code) in denied.iter().zip(codes) {
            calls += 1;
            if m.as_str() != "/laneq.v1.Cluster/Init" {
                assert_eq!(code, Code::PermissionDenied, "{role}: {m}");
            }
        }
    }
    assert_eq!(
        everything(&admin).await,
        before,
        "a refused call changed something"
    );

    // And let through (whatever the empty request then gets) elsewhere.
    for (role, token) in roles {
        let auth = format!("Bearer {token}");
        let ok: Vec<&String> = methods.iter().filter(|m| allowed(role, m)).collect();
        let codes =
            futures::future::join_all(ok.iter().map(|m| call(ch.clone(), m, Some(&auth)))).await;
        for (m, code) in ok.iter().zip(codes) {
            calls += 1;
            assert!(
                !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                "{role}: {m} answered {code:?}"
            );
        }
    }
    println!("{calls} calls checked over {} methods", methods.len());

    // The HTTP routes: probes are open, /metrics needs a reader.
    let addr = c.addr(leader);
    for (path, token, status) in [
        ("/healthz", None, 200),
        ("/readyz", None, 200),
        ("/metrics", None, 401),
        ("/metrics", Some(t.revoked.as_str()), 401),
        ("/metrics", Some(t.worker.as_str()), 403),
        ("/metrics", Some(t.viewer.as_str()), 200),
    ] {
        let ca = c.client_tls(None).unwrap().ca;
        let (got, body) = get_tls(&addr, path, &ca, token).await.unwrap();
        assert_eq!(got, status, "{path} with {token:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_roles_act_only_on_their_projects_and_pools() {
    let c = secure();
    c.init(1).await;
    let t = make_tokens(&c).await;
    let admin = c.client();
    let (sub, worker) = (
        c.client_as(Some(&t.submitter)),
        c.client_as(Some(&t.worker)),
    );
    let spec = |project: &str| TaskSpec {
        project: project.into(),
        command: vec!["true".into()],
        ..Default::default()
    };
    let ml = sub.submit(spec("ml"), None).await.unwrap().id;
    let web = admin.submit(spec("web"), None).await.unwrap().id;
    admin.create_queue_in("gpu-q", Some("gpu")).await.unwrap();
    let profile = |name: &str, pool: &str| laneq::client::workers::WorkerProfile {
        name: name.into(),
        pool: pool.into(),
        queues: vec![if pool == "gpu" { "gpu-q" } else { "default" }.into()],
        slots: 1,
        ..Default::default()
    };
    admin
        .register_worker(&profile("w-default", "default"))
        .await
        .unwrap();
    let before = everything(&admin).await;

    let e = sub.submit(spec("web"), None).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(
        e.to_string().contains("tasks.submit") && e.to_string().contains("web"),
        "{e}"
    );
    let e = sub.cancel_task(web, "not mine").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = sub.create_queue("mine").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.to_string().contains("queues.manage"), "{e}");
    let e = worker
        .register_worker(&profile("w1", "default"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.to_string().contains("pool \"default\""), "{e}");
    let e = worker
        .lease("w-default", 1, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = worker.submit(spec("ml"), None).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    // A worker's log stream only for a worker of its pools.
    let hello = laneq::proto::v1::LogUpload {
        worker: "w-default".into(),
        ..Default::default()
    };
    let e = worker
        .serve_logs(futures::stream::iter([hello]).chain(futures::stream::pending()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.to_string().contains("pool \"default\""), "{e}");
    // A submitter reads the logs of any task, as it reads the tasks.
    let mut logs = Box::pin(sub.task_logs(web, 0, false, 0));
    let e = logs.next().await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert_eq!(
        everything(&admin).await,
        before,
        "a refused call changed something"
    );

    // Within their scope they act.
    sub.cancel_task(ml, "mine").await.unwrap();
    worker
        .register_worker(&profile("w-gpu-1", "gpu"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timelines_record_the_authenticated_identity() {
    let c = secure();
    let leader = c.init(1).await;
    let t = make_tokens(&c).await;
    // A raw call that claims to be someone else is recorded as its token.
    let node = Node::new(&c, leader);
    let mut req = tonic::Request::new(SubmitTaskRequest {
        meta: Some(WriteMeta {
            idempotency_key: laneq::wire::new_idempotency_key(),
            actor: "mallory".into(),
        }),
        task: Some(TaskSpec {
            project: "ml".into(),
            command: vec!["true".into()],
            ..Default::default()
        }),
    });
    let bearer = format!("Bearer {}", t.submitter);
    req.metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let id = node.tasks().submit_task(req).await.unwrap().into_inner().id;
    let actor = |task: laneq::proto::v1::Task| task.timeline[0].actor.clone();
    let admin = c.client();
    assert_eq!(
        actor(
            admin
                .get_task(id, ReadConsistency::Linearizable)
                .await
                .unwrap()
        ),
        "sub-ml"
    );

    // An admin may say whom it acts for; nobody else may.
    let for_bob = Credentials::new(Some(&t.admin), Some("bob")).unwrap();
    let on_behalf = with(&c, for_bob);
    let id = on_behalf
        .submit_task("default", vec!["true".into()], vec![], None)
        .await
        .unwrap()
        .id;
    let got = actor(
        admin
            .get_task(id, ReadConsistency::Linearizable)
            .await
            .unwrap(),
    );
    assert_eq!(got, "admin on behalf of bob");
    let sub_for_bob = Credentials::new(Some(&t.submitter), Some("bob")).unwrap();
    let sub = with(&c, sub_for_bob);
    let e = sub.list_queues(ReadConsistency::Stale).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_made_listed_and_revoked_from_the_cli_on_every_node_at_once() {
    let c = secure();
    c.init(1).await;
    let admin = c.client();
    admin
        .create_project("ml", ProjectSettings::default())
        .await
        .unwrap();
    let (code, out, err) = c.cli(&[
        "token",
        "create",
        "--name",
        "ci",
        "--role",
        "submitter",
        "--project",
        "ml",
        "--ttl",
        "30d",
        "-o",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let made: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = made["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ci."), "{token}");
    assert!(made["expires_ms"].as_u64().unwrap() > made["created_ms"].as_u64().unwrap());
    let (code, out, err) = c.cli(&["token", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ci") && out.contains("submitter"), "{out}");
    let secret = token.rsplit_once('.').unwrap().1;
    assert!(!out.contains(secret), "a list never shows a secret: {out}");

    // The token works on every node, until it is revoked.
    let ci = c.client_as(Some(&token));
    ci.list_queues(ReadConsistency::Stale).await.unwrap();
    let (code, _, err) = c.cli(&["token", "revoke", "ci"]);
    assert_eq!(code, Some(0), "{err}");
    for id in c.nodes.keys() {
        let one = c.client_with(&[c.addr(*id)], Duration::from_secs(2), Some(&token));
        eventually(
            Duration::from_secs(10),
            &format!("node {id} to refuse ci"),
            async || match one.list_queues(ReadConsistency::Stale).await {
                Err(e) if e.code() == Code::Unauthenticated => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
    }
    // A CLI call without a token says what to do.
    let mut cmd = c.command();
    let o = cmd
        .env_remove("LANEQ_TOKEN")
        .args(["queue", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(10), "{err}");
    assert!(err.contains("--token"), "{err}");
}
