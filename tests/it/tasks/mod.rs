//! Projects, task fields, batches, lists, moves, cancel and the queue
//! operations of issue #3, through the raw gRPC API (and the CLI) of a
//! 3-node cluster. Writes go to followers too (they forward them); reads are
//! linearizable on whichever node they reach. Each test starts its own
//! cluster, so that one failure hides no other.

mod batches;
mod moves;
mod projects;
mod queues;

use std::collections::BTreeMap;

use laneq::proto::v1::*;

use crate::support::{meta, Cluster, Node, Timings};

/// A task for `queue` in `project` and `run` ("" for the defaults), with
/// every field set.
fn spec(queue: &str, project: &str, run: &str) -> TaskSpec {
    TaskSpec {
        queue: queue.into(),
        project: project.into(),
        run: run.into(),
        name: format!("train-{run}"),
        command: vec!["python".into(), "train.py".into()],
        payload: b"{\"lr\": 0.1}".to_vec(),
        resources: BTreeMap::from([("gpu".to_string(), 1), ("cpu".to_string(), 4000)]),
        max_attempts: 2,
        labels: BTreeMap::from([("team".to_string(), "vision".to_string())]),
    }
}

/// A 3-node cluster with queues `a` (created through node 2), `b` holding
/// at most 5 tasks (node 3), pool `other` with queue `far` (node 1), and
/// project `ml` (node 2): default queue `a`, allowed `a` and `b`, at most 2
/// queued tasks per run. Queue `b` is the third queue, id 3.
struct Ml {
    c: Cluster,
    n1: Node,
    n2: Node,
    n3: Node,
    /// The settings `ml` was created with.
    settings: ProjectSettings,
    /// `ml` as its creation answered.
    project: Project,
}

async fn ml() -> Ml {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let (n1, n2, n3) = (Node::new(&c, 1), Node::new(&c, 2), Node::new(&c, 3));

    n2.create_queue("a", "", None).await;
    n3.create_queue("b", "", Some(5)).await;
    let pool = CreatePoolRequest {
        meta: meta(),
        name: "other".into(),
        clusters: vec![],
    };
    laneq::proto::v1::pools_client::PoolsClient::new(n1.ch.clone())
        .create_pool(pool)
        .await
        .unwrap();
    n1.create_queue("far", "other", None).await;

    let settings = ProjectSettings {
        default_queue: "a".into(),
        allowed_queues: vec!["a".into(), "b".into()],
        max_queued_per_run: 2,
        description: "vision team".into(),
    };
    let req = CreateProjectRequest {
        meta: meta(),
        name: "ml".into(),
        settings: Some(settings.clone()),
    };
    let p = n2.projects().create_project(req).await.unwrap();
    let project = p.into_inner().project.unwrap();
    Ml {
        c,
        n1,
        n2,
        n3,
        settings,
        project,
    }
}

/// A 3-node cluster and one of its followers.
async fn on_a_follower() -> (Cluster, Node) {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let n = Node::new(&c, c.followers(leader)[0]);
    (c, n)
}

/// A project that may use only `allowed` (none: any queue).
async fn create_project(
    n: &Node,
    name: &str,
    allowed: &[&str],
    description: &str,
) -> Result<Project, tonic::Status> {
    let req = CreateProjectRequest {
        meta: meta(),
        name: name.into(),
        settings: Some(ProjectSettings {
            allowed_queues: allowed.iter().map(|q| q.to_string()).collect(),
            description: description.into(),
            ..Default::default()
        }),
    };
    let r = n.projects().create_project(req).await?;
    Ok(r.into_inner().project.unwrap())
}

async fn get_project(n: &Node, name: &str) -> Result<Project, tonic::Status> {
    let req = GetProjectRequest {
        name: name.into(),
        consistency: 0,
    };
    let r = n.projects().get_project(req).await?;
    Ok(r.into_inner().project.unwrap())
}

/// Ids of `n` tasks submitted to `queue` in `run`, in order.
async fn submit_n(n: &Node, queue: &str, run: &str, count: usize) -> Vec<u64> {
    let mut ids = vec![];
    for _ in 0..count {
        ids.push(n.submit(spec(queue, "", run)).await.unwrap().id);
    }
    ids
}
