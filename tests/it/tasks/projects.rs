//! Projects: where a task without a queue goes, what a project's rules
//! refuse, the organisation's default queue, and refusals of duplicate and
//! unknown projects (gRPC and CLI).

use laneq::proto::v1::config_client::ConfigClient;
use laneq::proto::v1::*;
use tonic::Code;

use super::{create_project, get_project, ml, spec, Ml};
use crate::support::{code, meta, Cluster, Node, Timings, ACTOR};

/// Without a queue, a task goes to its project's default queue, and reads
/// back on another node with every field it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_a_queue_goes_to_its_projects_default_queue() {
    let Ml {
        c, n2, n3, project, ..
    } = ml().await;
    assert_eq!(
        (project.version, project.effective_default_queue.as_str()),
        (1, "a")
    );

    let r = n2.submit(spec("", "ml", "r1")).await.unwrap();
    assert_eq!((r.queue.as_str(), r.created), ("a", true));
    let t = n3.get(r.id).await.unwrap();
    assert_eq!(
        (
            t.queue.as_str(),
            t.project.as_str(),
            t.run.as_str(),
            t.state.as_str()
        ),
        ("a", "ml", "r1", "queued")
    );
    assert_eq!(t.command, ["python", "train.py"]);
    assert_eq!(t.payload, b"{\"lr\": 0.1}");
    assert_eq!((t.resources["gpu"], t.max_attempts, t.attempt), (1, 2, 0));
    assert_eq!(t.labels["team"], "vision");
    assert_eq!(t.position, Some(1));
    assert_eq!(t.timeline.len(), 1);
    assert_eq!(
        (t.timeline[0].state.as_str(), t.timeline[0].actor.as_str()),
        ("queued", ACTOR)
    );
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// Refusals: a queue the project may not use, an unknown project, the
/// per-run limit, a batch refused whole, a field out of range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_outside_a_projects_rules_are_refused_and_write_nothing() {
    let Ml { c, n1, n2, n3, .. } = ml().await;
    // Run r1 of ml holds one queued task: one more fits, two do not.
    n2.submit(spec("", "ml", "r1")).await.unwrap();

    let (code_, msg) = code(n1.submit(spec("far", "ml", "")).await);
    assert_eq!(code_, Code::PermissionDenied, "{msg}");
    assert!(msg.starts_with("queue: "), "{msg}");
    let (code_, msg) = code(n1.submit(spec("a", "ghost", "")).await);
    assert_eq!(code_, Code::NotFound, "{msg}");
    let two = vec![spec("a", "ml", "r1"), spec("a", "ml", "r1")];
    let (code_, msg) = code(n3.batch(two).await);
    assert_eq!(code_, Code::ResourceExhausted, "{msg}");
    assert!(msg.starts_with("tasks[1].run: "), "{msg}");
    let bad = vec![spec("b", "", ""), spec("b", "", ""), spec("nope", "", "")];
    let (code_, msg) = code(n3.batch(bad).await);
    assert_eq!(code_, Code::NotFound, "{msg}");
    assert!(msg.starts_with("tasks[2].queue: "), "{msg}");
    assert_eq!(
        n1.queue("b").await.queued,
        0,
        "a refused batch creates nothing"
    );
    let mut invalid = spec("b", "", "");
    invalid.max_attempts = 1000;
    let (code_, msg) = code(n3.submit(invalid).await);
    assert_eq!(code_, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("max_attempts: "), "{msg}");
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// A task with neither queue nor project goes to the organisation's
/// default queue; projects list in name order; an unknown task is
/// NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organisations_default_queue_takes_tasks_that_name_none() {
    let Ml { c, n1, n2, n3, .. } = ml().await;
    let set = SetDefaultQueueRequest {
        meta: meta(),
        queue: "far".into(),
    };
    let cfg = ConfigClient::new(n2.ch.clone())
        .set_default_queue(set)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cfg.config.unwrap().default_queue, "far");
    let r = n1.submit(spec("", "", "")).await.unwrap();
    assert_eq!(r.queue, "far");
    let list = ListProjectsRequest { consistency: 0 };
    let projects = n3
        .projects()
        .list_projects(list)
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = projects.projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["default", "ml"]);

    assert_eq!(code(n1.get(9999).await).0, Code::NotFound);
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// A duplicate project is refused (exit 4) and the first stays as it was;
/// reading or updating an unknown project is NOT_FOUND (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_or_unknown_project_is_refused() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let n = &Node::new(&c, 1);
    let first = create_project(n, "dup", &[], "first").await.unwrap();
    let (got, msg) = code(create_project(n, "dup", &[], "second").await);
    assert_eq!(got, Code::AlreadyExists, "{msg}");
    assert_eq!(get_project(n, "dup").await.unwrap(), first, "unchanged");
    let (exit, _, err) = c.cli(&["project", "create", "dup", "--description", "third"]);
    assert_eq!(exit, Some(4), "{err}");
    let (exit, out, err) = c.cli(&["project", "get", "dup", "-o", "json"]);
    assert_eq!(exit, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["description"].as_str(), v["version"].as_u64()),
        (Some("first"), Some(1))
    );

    let (got, msg) = code(get_project(n, "ghost").await);
    assert_eq!(got, Code::NotFound, "{msg}");
    let update = UpdateProjectRequest {
        meta: meta(),
        name: "ghost".into(),
        settings: Some(ProjectSettings::default()),
        expected_version: 1,
    };
    let (got, msg) = code(n.projects().update_project(update).await);
    assert_eq!(got, Code::NotFound, "{msg}");
    assert!(msg.contains("ghost"), "{msg}");
    let (exit, _, err) = c.cli(&["project", "get", "ghost"]);
    assert_eq!(exit, Some(3), "{err}");
    let (exit, _, err) = c.cli(&["project", "update", "ghost", "--description", "x"]);
    assert_eq!(exit, Some(3), "{err}");
    assert_eq!(code(get_project(n, "ghost").await).0, Code::NotFound);
    c.wait_converged(&[1, 2, 3], 0).await;
}
