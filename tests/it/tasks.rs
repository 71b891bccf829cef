//! Projects, task fields, batches, lists, moves, cancel and the queue
//! operations of issue #3, through the raw gRPC API of a 3-node cluster.
//! Writes go to followers too (they forward them); reads are linearizable
//! on whichever node they reach.

use std::collections::HashMap;

use crate::support::{Cluster, Timings};
use laneq::proto::v1::config_client::ConfigClient;
use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::projects_client::ProjectsClient;
use laneq::proto::v1::queues_client::QueuesClient;
use laneq::proto::v1::tasks_client::TasksClient;
use laneq::proto::v1::*;
use tonic::transport::Channel;
use tonic::Code;

/// The gRPC clients of one node.
struct Node {
    ch: Channel,
}

fn meta() -> Option<WriteMeta> {
    Some(WriteMeta {
        idempotency_key: laneq::client::new_idempotency_key(),
        actor: "alice".into(),
    })
}

fn spec(queue: &str, project: &str, run: &str) -> TaskSpec {
    TaskSpec {
        queue: queue.into(),
        project: project.into(),
        run: run.into(),
        name: format!("train-{run}"),
        command: vec!["python".into(), "train.py".into()],
        payload: b"{\"lr\": 0.1}".to_vec(),
        resources: HashMap::from([("gpu".to_string(), 1), ("cpu".to_string(), 4000)]),
        max_attempts: 2,
        labels: HashMap::from([("team".to_string(), "vision".to_string())]),
    }
}

impl Node {
    fn new(c: &Cluster, id: u64) -> Self {
        Self {
            ch: laneq::raft::endpoint_channel(&c.addr(id)),
        }
    }
    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.ch.clone())
    }
    fn queues(&self) -> QueuesClient<Channel> {
        QueuesClient::new(self.ch.clone())
    }
    fn projects(&self) -> ProjectsClient<Channel> {
        ProjectsClient::new(self.ch.clone())
    }

    async fn create_queue(&self, name: &str, pool: &str, depth: Option<u64>) {
        let req = CreateQueueRequest {
            meta: meta(),
            name: name.into(),
            pool: pool.into(),
            spec: Some(QueueSpec {
                depth,
                ..Default::default()
            }),
        };
        self.queues().create_queue(req).await.unwrap();
    }

    async fn submit(&self, s: TaskSpec) -> Result<SubmitTaskResponse, tonic::Status> {
        let req = SubmitTaskRequest {
            meta: meta(),
            task: Some(s),
        };
        self.tasks().submit_task(req).await.map(|r| r.into_inner())
    }

    async fn batch(&self, tasks: Vec<TaskSpec>) -> Result<Vec<u64>, tonic::Status> {
        let req = SubmitTasksRequest {
            meta: meta(),
            tasks,
        };
        self.tasks()
            .submit_tasks(req)
            .await
            .map(|r| r.into_inner().ids)
    }

    async fn get(&self, id: u64) -> Result<Task, tonic::Status> {
        let req = GetTaskRequest { id, consistency: 0 };
        let r = self.tasks().get_task(req).await?;
        Ok(r.into_inner().task.unwrap())
    }

    async fn list(&self, req: ListTasksRequest) -> Result<ListTasksResponse, tonic::Status> {
        self.tasks().list_tasks(req).await.map(|r| r.into_inner())
    }

    /// Ids of the queued tasks of a queue, in order.
    async fn order(&self, queue: &str) -> Vec<u64> {
        let req = ListTasksRequest {
            queue: queue.into(),
            state: "queued".into(),
            ..Default::default()
        };
        let tasks = self.list(req).await.unwrap().tasks;
        for (i, t) in tasks.iter().enumerate() {
            assert_eq!(t.position, Some(i as u64 + 1), "task {}", t.id);
        }
        tasks.iter().map(|t| t.id).collect()
    }

    async fn mv(&self, id: u64, to: To) -> Result<Task, tonic::Status> {
        let req = MoveTaskRequest {
            meta: meta(),
            id,
            to: Some(to),
        };
        let r = self.tasks().move_task(req).await?;
        Ok(r.into_inner().task.unwrap())
    }

    async fn queue(&self, name: &str) -> Queue {
        get_queue(self, name).await.unwrap()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let e = r.unwrap_err();
    (e.code(), e.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_batches_lists_moves_and_cancels_on_three_nodes() {
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

    // A project with a default queue, allowed queues and a per-run limit.
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
    let p = n2
        .projects()
        .create_project(req)
        .await
        .unwrap()
        .into_inner();
    let p = p.project.unwrap();
    assert_eq!((p.version, p.effective_default_queue.as_str()), (1, "a"));

    // Without a queue, a task goes to its project's default queue.
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
        ("queued", "alice")
    );

    // Refusals: not allowed, unknown project, per-run limit, atomic batches.
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

    // A batch goes in whole, in order; depth counts it (b holds 5).
    let ids = n3
        .batch((0..4).map(|_| spec("b", "", "")).collect())
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    let (code_, _) = code(n2.batch(vec![spec("b", "", ""), spec("b", "", "")]).await);
    assert_eq!(code_, Code::ResourceExhausted);
    assert_eq!(n1.order("b").await, ids);

    // Paging in queue order.
    let page = |token: String| ListTasksRequest {
        queue: "b".into(),
        state: "queued".into(),
        page_size: 3,
        page_token: token,
        ..Default::default()
    };
    let first = n2.list(page(String::new())).await.unwrap();
    assert_eq!(first.tasks.len(), 3);
    assert!(
        first.tasks.iter().all(|t| t.command.is_empty()),
        "lists carry no bodies"
    );
    let second = n2.list(page(first.next_page_token.clone())).await.unwrap();
    assert_eq!(second.tasks.len(), 1);
    assert_eq!(second.next_page_token, "");
    let by_project = ListTasksRequest {
        project: "ml".into(),
        ..Default::default()
    };
    let mine = n1.list(by_project).await.unwrap().tasks;
    assert_eq!(mine.iter().map(|t| t.id).collect::<Vec<_>>(), [r.id]);
    let bad_page = ListTasksRequest {
        page_token: "garbage".into(),
        ..Default::default()
    };
    assert_eq!(code(n1.list(bad_page).await).0, Code::InvalidArgument);
    let bad_state = ListTasksRequest {
        state: "sleeping".into(),
        ..Default::default()
    };
    let (code_, msg) = code(n1.list(bad_state).await);
    assert_eq!(code_, Code::InvalidArgument);
    assert!(msg.contains("queued, leased, running"), "{msg}");

    // Reorder like ClearML, through different nodes.
    let [t1, t2, t3, t4] = ids[..] else { panic!() };
    n1.mv(t4, To::Front(true)).await.unwrap();
    n2.mv(t1, To::Back(true)).await.unwrap();
    n3.mv(t3, To::Forward(1)).await.unwrap();
    assert_eq!(n1.order("b").await, [t4, t3, t2, t1]);
    n1.mv(t4, To::Backward(2)).await.unwrap();
    n2.mv(t1, To::Position(1)).await.unwrap();
    let moved = n3.mv(t2, To::Before(t1)).await.unwrap();
    assert_eq!(moved.position, Some(1));
    n1.mv(t3, To::After(t4)).await.unwrap();
    assert_eq!(n2.order("b").await, [t2, t1, t4, t3]);
    let (code_, msg) = code(n1.mv(t1, To::Position(0)).await);
    assert_eq!(code_, Code::InvalidArgument, "{msg}");
    let (code_, msg) = code(n1.mv(t1, To::Before(999)).await);
    assert_eq!(code_, Code::NotFound, "{msg}");

    // Across queues: same pool only.
    let (code_, msg) = code(n1.mv(t1, To::Queue("far".into())).await);
    assert_eq!(code_, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("never crosses pools"), "{msg}");
    let moved = n2.mv(t1, To::Queue("a".into())).await.unwrap();
    assert_eq!((moved.queue.as_str(), moved.position), ("a", Some(2)));
    assert_eq!(moved.timeline.len(), 2);
    assert!(moved.timeline[1].reason.contains("moved from queue \"b\""));

    // Cancel and dequeue, with reasons in the timeline.
    let cancel = CancelTaskRequest {
        meta: meta(),
        id: t2,
        reason: "wrong learning rate".into(),
    };
    let t = n3
        .tasks()
        .cancel_task(cancel)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(
        (t.state.as_str(), t.condition.as_str()),
        ("canceled", "wrong learning rate")
    );
    assert_eq!(t.position, None);
    let again = CancelTaskRequest {
        meta: meta(),
        id: t2,
        reason: String::new(),
    };
    assert_eq!(
        code(n1.tasks().cancel_task(again).await).0,
        Code::FailedPrecondition
    );
    let dq = DequeueTaskRequest {
        meta: meta(),
        id: t4,
        reason: String::new(),
    };
    n1.tasks().dequeue_task(dq).await.unwrap();
    assert_eq!(n3.order("b").await, [t3]);
    let canceled = ListTasksRequest {
        state: "canceled".into(),
        ..Default::default()
    };
    assert_eq!(n2.list(canceled).await.unwrap().tasks.len(), 1);

    // Queue counts, rename, clear and delete.
    let q = n1.queue("a").await;
    assert_eq!((q.queued, q.running, q.next_task_id), (2, 0, Some(r.id)));
    assert!(q.activity_ms >= q.created_ms);
    let rename = RenameQueueRequest {
        meta: meta(),
        name: "b".into(),
        new_name: "bee".into(),
    };
    n2.queues().rename_queue(rename).await.unwrap();
    let taken = RenameQueueRequest {
        meta: meta(),
        name: "bee".into(),
        new_name: "a".into(),
    };
    assert_eq!(
        code(n1.queues().rename_queue(taken).await).0,
        Code::AlreadyExists
    );
    assert_eq!(n3.get(t3).await.unwrap().queue, "bee");
    let rename_default = RenameQueueRequest {
        meta: meta(),
        name: "default".into(),
        new_name: "x".into(),
    };
    let (code_, _) = code(n1.queues().rename_queue(rename_default).await);
    assert_eq!(code_, Code::FailedPrecondition);
    let delete = |name: &str, force| DeleteQueueRequest {
        meta: meta(),
        name: name.into(),
        force,
    };
    let (code_, msg) = code(n1.queues().delete_queue(delete("bee", false)).await);
    assert_eq!(code_, Code::FailedPrecondition, "{msg}");
    let clear = ClearQueueRequest {
        meta: meta(),
        name: "bee".into(),
    };
    let cleared = n3.queues().clear_queue(clear).await.unwrap().into_inner();
    assert_eq!(cleared.dequeued, 1);
    assert_eq!(n1.get(t3).await.unwrap().state, "dequeued");
    let (code_, msg) = code(n1.queues().delete_queue(delete("bee", false)).await);
    assert!(msg.contains("project \"ml\""), "{code_:?} {msg}");
    // Read-modify-write of a project frees the queue.
    let update = |version| UpdateProjectRequest {
        meta: meta(),
        name: "ml".into(),
        settings: Some(ProjectSettings {
            max_queued_per_run: 10,
            allowed_queues: vec!["a".into()],
            ..settings.clone()
        }),
        expected_version: version,
    };
    n3.projects().update_project(update(1)).await.unwrap();
    let (code_, msg) = code(n1.projects().update_project(update(1)).await);
    assert_eq!(code_, Code::Aborted, "{msg}");
    n1.queues()
        .delete_queue(delete("bee", false))
        .await
        .unwrap();
    assert_eq!(
        n2.get(t3).await.unwrap().queue,
        "#3",
        "a deleted queue shows its id"
    );
    let (code_, _) = code(n1.queues().delete_queue(delete("default", true)).await);
    assert_eq!(code_, Code::FailedPrecondition);

    // The organisation's default queue.
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
    check_moves_to_other_queues(&c, &n2).await;
    check_delete_of_a_queue_with_tasks(&c, &n3).await;
    check_project_refusals(&c, &n1).await;
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// Independent submits in one call (`SubmitEach`, what the client library
/// sends for concurrent submits): each has its own key and outcome, one
/// refused leaves the others accepted, a repeated key answers its first
/// outcome, and a follower forwards them like single submits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_in_one_call_each_get_their_own_outcome() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    for via in [leader, follower] {
        let n = Node::new(&c, via);
        let first = meta();
        let submit = |meta: Option<WriteMeta>, queue: &str| SubmitTaskRequest {
            meta,
            task: Some(spec(queue, "", "r")),
        };
        let req = SubmitEachRequest {
            submits: vec![
                submit(first.clone(), "default"),
                submit(meta(), "nope"),
                submit(meta(), "default"),
                submit(first.clone(), "default"),
                SubmitTaskRequest {
                    meta: meta(),
                    task: None,
                },
            ],
        };
        let outcomes = n
            .tasks()
            .submit_each(req)
            .await
            .unwrap()
            .into_inner()
            .outcomes;
        use submit_outcome::Outcome;
        let got: Vec<_> = outcomes.into_iter().map(|o| o.outcome.unwrap()).collect();
        let (Outcome::Submitted(a), Outcome::Submitted(b), Outcome::Submitted(again)) =
            (&got[0], &got[2], &got[3])
        else {
            panic!("via node {via}: {got:?}");
        };
        assert!(a.created && b.created && a.id != b.id, "{got:?}");
        assert_eq!(again.id, a.id, "a repeated key answers its first outcome");
        assert!(!again.created);
        let Outcome::Refused(r) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(Code::from_i32(r.code), Code::NotFound, "{r:?}");
        assert!(r.message.contains("nope"), "{r:?}");
        let Outcome::Refused(r) = &got[4] else {
            panic!("{got:?}")
        };
        assert_eq!(Code::from_i32(r.code), Code::InvalidArgument, "{r:?}");
        for id in [a.id, b.id] {
            assert_eq!(n.get(id).await.unwrap().state, "queued");
        }
    }
    let too_many = SubmitEachRequest {
        submits: (0..1001)
            .map(|_| SubmitTaskRequest {
                meta: meta(),
                task: Some(spec("default", "", "r")),
            })
            .collect(),
    };
    let r = Node::new(&c, leader).tasks().submit_each(too_many).await;
    assert_eq!(code(r).0, Code::InvalidArgument);

    // The client library shares calls between concurrent submits: 400 at
    // once all get distinct ids, and the one to an unknown queue alone fails.
    let client = c.client();
    let submits = (0..400).map(|i| {
        let client = client.clone();
        async move {
            let queue = if i == 7 { "nope" } else { "default" };
            client.submit(spec(queue, "", &format!("r{i}")), None).await
        }
    });
    let results = futures::future::join_all(submits).await;
    let mut ids = std::collections::BTreeSet::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(s) => assert!(i != 7 && ids.insert(s.id), "{i}: {s:?}"),
            Err(e) => assert!(i == 7 && e.code() == Code::NotFound, "{i}: {e}"),
        }
    }
    assert_eq!(ids.len(), 399);
    let queued = Node::new(&c, leader).queue("default").await.queued;
    assert_eq!(queued, 399 + 4, "nothing submitted twice, nothing lost");

    let n = Node::new(&c, follower);
    check_size_limits(&c, &n).await;
    check_cli_task_lists(&c, &n).await;
    check_clear_of_a_long_queue(&c, &n).await;
}

/// A clear of more tasks than one command dequeues (10,000) empties the
/// queue, head included, and leaves it active with no clear under way.
async fn check_clear_of_a_long_queue(c: &Cluster, n: &Node) {
    n.create_queue("long", "", Some(0)).await;
    for _ in 0..10 {
        let batch = (0..1000).map(|_| spec("long", "", "")).collect();
        n.batch(batch).await.unwrap();
    }
    let head = n.submit(spec("long", "", "")).await.unwrap().id;
    let first = n.order("long").await[0];
    assert_eq!(n.queue("long").await.queued, 10_001);
    let (exit, out, err) = c.cli(&["queue", "clear", "long", "-o", "json"]);
    assert_eq!(exit, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dequeued"].as_u64(), Some(10_001), "{out}");
    let q = n.queue("long").await;
    assert_eq!(
        (q.queued, q.state.as_str(), q.clearing.as_str()),
        (0, "active", "")
    );
    for id in [first, head] {
        assert_eq!(n.get(id).await.unwrap().state, "dequeued");
    }
    n.submit(spec("long", "", "")).await.unwrap();
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

async fn get_queue(n: &Node, name: &str) -> Result<Queue, tonic::Status> {
    let req = GetQueueRequest {
        name: name.into(),
        consistency: 0,
    };
    let r = n.queues().get_queue(req).await?;
    Ok(r.into_inner().queue.unwrap())
}

/// Ids of `n` tasks submitted to `queue` in `run`, in order.
async fn submit_n(n: &Node, queue: &str, run: &str, count: usize) -> Vec<u64> {
    let mut ids = vec![];
    for _ in 0..count {
        ids.push(n.submit(spec(queue, "", run)).await.unwrap().id);
    }
    ids
}

/// A move to another queue is refused into a full, a draining or a
/// not-allowed queue (gRPC and CLI), leaving the task exactly where it was;
/// into an open queue of the pool it lands at the back, with a timeline entry.
async fn check_moves_to_other_queues(c: &Cluster, n: &Node) {
    for q in ["m-src", "m-open", "m-closed", "m-fenced"] {
        n.create_queue(q, "", None).await;
    }
    n.create_queue("m-full", "", Some(1)).await;
    let allowed = ["m-src", "m-open", "m-closed", "m-full"];
    create_project(n, "movers", &allowed, "").await.unwrap();
    let task = |queue: &str| spec(queue, "movers", "");
    let mut ids = vec![];
    for _ in 0..3 {
        ids.push(n.submit(task("m-src")).await.unwrap().id);
    }
    let already = n.submit(task("m-open")).await.unwrap().id;
    n.submit(task("m-full")).await.unwrap();
    n.submit(task("m-closed")).await.unwrap();
    let drain = DrainQueueRequest {
        meta: meta(),
        name: "m-closed".into(),
    };
    n.queues().drain_queue(drain).await.unwrap();
    assert_eq!(n.queue("m-closed").await.state, "draining");

    let id = ids[1];
    let before = n.get(id).await.unwrap();
    assert_eq!(before.position, Some(2));
    for (target, want, exit, needle) in [
        ("m-full", Code::ResourceExhausted, 6, "is full"),
        ("m-closed", Code::FailedPrecondition, 7, "is draining"),
        ("m-fenced", Code::PermissionDenied, 8, "may not use queue"),
    ] {
        let (got, msg) = code(n.mv(id, To::Queue(target.into())).await);
        assert_eq!(got, want, "into {target}: {msg}");
        assert!(msg.starts_with("queue: ") && msg.contains(needle), "{msg}");
        let (exit_, _, err) = c.cli(&["task", "move", &id.to_string(), "--queue", target]);
        assert_eq!(exit_, Some(exit), "into {target}: {err}");
        assert!(err.contains(needle), "{err}");
        assert_eq!(n.order("m-src").await, ids, "refused into {target}");
        assert_eq!(n.get(id).await.unwrap(), before, "refused into {target}");
    }
    let queued = [
        ("m-full", 1),
        ("m-closed", 1),
        ("m-fenced", 0),
        ("m-open", 1),
    ];
    for (q, count) in queued {
        assert_eq!(n.queue(q).await.queued, count, "{q}");
    }

    let moved = n.mv(id, To::Queue("m-open".into())).await.unwrap();
    assert_eq!(
        (moved.queue.as_str(), moved.position, moved.state.as_str()),
        ("m-open", Some(2), "queued")
    );
    assert_eq!(n.order("m-open").await, [already, id], "at the back");
    assert_eq!(n.order("m-src").await, [ids[0], ids[2]]);
    assert_eq!(moved.timeline.len(), 2);
    let entry = &moved.timeline[1];
    assert_eq!(
        (entry.state.as_str(), entry.actor.as_str()),
        ("queued", "alice")
    );
    assert!(
        entry
            .reason
            .contains("moved from queue \"m-src\" to \"m-open\""),
        "{entry:?}"
    );
    let (exit, out, err) = c.cli(&["task", "move", &ids[0].to_string(), "--queue", "m-open"]);
    assert_eq!(exit, Some(0), "{err}");
    assert!(out.contains("is in m-open at position 3"), "{out}");
    assert_eq!(n.order("m-open").await, [already, id, ids[0]]);
}

/// Deleting a queue that holds queued tasks is refused (gRPC and CLI exit
/// 7) and changes nothing; with force, its tasks are dequeued and it is gone.
async fn check_delete_of_a_queue_with_tasks(c: &Cluster, n: &Node) {
    let delete = |name: &str, force| DeleteQueueRequest {
        meta: meta(),
        name: name.into(),
        force,
    };
    n.create_queue("doomed", "", None).await;
    let ids = submit_n(n, "doomed", "", 3).await;
    let (got, msg) = code(n.queues().delete_queue(delete("doomed", false)).await);
    assert_eq!(got, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("3 queued tasks"), "{msg}");
    assert_eq!(
        n.order("doomed").await,
        ids,
        "a refused delete changes nothing"
    );
    let r = n.queues().delete_queue(delete("doomed", true)).await;
    assert_eq!(r.unwrap().into_inner().dequeued, 3);
    for id in &ids {
        let t = n.get(*id).await.unwrap();
        assert_eq!((t.state.as_str(), t.position), ("dequeued", None), "{t:?}");
        let last = t.timeline.last().unwrap();
        assert_eq!(last.state, "dequeued");
    }
    assert_eq!(code(get_queue(n, "doomed").await).0, Code::NotFound);
    let (got, _) = code(n.queues().delete_queue(delete("doomed", true)).await);
    assert_eq!(got, Code::NotFound);

    // The same through the CLI: exit 7, then 0 with --force, then 3.
    n.create_queue("doomed2", "", None).await;
    let ids = submit_n(n, "doomed2", "", 2).await;
    let (exit, _, err) = c.cli(&["queue", "delete", "doomed2"]);
    assert_eq!(exit, Some(7), "{err}");
    assert!(err.contains("2 queued tasks"), "{err}");
    assert_eq!(n.order("doomed2").await, ids);
    let (exit, out, err) = c.cli(&["queue", "delete", "doomed2", "--force", "-o", "json"]);
    assert_eq!(exit, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["dequeued"].as_u64()),
        (Some("doomed2"), Some(2))
    );
    for id in ids {
        assert_eq!(n.get(id).await.unwrap().state, "dequeued");
    }
    let (exit, _, err) = c.cli(&["queue", "get", "doomed2"]);
    assert_eq!(exit, Some(3), "{err}");
}

/// A duplicate project is refused (exit 4) and the first stays as it was;
/// reading or updating an unknown project is NOT_FOUND (exit 3).
async fn check_project_refusals(c: &Cluster, n: &Node) {
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
}

/// Past a size limit a request is refused naming the field, and nothing is
/// written: a list page over 1000, a batch of 1001 (gRPC and `--file`),
/// 33 labels on a task.
async fn check_size_limits(c: &Cluster, n: &Node) {
    n.create_queue("big", "", None).await;
    let page = |size| ListTasksRequest {
        queue: "big".into(),
        page_size: size,
        ..Default::default()
    };
    let (got, msg) = code(n.list(page(1001)).await);
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("page_size: "), "{msg}");
    assert!(n.list(page(1000)).await.is_ok());

    let many = |count| (0..count).map(|_| spec("big", "", "")).collect();
    let (got, msg) = code(n.batch(many(1001)).await);
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("tasks: ") && msg.contains("1000"), "{msg}");
    assert_eq!(
        n.queue("big").await.queued,
        0,
        "a refused batch creates nothing"
    );
    let file = c.dir.path().join("big.jsonl");
    let line = "{\"command\": [\"true\"]}\n";
    std::fs::write(&file, line.repeat(1001)).unwrap();
    let path = file.to_str().unwrap();
    let (exit, _, err) = c.cli(&["task", "submit", "--file", path, "--queue", "big"]);
    assert_eq!(exit, Some(2), "{err}");
    assert!(
        err.contains("file: ") && err.contains("1001 tasks"),
        "{err}"
    );
    assert_eq!(n.queue("big").await.queued, 0);
    assert_eq!(n.batch(many(1000)).await.unwrap().len(), 1000);
    assert_eq!(
        n.queue("big").await.queued,
        1000,
        "1000 is within the limit"
    );

    let labelled = |count: usize| {
        let mut s = spec("big", "", "");
        s.labels = (0..count).map(|i| (format!("k{i}"), "v".into())).collect();
        s
    };
    let (got, msg) = code(n.submit(labelled(33)).await);
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("labels: ") && msg.contains("32"), "{msg}");
    let (got, msg) = code(n.batch(vec![labelled(1), labelled(33)]).await);
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("tasks[1].labels: "), "{msg}");
    assert_eq!(n.queue("big").await.queued, 1000, "nothing was written");
    let id = n.submit(labelled(32)).await.unwrap().id;
    assert_eq!(n.get(id).await.unwrap().labels.len(), 32);
}

/// `laneq task list -o json` with its arguments: the ids, positions and
/// next page token it prints.
fn cli_list(c: &Cluster, args: &[&str]) -> (Vec<u64>, Vec<Option<u64>>, String) {
    let all = [&["task", "list", "-o", "json"], args].concat();
    let (exit, out, err) = c.cli(&all);
    assert_eq!(exit, Some(0), "{args:?}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    let ids = tasks.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let positions = tasks.iter().map(|t| t["position"].as_u64()).collect();
    let token = v["next_page_token"].as_str().unwrap().to_string();
    (ids, positions, token)
}

/// `task list --run` keeps only that run's tasks, in queue order, and
/// `--limit` with `--page-token` pages through the rest without repeats.
async fn check_cli_task_lists(c: &Cluster, n: &Node) {
    n.create_queue("runs", "", None).await;
    let a = submit_n(n, "runs", "sweep-a", 1).await[0];
    let x = submit_n(n, "runs", "sweep-b", 1).await[0];
    let b = submit_n(n, "runs", "sweep-a", 1).await[0];
    let d = submit_n(n, "runs", "sweep-a", 1).await[0];
    n.mv(d, To::Front(true)).await.unwrap();
    assert_eq!(n.order("runs").await, [d, a, x, b]);

    let (ids, positions, token) = cli_list(c, &["--queue", "runs", "--run", "sweep-a"]);
    assert_eq!(ids, [d, a, b], "only that run, in queue order");
    assert_eq!(positions, [Some(1), Some(2), Some(4)]);
    assert_eq!(token, "");
    assert_eq!(cli_list(c, &["--run", "sweep-b"]).0, [x]);

    let (first, _, token) = cli_list(c, &["--queue", "runs", "--limit", "3"]);
    assert_eq!(first, [d, a, x]);
    assert!(!token.is_empty());
    let (exit, _, err) = c.cli(&["task", "list", "--queue", "runs", "--limit", "3"]);
    assert_eq!(exit, Some(0));
    assert!(
        err.contains("--page-token"),
        "the CLI says how to go on: {err}"
    );
    let (rest, _, end) = cli_list(
        c,
        &["--queue", "runs", "--limit", "3", "--page-token", &token],
    );
    assert_eq!((rest, end.as_str()), (vec![b], ""), "the rest, no repeats");
    let run_args = ["--queue", "runs", "--run", "sweep-a", "--limit", "2"];
    let (first, _, token) = cli_list(c, &run_args);
    assert_eq!(first, [d, a]);
    let (rest, _, _) = cli_list(c, &[&run_args[..], &["--page-token", &token]].concat());
    assert_eq!(rest, [b]);
    let (every, _, end) = cli_list(c, &["--queue", "runs", "--limit", "3", "--all"]);
    assert_eq!((every, end.as_str()), (vec![d, a, x, b], ""));

    let (exit, _, err) = c.cli(&["task", "list", "--limit", "1001"]);
    assert_eq!(exit, Some(2), "{err}");
    assert!(err.contains("page_size"), "{err}");
}
