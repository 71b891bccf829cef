//! Workers and leases through the raw gRPC API of a 3-node cluster: the long
//! poll, fencing tokens, expiry, drain with work in flight, heartbeats sent
//! only to a follower across leader changes, their batching, and the grace
//! a new leader gives leases before it expires any.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{Cluster, Timings};
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

#[derive(Clone)]
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

    async fn list_workers(&self) -> Vec<Worker> {
        let req = ListWorkersRequest { consistency: 0 };
        let r = self.workers().list_workers(req).await.unwrap();
        r.into_inner().workers
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

    async fn worker(&self, name: &str) -> Worker {
        let req = GetWorkerRequest {
            name: name.into(),
            consistency: 0,
        };
        let r = self.workers().get_worker(req).await.unwrap();
        r.into_inner().worker.unwrap()
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
        self.send_heartbeat(HeartbeatRequest {
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
        })
        .await
    }

    async fn send_heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
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

/// The role of node `id` and the leader it knows.
async fn role(c: &Cluster, id: u64) -> (String, Option<u64>) {
    let s = c.status(id).await.expect("node answers");
    (s.role, s.leader_id)
}

/// Moves leadership to `to` with `laneq cluster transfer-leader` and waits
/// for it; `via`, which workers talk to, is a follower before and after.
async fn move_leader(c: &Cluster, via: u64, to: u64) {
    assert_eq!(role(c, via).await.0, "follower", "node {via} before");
    let (code, _, err) = c.cli(&["cluster", "transfer-leader", &to.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (to_role, _) = role(c, to).await;
        let (via_role, via_leader) = role(c, via).await;
        if to_role == "leader" && via_leader == Some(to) {
            assert_eq!(via_role, "follower", "node {via} after");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {to} never led: {to_role}; node {via} follows {via_leader:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Heartbeats for every (worker, task, token) of `held` every 300 ms until
/// `stop`; returns every task an answer revoked.
async fn heartbeat_until(
    f: Node,
    held: Vec<(String, u64, u64)>,
    stop: Arc<AtomicBool>,
) -> Vec<u64> {
    let mut revoked = vec![];
    while !stop.load(Ordering::Relaxed) {
        for (worker, id, token) in &held {
            revoked.extend(f.heartbeat(worker, &[(*id, *token)]).await.revoked);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    revoked
}

/// Polls until every lease of `held` expires after `after_ms`: renewed by a
/// leader that stamped it later than `after_ms` minus the TTL.
async fn wait_renewed(f: &Node, held: &[(String, u64, u64)], after_ms: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for (_, id, _) in held {
        while f.task(*id).await.lease_expires_ms <= Some(after_ms) {
            assert!(Instant::now() < deadline, "task {id} never renewed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Registers each worker of `names` through `f`, submits a task for it and
/// has it lease and start that task; returns (worker, task, token, expiry).
async fn running_tasks(f: &Node, names: &[&str]) -> Vec<(String, u64, u64, u64)> {
    let mut held = vec![];
    for name in names {
        f.register(name, &["default"], 1).await;
        let id = f.submit("default", "").await;
        let lease = f.lease(name, 1, 2_000).await.remove(0);
        assert_eq!(lease.task.unwrap().id, id);
        let t = f.start(id, lease.fencing_token).await.unwrap();
        let expires = t.lease_expires_ms.unwrap();
        held.push((name.to_string(), id, lease.fencing_token, expires));
    }
    held
}

/// Two workers heartbeat only to one follower while leadership moves twice
/// between the other two nodes. The follower stays a follower, its batches
/// renew the leases under each new leader, and no lease expires: both tasks
/// complete with their first tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_through_a_follower_keep_leases_across_leader_changes() {
    let timings = short_leases();
    let ttl_ms = timings.lease_ttl_ms;
    let c = Cluster::start(3, timings);
    let first = c.init(1).await;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != first).collect();
    let (via, second) = (others[0], others[1]);
    let f = Node::new(&c, via);
    let held: Vec<(String, u64, u64)> = running_tasks(&f, &["w1", "w2"])
        .await
        .into_iter()
        .map(|(w, id, token, _)| (w, id, token))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let beats = tokio::spawn(heartbeat_until(f.clone(), held.clone(), stop.clone()));

    for to in [second, first] {
        move_leader(&c, via, to).await;
        wait_renewed(&f, &held, laneq::clock::now_ms() + ttl_ms).await;
    }
    // Past the last leader's grace and then some: a lease not renewed
    // would have expired by now.
    let until = Instant::now() + Duration::from_millis(3 * ttl_ms);
    while Instant::now() < until {
        for (_, id, token) in &held {
            let t = f.task(*id).await;
            assert_eq!((t.state.as_str(), t.fencing_token), ("running", *token));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(beats.await.unwrap(), Vec::<u64>::new(), "nothing revoked");
    assert_eq!(role(&c, via).await, ("follower".to_string(), Some(first)));
    for (worker, id, token) in &held {
        let t = f.task(*id).await;
        assert_eq!(
            (t.state.as_str(), t.worker.as_str(), t.attempt, t.iteration),
            ("running", worker.as_str(), 1, Some(7)),
            "{t:?}"
        );
        assert!(
            !t.timeline.iter().any(|e| e.reason.contains("expired")),
            "{:?}",
            t.timeline
        );
        let t = f.complete(*id, *token, true).await.unwrap();
        assert_eq!(t.state, "succeeded");
    }
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

/// How many simulated workers heartbeat in the batching test.
const SIMULATED_WORKERS: usize = 200;

/// The highest last log index among the nodes.
async fn last_log_index(c: &Cluster) -> u64 {
    let mut last = 0;
    for id in [1, 2, 3] {
        last = last.max(c.status(id).await.expect("node answers").last_log_index);
    }
    last
}

/// What simulated worker `i` reports as its memory use in round `round`:
/// tells every report apart.
fn report(i: usize, round: u64) -> u64 {
    i as u64 * 1_000_000 + round
}

/// Each simulated worker heartbeats once a round, in turn, for at least 3
/// rounds and 3 s; the first also holds `task` (id, token) at iteration
/// `round`. Returns the last round and the heartbeats sent.
async fn heartbeat_rounds(f: &Node, names: &[String], task: (u64, u64)) -> (u64, u64) {
    let start = Instant::now();
    let (mut round, mut sent) = (0, 0);
    while round < 3 || start.elapsed() < Duration::from_secs(3) {
        round += 1;
        for (i, name) in names.iter().enumerate() {
            let tasks = match i {
                0 => vec![HeldTask {
                    id: task.0,
                    fencing_token: task.1,
                    iteration: Some(round),
                }],
                _ => vec![],
            };
            let usage = Some(Usage {
                memory_used_bytes: Some(report(i, round)),
                ..Default::default()
            });
            let req = HeartbeatRequest {
                worker: name.clone(),
                tasks,
                usage,
            };
            let r = f.send_heartbeat(req).await;
            assert!(r.revoked.is_empty(), "{r:?}");
            sent += 1;
        }
    }
    (round, sent)
}

/// Polls until every simulated worker shows its report of `round`, and
/// task `id` its iteration.
async fn wait_latest_reports(f: &Node, round: u64, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = f.list_workers().await;
        let behind: Vec<(String, Option<u64>)> = workers
            .iter()
            .filter_map(|w| {
                let i: usize = w.name.strip_prefix("sim-")?.parse().ok()?;
                let seen = w.usage.as_ref().and_then(|u| u.memory_used_bytes);
                (seen != Some(report(i, round))).then(|| (w.name.clone(), seen))
            })
            .collect();
        let iteration = f.task(id).await.iteration;
        if workers.len() == SIMULATED_WORKERS && behind.is_empty() && iteration == Some(round) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: task at {iteration:?}, behind: {:?}",
            &behind[..behind.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Many workers heartbeating over and over to one follower cost the log
/// about one entry per batch period, not one per heartbeat, and each
/// worker's latest report (its usage, its task's iteration) is what sticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_to_a_follower_are_batched_and_the_latest_report_wins() {
    let timings = Timings::default();
    let batch_ms = timings.heartbeat_batch_ms;
    let c = Cluster::start(3, timings);
    let leader = c.init(1).await;
    let f = Node::new(&c, [1, 2, 3].into_iter().find(|&n| n != leader).unwrap());
    let names: Vec<String> = (0..SIMULATED_WORKERS).map(|i| format!("sim-{i}")).collect();
    futures::future::join_all(names.iter().map(|n| f.register(n, &["default"], 1))).await;
    let id = f.submit("default", "").await;
    let token = f.lease(&names[0], 1, 2_000).await[0].fencing_token;
    c.wait_converged(&[1, 2, 3], 0).await;
    let before = last_log_index(&c).await;

    let start = Instant::now();
    let (round, sent) = heartbeat_rounds(&f, &names, (id, token)).await;
    wait_latest_reports(&f, round, id).await;
    let periods = start.elapsed().as_millis() as u64 / batch_ms + 1;
    let grown = last_log_index(&c).await - before;
    assert!(
        grown <= 2 * periods + 4,
        "{sent} heartbeats over {periods} batch periods took {grown} log entries"
    );
    assert!(sent >= 20 * grown, "{sent} heartbeats, {grown} log entries");
    let last = SIMULATED_WORKERS - 1;
    let w = f.worker(&names[last]).await;
    let seen = w.usage.and_then(|u| u.memory_used_bytes);
    assert_eq!(
        seen,
        Some(report(last, round)),
        "worker get shows the last report"
    );
    assert_eq!(w.state, "active");
    let t = f.task(id).await;
    assert_eq!((t.state.as_str(), t.fencing_token), ("leased", token));
}

/// Waits until the wall clock reaches `at_ms`.
async fn wait_until_ms(at_ms: u64) {
    let now = laneq::clock::now_ms();
    if at_ms > now {
        tokio::time::sleep(Duration::from_millis(at_ms - now)).await;
    }
}

/// A new leader expires nothing for one lease TTL. A worker silent across
/// the leader change, whose lease ran out meanwhile, keeps the lease by
/// renewing within that TTL; a worker that stays silent loses its lease
/// once the grace is over, and the first still holds its own then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_lets_a_worker_silent_across_the_change_renew() {
    const TTL_MS: u64 = 10_000;
    let c = Cluster::start(
        3,
        Timings {
            lease_ttl_ms: TTL_MS,
            worker_timeout_ms: 120_000,
            heartbeat_batch_ms: 100,
            ..Timings::default()
        },
    );
    let first = c.init(1).await;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != first).collect();
    let (via, second) = (others[0], others[1]);
    let f = Node::new(&c, via);
    let held = running_tasks(&f, &["late", "silent"]).await;
    let (late, token, expires, silent) = (held[0].1, held[0].2, held[0].3, held[1].1);

    // Silent for half a TTL under the old leader; then the leader changes,
    // so the new one's grace outlasts the lease by about half a TTL. The
    // worker renews a fifth of a TTL after its lease ran out: without the
    // grace, the lease would be gone by then.
    wait_until_ms(expires - TTL_MS / 2).await;
    move_leader(&c, via, second).await;
    wait_until_ms(expires + TTL_MS / 5).await;
    let t = f.task(late).await;
    assert_eq!(
        (t.state.as_str(), t.fencing_token, t.lease_expires_ms),
        ("running", token, Some(expires)),
        "past its expiry, not expired"
    );
    let r = f.heartbeat("late", &[(late, token)]).await;
    assert!(r.revoked.is_empty(), "{r:?}");

    // Renewing on, until the new leader's grace is over and it expires the
    // silent worker's lease.
    let deadline = Instant::now() + Duration::from_millis(4 * TTL_MS);
    while f.task(silent).await.state != "queued" {
        assert!(Instant::now() < deadline, "the silent lease never expired");
        let r = f.heartbeat("late", &[(late, token)]).await;
        assert!(r.revoked.is_empty(), "{r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    check_grace_outcome(&f, (late, token, expires), silent).await;
    assert_eq!(role(&c, second).await.0, "leader", "one leader change");
}

/// After the grace: `silent`'s lease expired, and the late renewer's
/// (task, token, first expiry) stays renewed and completes.
async fn check_grace_outcome(f: &Node, (late, token, expires): (u64, u64, u64), silent: u64) {
    let t = f.task(silent).await;
    assert_eq!((t.attempt, t.position), (1, Some(1)));
    assert!(
        t.timeline
            .iter()
            .any(|e| e.reason.contains("lease expired on worker silent")),
        "{:?}",
        t.timeline
    );
    let t = f.task(late).await;
    assert_eq!(
        (t.state.as_str(), t.fencing_token, t.attempt),
        ("running", token, 1),
        "{t:?}"
    );
    assert!(t.lease_expires_ms > Some(expires), "renewed: {t:?}");
    assert!(!t.timeline.iter().any(|e| e.reason.contains("expired")));
    let t = f.complete(late, token, true).await.unwrap();
    assert_eq!(t.state, "succeeded");
}

/// Leases `n` tasks submitted to `default` for worker `name` through `node`.
async fn lease_all(node: &Node, name: &str, n: usize) -> Vec<(u64, u64)> {
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while held.len() < n {
        assert!(Instant::now() < deadline, "leased {} of {n}", held.len());
        let max = (n - held.len()).min(64) as u32;
        for l in node.lease(name, max, 1_000).await {
            held.push((l.task.unwrap().id, l.fencing_token));
        }
    }
    held
}

/// Independent completions in one call (`CompleteEach`, what the client
/// library sends for concurrent completions): each has its own key and
/// outcome, one refused leaves the others done, a repeated key answers its
/// first outcome, and a follower forwards them like single completions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_in_one_call_each_get_their_own_outcome() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let follower = [1, 2, 3].into_iter().find(|&n| n != leader).unwrap();
    let (l, f) = (Node::new(&c, leader), Node::new(&c, follower));
    f.register("w", &["default"], 0).await;
    for _ in 0..3 {
        l.submit("default", "").await;
    }
    let held = lease_all(&l, "w", 3).await;
    let complete =
        |meta: Option<WriteMeta>, (id, token): (u64, u64), ok: bool| CompleteTaskRequest {
            meta,
            id,
            fencing_token: token,
            succeeded: ok,
            exit_code: Some(if ok { 0 } else { 3 }),
            condition: String::new(),
        };
    let (a, b, d) = (held[0], held[1], held[2]);
    let first = meta();
    let req = CompleteEachRequest {
        completes: vec![
            complete(first.clone(), a, true),
            complete(meta(), (b.0, b.1 + 1), true),
            complete(meta(), d, false),
            complete(first.clone(), a, true),
            complete(None, b, true),
        ],
    };
    let outcomes = f.workers().complete_each(req).await.unwrap().into_inner();
    use complete_outcome::Outcome;
    let got: Vec<_> = outcomes
        .outcomes
        .into_iter()
        .map(|o| o.outcome.unwrap())
        .collect();
    assert_eq!(got.len(), 5, "{got:?}");
    let state = |o: &Outcome| match o {
        Outcome::Completed(r) => {
            let t = r.task.as_ref().unwrap();
            (t.id, t.state.clone())
        }
        Outcome::Refused(r) => panic!("refused: {r:?}"),
    };
    assert_eq!(state(&got[0]), (a.0, "succeeded".into()));
    assert_eq!(state(&got[2]), (d.0, "failed".into()));
    assert_eq!(
        state(&got[3]),
        (a.0, "succeeded".into()),
        "a repeated key answers its first outcome"
    );
    let Outcome::Refused(r) = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(Code::from_i32(r.code), Code::FailedPrecondition, "{r:?}");
    let Outcome::Refused(r) = &got[4] else {
        panic!("{got:?}")
    };
    assert_eq!(Code::from_i32(r.code), Code::InvalidArgument, "{r:?}");
    assert_eq!(
        f.task(b.0).await.state,
        "leased",
        "the refused one is untouched"
    );
    assert_eq!(l.complete(b.0, b.1, true).await.unwrap().state, "succeeded");

    let too_many = CompleteEachRequest {
        completes: (0..1001).map(|_| complete(meta(), a, true)).collect(),
    };
    let e = l.workers().complete_each(too_many).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // The client library shares calls between concurrent completions: 200
    // at once all complete, and the one with a stale token alone fails.
    for _ in 0..200 {
        l.submit("default", "").await;
    }
    let held = lease_all(&f, "w", 200).await;
    let client = c.client();
    let ok = laneq::client::workers::Outcome {
        succeeded: true,
        exit_code: Some(0),
        condition: String::new(),
    };
    let completions = held.iter().enumerate().map(|(i, &(id, token))| {
        let (client, ok) = (client.clone(), ok.clone());
        let token = if i == 7 { token + 1 } else { token };
        async move { client.complete_task(id, token, &ok, None).await }
    });
    let results = futures::future::join_all(completions).await;
    for (i, (r, &(id, _))) in results.iter().zip(&held).enumerate() {
        match r {
            Ok(t) if i != 7 => assert_eq!((t.id, t.state.as_str()), (id, "succeeded")),
            Err(e) if i == 7 => assert!(e.to_string().contains("stale"), "{e}"),
            other => panic!("completion {i}: {other:?}"),
        }
    }
    assert_eq!(f.task(held[7].0).await.state, "leased");
    c.wait_converged(&[1, 2, 3], 0).await;
}
