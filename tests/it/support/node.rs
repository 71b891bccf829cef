//! One node of a test cluster seen through the raw gRPC API, as a client of
//! any language sees it: its service clients over one channel, the request
//! shapes tests send most, and the write metadata they carry. It never goes
//! through the client library, which picks the node and retries itself.

use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::projects_client::ProjectsClient;
use laneq::proto::v1::queues_client::QueuesClient;
use laneq::proto::v1::tasks_client::TasksClient;
use laneq::proto::v1::workers_client::WorkersClient;
use laneq::proto::v1::*;
use tonic::transport::Channel;
use tonic::Status;

use super::Cluster;

/// Who the writes of `meta()` are made by: tests read it back from task
/// timelines.
pub const ACTOR: &str = "alice";

/// Write metadata with a fresh idempotency key, by `ACTOR`.
pub fn meta() -> Option<WriteMeta> {
    Some(WriteMeta {
        idempotency_key: laneq::wire::new_idempotency_key(),
        actor: ACTOR.into(),
    })
}

/// The code and message of a refusal; panics on success.
pub fn code<T: std::fmt::Debug>(r: Result<T, Status>) -> (tonic::Code, String) {
    let e = r.unwrap_err();
    (e.code(), e.message().to_string())
}

/// The gRPC clients of one node.
#[derive(Clone)]
pub struct Node {
    pub ch: Channel,
}

impl Node {
    /// Node `id` over the cluster's transport (TLS on a secure cluster).
    /// Its calls carry no token: tests that need one add it.
    pub fn new(c: &Cluster, id: u64) -> Self {
        let tls = c.client_tls(None).map(|t| t.load().unwrap());
        Self {
            ch: laneq::wire::channel(&c.addr(id), tls.as_ref()),
        }
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.ch.clone())
    }

    pub fn queues(&self) -> QueuesClient<Channel> {
        QueuesClient::new(self.ch.clone())
    }

    pub fn projects(&self) -> ProjectsClient<Channel> {
        ProjectsClient::new(self.ch.clone())
    }

    pub fn workers(&self) -> WorkersClient<Channel> {
        WorkersClient::new(self.ch.clone())
    }

    pub async fn create_queue(&self, name: &str, pool: &str, depth: Option<u64>) {
        let spec = QueueSpec {
            depth,
            ..Default::default()
        };
        self.create_queue_with(name, pool, spec).await;
    }

    pub async fn create_queue_with(&self, name: &str, pool: &str, spec: QueueSpec) {
        let req = CreateQueueRequest {
            meta: meta(),
            name: name.into(),
            pool: pool.into(),
            spec: Some(spec),
        };
        self.queues().create_queue(req).await.unwrap();
    }

    pub async fn queue(&self, name: &str) -> Queue {
        self.get_queue(name).await.unwrap()
    }

    pub async fn get_queue(&self, name: &str) -> Result<Queue, Status> {
        let req = GetQueueRequest {
            name: name.into(),
            consistency: 0,
        };
        let r = self.queues().get_queue(req).await?;
        Ok(r.into_inner().queue.unwrap())
    }

    pub async fn submit(&self, s: TaskSpec) -> Result<SubmitTaskResponse, Status> {
        let req = SubmitTaskRequest {
            meta: meta(),
            task: Some(s),
        };
        self.tasks().submit_task(req).await.map(|r| r.into_inner())
    }

    /// Submits `true` to `queue` in `run`; returns its id.
    pub async fn submit_to(&self, queue: &str, run: &str) -> u64 {
        let spec = TaskSpec {
            queue: queue.into(),
            run: run.into(),
            command: vec!["true".into()],
            ..Default::default()
        };
        self.submit(spec).await.unwrap().id
    }

    pub async fn batch(&self, tasks: Vec<TaskSpec>) -> Result<Vec<u64>, Status> {
        let req = SubmitTasksRequest {
            meta: meta(),
            tasks,
        };
        self.tasks()
            .submit_tasks(req)
            .await
            .map(|r| r.into_inner().ids)
    }

    pub async fn get(&self, id: u64) -> Result<Task, Status> {
        let req = GetTaskRequest { id, consistency: 0 };
        let r = self.tasks().get_task(req).await?;
        Ok(r.into_inner().task.unwrap())
    }

    /// Task `id`, which must exist.
    pub async fn task(&self, id: u64) -> Task {
        self.get(id).await.unwrap()
    }

    pub async fn list(&self, req: ListTasksRequest) -> Result<ListTasksResponse, Status> {
        self.tasks().list_tasks(req).await.map(|r| r.into_inner())
    }

    /// Ids of the queued tasks of a queue, in order; checks their positions.
    pub async fn order(&self, queue: &str) -> Vec<u64> {
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

    pub async fn mv(&self, id: u64, to: To) -> Result<Task, Status> {
        let req = MoveTaskRequest {
            meta: meta(),
            id,
            to: Some(to),
        };
        let r = self.tasks().move_task(req).await?;
        Ok(r.into_inner().task.unwrap())
    }

    /// Registers worker `name` for `queues` with `slots` (0: unlimited).
    pub async fn register(&self, name: &str, queues: &[&str], slots: u32) -> Worker {
        let req = RegisterWorkerRequest {
            meta: meta(),
            name: name.into(),
            ip: "127.0.0.1".into(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            slots,
            ..Default::default()
        };
        let r = self.workers().register_worker(req).await.unwrap();
        r.into_inner().worker.unwrap()
    }

    pub async fn list_workers(&self) -> Vec<Worker> {
        let req = ListWorkersRequest { consistency: 0 };
        let r = self.workers().list_workers(req).await.unwrap();
        r.into_inner().workers
    }

    pub async fn worker(&self, name: &str) -> Worker {
        let req = GetWorkerRequest {
            name: name.into(),
            consistency: 0,
        };
        let r = self.workers().get_worker(req).await.unwrap();
        r.into_inner().worker.unwrap()
    }

    /// A lease poll for at most `max` tasks that waits up to `wait_ms`.
    pub async fn lease(&self, worker: &str, max: u32, wait_ms: u64) -> Vec<Lease> {
        let req = LeaseRequest {
            meta: meta(),
            worker: worker.into(),
            max_tasks: max,
            wait_ms,
        };
        self.workers().lease(req).await.unwrap().into_inner().leases
    }

    pub async fn start(&self, id: u64, token: u64) -> Result<Task, Status> {
        let req = StartTaskRequest {
            meta: meta(),
            id,
            fencing_token: token,
            gpus: Vec::new(),
        };
        let r = self.workers().start_task(req).await?;
        Ok(r.into_inner().task.unwrap())
    }

    /// Completes task `id`: exit code 0 if `ok`, else 3.
    pub async fn complete(&self, id: u64, token: u64, ok: bool) -> Result<Task, Status> {
        let req = CompleteTaskRequest {
            meta: meta(),
            id,
            fencing_token: token,
            succeeded: ok,
            exit_code: Some(if ok { 0 } else { 3 }),
            condition: String::new(),
        };
        let r = self.workers().complete_task(req).await?;
        Ok(r.into_inner().task.unwrap())
    }

    /// A heartbeat of `worker` holding `held` (task, token) at iteration 7.
    pub async fn heartbeat(&self, worker: &str, held: &[(u64, u64)]) -> HeartbeatResponse {
        let tasks = held
            .iter()
            .map(|&(id, token)| HeldTask {
                id,
                fencing_token: token,
                iteration: Some(7),
            })
            .collect();
        self.send_heartbeat(HeartbeatRequest {
            worker: worker.into(),
            tasks,
            usage: Some(Usage {
                cpu_pct: Some(12.5),
                ..Default::default()
            }),
        })
        .await
    }

    pub async fn send_heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        self.workers().heartbeat(req).await.unwrap().into_inner()
    }
}
