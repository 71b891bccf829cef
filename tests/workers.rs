//! Workers and leases through the raw gRPC API of a 3-node cluster: the long
//! poll, fencing tokens, expiry, drain with work in flight, and heartbeats
//! sent only to followers across a leader change.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Timings};
use laneq::proto::v1::queues_client::QueuesClient;
use laneq::proto::v1::tasks_client::TasksClient;
use laneq::proto::v1::workers_client::WorkersClient;
use laneq::proto::v1::*;
use tonic::transport::Channel;
use tonic::Code;

fn meta() -> Option<WriteMeta> {
    Some(WriteMeta {
        idempotency_key: laneq::client::new_idempotency_key(),
        actor: "test".into(),
    })
}

struct Node {
    ch: Channel,
}

impl Node {
    fn new(c: &Cluster, id: u64) -> Self {
        Self {
            ch: laneq::raft::endpoint_channel(&c.addr(id)),
        }
    }
    fn workers(&self) -> WorkersClient<Channel> {
        WorkersClient::new(self.ch.clone())
    }

    async fn register(&self, name: &str, queues: &[&str], slots: u32) -> Worker {
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

    async fn lease(&self, worker: &str, max: u32, wait_ms: u64) -> Vec<Lease> {
        let req = LeaseRequest {
            meta: meta(),
            worker: worker.into(),
            max_tasks: max,
            wait_ms,
        };
        self.workers().lease(req).await.unwrap().into_inner().leases
    }

    async fn submit(&self, queue: &str, run: &str) -> u64 {
        let req = SubmitTaskRequest {
            meta: meta(),
            task: Some(TaskSpec {
                queue: queue.into(),
                run: run.into(),
                command: vec!["true".into()],
                ..Default::default()
            }),
        };
        TasksClient::new(self.ch.clone())
            .submit_task(req)
            .await
            .unwrap()
            .into_inner()
            .id
    }

    async fn task(&self, id: u64) -> Task {
        let req = GetTaskRequest { id, consistency: 0 };
        let r = TasksClient::new(self.ch.clone())
            .get_task(req)
            .await
            .unwrap();
        r.into_inner().task.unwrap()
    }

    async fn complete(&self, id: u64, token: u64, ok: bool) -> Result<Task, tonic::Status> {
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

    async fn start(&self, id: u64, token: u64) -> Result<Task, tonic::Status> {
        let req = StartTaskRequest {
            meta: meta(),
            id,
            fencing_token: token,
        };
        Ok(self
            .workers()
            .start_task(req)
            .await?
            .into_inner()
            .task
            .unwrap())
    }

    async fn heartbeat(&self, worker: &str, held: &[(u64, u64)]) -> HeartbeatResponse {
        let req = HeartbeatRequest {
            worker: worker.into(),
            tasks: held
                .iter()
                .map(|&(id, token)| HeldTask {
                    id,
                    fencing_token: token,
                    iteration: Some(7),
                })
                .collect(),
            usage: Some(Usage {
                cpu_pct: Some(12.5),
                ..Default::default()
            }),
        };
        self.workers().heartbeat(req).await.unwrap().into_inner()
    }
}

fn short_leases() -> Timings {
    Timings {
        lease_ttl_ms: 1_500,
        worker_timeout_ms: 60_000,
        heartbeat_batch_ms: 100,
        ..Timings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fence_stale_holders_and_expire_back_to_the_front() {
    let c = Cluster::start(3, short_leases());
    let leader = c.init(1).await;
    let follower = [1, 2, 3].into_iter().find(|&n| n != leader).unwrap();
    let (l, f) = (Node::new(&c, leader), Node::new(&c, follower));
    f.register("w1", &["default"], 2).await;
    f.register("w2", &["default"], 2).await;

    // The long poll answers once work arrives.
    let poll = tokio::spawn({
        let ch = f.ch.clone();
        async move { Node { ch }.lease("w1", 1, 5_000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = l.submit("default", "").await;
    let leases = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leases.len(), 1);
    let (task, token) = (leases[0].task.as_ref().unwrap(), leases[0].fencing_token);
    assert_eq!(
        (task.id, task.state.as_str(), task.worker.as_str()),
        (first, "leased", "w1")
    );
    assert_eq!(task.command, ["true"], "a lease carries the command line");

    // Not renewed: the lease expires and the task goes back to the front.
    let second = l.submit("default", "").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.task(first).await.state != "queued" {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = f.task(first).await;
    assert_eq!((t.position, t.attempt), (Some(1), 1));
    assert!(t
        .timeline
        .iter()
        .any(|e| e.reason.contains("lease expired on worker w1")));

    // w2 gets it again with a larger token; w1's late calls are refused.
    let leases = l.lease("w2", 1, 1_000).await;
    let newer = leases[0].fencing_token;
    assert_eq!(leases[0].task.as_ref().unwrap().id, first);
    assert!(newer > token, "tokens only grow: {newer} after {token}");
    let e = f.complete(first, token, true).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("stale"), "{e}");
    let e = f.start(first, token).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let revoked = f.heartbeat("w1", &[(first, token)]).await.revoked;
    assert_eq!(revoked, [first], "the stale holder is told to stop");
    assert_eq!(f.task(first).await.worker, "w2", "nothing changed");

    // The current holder starts and completes; attempts are counted.
    let t = f.start(first, newer).await.unwrap();
    assert_eq!((t.state.as_str(), t.attempt), ("running", 2));
    let t = l.complete(first, newer, false).await.unwrap();
    assert_eq!(
        (t.state.as_str(), t.exit_code, t.condition.as_str()),
        ("failed", Some(3), "exit code 3")
    );
    let e = l.complete(first, newer, true).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "no task completes twice"
    );

    // Max attempts: task `second` (default 3) fails after three expiries.
    for attempt in 1..=3 {
        let leases = f.lease("w1", 1, 2_000).await;
        assert_eq!(
            leases[0].task.as_ref().unwrap().id,
            second,
            "attempt {attempt}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while f.task(second).await.state == "leased" {
            assert!(Instant::now() < deadline, "attempt {attempt} never expired");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let t = f.task(second).await;
    assert_eq!((t.state.as_str(), t.attempt), ("failed", 3));
    assert!(
        t.condition.contains("used all 3 attempts"),
        "{}",
        t.condition
    );
    let get = GetWorkerRequest {
        name: "w1".into(),
        consistency: 0,
    };
    let w = f.workers().get_worker(get).await.unwrap();
    let w = w.into_inner().worker.unwrap();
    assert!(w.tasks.is_empty() && w.usage.is_some(), "{w:?}");
    c.wait_converged(&[1, 2, 3], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_through_followers_keep_leases_across_a_leader_change() {
    let mut c = Cluster::start(3, short_leases());
    let leader = c.init(1).await;
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != leader).collect();
    let f = Node::new(&c, followers[0]);
    f.register("w1", &["default"], 1).await;
    let id = f.submit("default", "").await;
    let lease = f.lease("w1", 1, 2_000).await.remove(0);
    let token = lease.fencing_token;
    f.start(id, token).await.unwrap();

    // Heartbeat only to the follower, every 300 ms, for 3 TTLs, while the
    // leader is killed partway.
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_millis(4_500) {
        let r = f.heartbeat("w1", &[(id, token)]).await;
        assert!(r.revoked.is_empty(), "revoked {:?}", r.revoked);
        if !killed && start.elapsed() > Duration::from_millis(1_000) {
            c.kill(leader);
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let new_leader = c.wait_leader(&followers).await;
    assert_ne!(new_leader, leader);
    let t = f.task(id).await;
    assert_eq!(
        (t.state.as_str(), t.fencing_token, t.iteration),
        ("running", token, Some(7))
    );
    let t = f.complete(id, token, true).await.unwrap();
    assert_eq!(t.state, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_queue_lets_in_flight_work_finish_then_is_drained() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let n = Node::new(&c, 2);
    let create = CreateQueueRequest {
        meta: meta(),
        name: "gpu".into(),
        pool: String::new(),
        spec: Some(QueueSpec {
            action_concurrency: 1,
            ..Default::default()
        }),
    };
    QueuesClient::new(n.ch.clone())
        .create_queue(create)
        .await
        .unwrap();
    n.register("w1", &["gpu"], 4).await;
    let a = n.submit("gpu", "r1").await;
    let b = n.submit("gpu", "r1").await;
    // action_concurrency 1: one lease at a time, however many slots.
    let leases = n.lease("w1", 4, 500).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].task.as_ref().unwrap().id, a);
    assert!(
        n.lease("w1", 4, 300).await.is_empty(),
        "the queue is at its limit"
    );

    let drain = DrainQueueRequest {
        meta: meta(),
        name: "gpu".into(),
    };
    let q = QueuesClient::new(n.ch.clone())
        .drain_queue(drain)
        .await
        .unwrap();
    let q = q.into_inner().queue.unwrap();
    assert_eq!(
        (q.state.as_str(), q.running, q.workers.clone()),
        ("draining", 1, vec!["w1".to_string()])
    );
    n.complete(a, leases[0].fencing_token, true).await.unwrap();
    let leases = n.lease("w1", 4, 500).await;
    assert_eq!(
        leases[0].task.as_ref().unwrap().id,
        b,
        "queued work still drains"
    );
    n.complete(b, leases[0].fencing_token, true).await.unwrap();
    let get = GetQueueRequest {
        name: "gpu".into(),
        consistency: 0,
    };
    let q = QueuesClient::new(n.ch.clone())
        .get_queue(get)
        .await
        .unwrap();
    let q = q.into_inner().queue.unwrap();
    assert_eq!((q.state.as_str(), q.running, q.queued), ("drained", 0, 0));
}
