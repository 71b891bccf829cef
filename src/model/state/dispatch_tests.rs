//! Property tests of the dispatcher and of leases over random states, each
//! replayable from its seed: limits, pools and selectors, strict priority and
//! round robin against a brute-force reference, shares within one, each
//! project's queue order, fencing, expiry, and a deterministic replay.
//!
//! The reference must never call into `dispatch`: it would check the
//! dispatcher against itself.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::{State, DEFAULT_POOL, DEFAULT_QUEUE};
use crate::model::limits::DISPATCH_LOOKAHEAD;
use crate::model::spec::{ClusterSelector, Fairness, QueueSpec, QueueState, Resources};
use crate::model::worker::{HeartbeatReport, HeldTask, Registration, Worker, WorkerState};
use crate::model::{Command, ErrorKind, ModelError, MoveTo, NewTask, Op, Queue, Reply};
use crate::model::{Response, Stamp, Task, TaskState, Write};

/// Random states per property.
const SEEDS: u64 = 300;
/// Random steps after building a state.
const STEPS: usize = 80;

/// A state under test with its stamped clock, and what the checks remember.
struct Sim {
    s: State,
    rng: StdRng,
    now_ms: u64,
    /// Whether random queues may limit run concurrency.
    run_limits: bool,
    /// Every command applied, with its response: a log to replay.
    log: Vec<(Command, Response)>,
    /// Every (task, token) ever leased, to send stale ones back.
    leased: Vec<(u64, u64)>,
    max_token: u64,
    stats: Stats,
}

/// What the steps did, so that a test can tell that its checks ran.
#[derive(Default, Debug)]
struct Stats {
    leases: u64,
    picks: u64,
    stale: u64,
    expired: u64,
    /// Leases compared with the reference (the lookahead could not matter).
    compared: u64,
    /// The first lease that the reference would have made otherwise.
    mismatch: Option<String>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        Self {
            s: State::new(),
            rng: StdRng::seed_from_u64(seed),
            now_ms: 1_000,
            run_limits: true,
            log: Vec::new(),
            leased: Vec::new(),
            max_token: 0,
            stats: Stats::default(),
        }
    }

    /// Stamps `op` with the clock and a random seed, and applies it.
    fn apply(&mut self, op: Op) -> Result<Reply, ModelError> {
        let stamp = Stamp {
            now_ms: self.now_ms,
            seed: self.rng.random(),
        };
        let (idempotency_key, actor) = (format!("k{}", self.log.len()), "prop".into());
        let write = Write {
            idempotency_key,
            actor,
            op,
        };
        let cmd = Command { stamp, write };
        let r = self.s.apply(&cmd, &mut Vec::new());
        assert!(!r.replayed, "every key is new");
        self.log.push((cmd, r.clone()));
        r.result
    }

    fn ok(&mut self, op: Op) -> Reply {
        let what = format!("{op:?}");
        let reply = self.apply(op);
        reply.unwrap_or_else(|e| panic!("{what} refused: {e:?}"))
    }

    fn lease(&mut self, worker: &str, max_tasks: u32, ttl_ms: u64) -> Vec<(u64, u64, u64)> {
        let worker = worker.to_string();
        let op = Op::LeaseTasks {
            worker,
            max_tasks,
            ttl_ms,
        };
        let Reply::Leased { leases } = self.ok(op) else {
            panic!("a lease answers its leases");
        };
        leases
    }

    /// Applies an expiry: (tasks expired, workers lost).
    fn expire(&mut self, worker_timeout_ms: u64) -> (u64, u64) {
        let Reply::Expired {
            tasks,
            workers_lost,
        } = self.ok(Op::ExpireLeases { worker_timeout_ms })
        else {
            panic!("an expiry answers its counts");
        };
        (tasks, workers_lost)
    }

    /// Applies one worker's heartbeat: the leases renewed.
    fn beat(&mut self, worker: &str, tasks: Vec<HeldTask>, ttl_ms: u64) -> u64 {
        let (worker, usage) = (worker.to_string(), None);
        let reports = vec![HeartbeatReport {
            worker,
            tasks,
            usage,
        }];
        let Reply::Heartbeats { renewed } = self.ok(Op::WorkerHeartbeats { reports, ttl_ms })
        else {
            panic!("heartbeats answer the leases renewed");
        };
        renewed
    }

    /// A random task in one of `states`.
    fn any_task(&mut self, states: &[TaskState]) -> Option<Task> {
        let all = self.s.tasks_after(0).filter(|t| states.contains(&t.state));
        let ids: Vec<u64> = all.map(|t| t.id).collect();
        let id = *ids.choose(&mut self.rng)?;
        self.s.task(id).cloned()
    }
}

fn held(id: u64, fencing_token: u64) -> HeldTask {
    let iteration = None;
    HeldTask {
        id,
        fencing_token,
        iteration,
    }
}

fn complete(id: u64, fencing_token: u64, succeeded: bool) -> Op {
    let (exit_code, condition) = (Some(i32::from(!succeeded)), String::new());
    Op::CompleteTask {
        id,
        fencing_token,
        succeeded,
        exit_code,
        condition,
    }
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

/// A non-empty random subset of `of`, in random order.
fn subset(rng: &mut StdRng, of: &[String]) -> Vec<String> {
    let mut v: Vec<String> = of
        .iter()
        .filter(|_| rng.random_bool(0.5))
        .cloned()
        .collect();
    if v.is_empty() {
        v.push(of.choose(rng).expect("not empty").clone());
    }
    v.shuffle(rng);
    v
}

/// Random amounts of `cpu` and `gpu`, each there with its probability.
fn resources(rng: &mut StdRng, cpu: (f64, u64), gpu: (f64, u64)) -> Resources {
    let mut r = Resources::new();
    if rng.random_bool(cpu.0) {
        r.insert("cpu".into(), rng.random_range(1..=cpu.1));
    }
    if rng.random_bool(gpu.0) {
        r.insert("gpu".into(), rng.random_range(0..=gpu.1));
    }
    r
}

fn random_spec(rng: &mut StdRng, clusters: &[String], run_limits: bool) -> QueueSpec {
    let mut limit = |max| match rng.random_bool(0.5) {
        true => 0,
        false => rng.random_range(1..=max),
    };
    let (action_concurrency, run_concurrency) = (limit(4), limit(3) * u32::from(run_limits));
    let clusters = match rng.random_bool(0.5) {
        true => ClusterSelector::All,
        false => ClusterSelector::Only(subset(rng, clusters).into_iter().collect()),
    };
    let fairness = [Fairness::RoundRobin, Fairness::ShuffleInterleave];
    QueueSpec {
        clusters,
        run_concurrency,
        action_concurrency,
        depth: 0,
        priority: *[10, 50, 50, 90].choose(rng).expect("not empty"),
        fairness: *fairness.choose(rng).expect("not empty"),
        quota: resources(rng, (0.4, 8), (0.3, 3)),
        ..Default::default()
    }
}

/// (name, pool) of the queues the random states create.
fn test_queues(s: &State) -> Vec<(String, String)> {
    let qs = s.queues().filter(|q| q.name != DEFAULT_QUEUE);
    qs.map(|q| (q.name.clone(), q.pool.clone())).collect()
}

fn random_registration(sim: &mut Sim, i: usize) -> Registration {
    let queues = test_queues(&sim.s);
    let rng = &mut sim.rng;
    let pool = queues.choose(rng).expect("queues").1.clone();
    let in_pool: Vec<String> = queues
        .iter()
        .filter(|q| q.1 == pool)
        .map(|q| q.0.clone())
        .collect();
    let clusters = sim.s.pool(&pool).expect("pool").clusters.iter();
    let cluster = clusters.cloned().collect::<Vec<_>>().choose(rng).cloned();
    Registration {
        name: format!("w{i}"),
        ip: "10.0.0.1".into(),
        cluster: cluster.filter(|_| rng.random_bool(0.8)).unwrap_or_default(),
        pool,
        queues: subset(rng, &in_pool),
        capacity: resources(rng, (0.7, 10), (0.7, 3)),
        slots: rng.random_range(0..=4),
    }
}

fn random_task(rng: &mut StdRng, queues: &[String], projects: &[String]) -> NewTask {
    let project = projects.choose(rng).expect("projects").clone();
    // Each run name carries its project, so no two projects share one here
    // (see `runs_of_different_projects_are_different_runs`).
    let run = match rng.random_bool(0.3) {
        true => String::new(),
        false => format!("{project}-r{}", rng.random_range(0..3)),
    };
    NewTask {
        queue: queues.choose(rng).expect("queues").clone(),
        project,
        run,
        command: vec!["x".into()],
        resources: resources(rng, (0.6, 4), (0.3, 2)),
        max_attempts: rng.random_range(1..=3),
        ..Default::default()
    }
}

fn submit_some(sim: &mut Sim) {
    let queues: Vec<String> = test_queues(&sim.s).into_iter().map(|q| q.0).collect();
    let projects: Vec<String> = sim.s.projects().map(|p| p.name.clone()).collect();
    let n = sim.rng.random_range(1..=5);
    let tasks = (0..n).map(|_| random_task(&mut sim.rng, &queues, &projects));
    let tasks = tasks.collect();
    sim.ok(Op::SubmitTasks { tasks });
}

/// 1–2 pools, 2–5 queues, 1–3 projects besides the default, 1–4 workers,
/// some tasks: all at random.
fn build(sim: &mut Sim) {
    let mut pools = Vec::new();
    for p in 0..sim.rng.random_range(1..=2) {
        let clusters = subset(&mut sim.rng, &strings(&["c0", "c1"]));
        let name = format!("p{p}");
        pools.push((name.clone(), clusters.clone()));
        sim.ok(Op::CreatePool { name, clusters });
    }
    for i in 0..sim.rng.random_range(2..=5) {
        let (pool, clusters) = pools.choose(&mut sim.rng).expect("pools").clone();
        let spec = random_spec(&mut sim.rng, &clusters, sim.run_limits);
        let name = format!("q{i}");
        sim.ok(Op::CreateQueue { name, pool, spec });
    }
    let n = sim.rng.random_range(1..=3);
    create_projects(sim, &strings(&["pa", "pb", "pc"])[..n]);
    for i in 0..sim.rng.random_range(1..=4) {
        let r = random_registration(sim, i);
        sim.ok(Op::RegisterWorker(r));
    }
    for _ in 0..sim.rng.random_range(3..=10) {
        submit_some(sim);
    }
}

/// In-flight work summed by brute force. A run is (project, run); a task
/// without a run is a run of its own.
#[derive(Default, Clone, Debug)]
struct Load {
    tasks: usize,
    runs: BTreeSet<(String, String)>,
    resources: Resources,
}

impl Load {
    fn add(&mut self, t: &Task) {
        self.tasks += 1;
        let run = match t.run.as_str() {
            "" => format!("#{}", t.id),
            run => run.to_string(),
        };
        self.runs.insert((t.project.to_string(), run));
        for (name, n) in &t.resources {
            *self.resources.entry(name.clone()).or_default() += n;
        }
    }

    fn with(&self, t: &Task) -> Load {
        let mut l = self.clone();
        l.add(t);
        l
    }
}

fn within(limit: u32, n: usize) -> bool {
    limit == 0 || n <= limit as usize
}

/// A queue's load is within its action and run concurrency and its quota.
fn queue_ok(q: &Queue, l: &Load) -> bool {
    let quota_ok = |(r, max): (&String, &u64)| l.resources.get(r).is_none_or(|n| n <= max);
    within(q.spec.action_concurrency, l.tasks)
        && within(q.spec.run_concurrency, l.runs.len())
        && q.spec.quota.iter().all(quota_ok)
}

/// A worker's load is within its slots and, when it states one, its capacity
/// (it has none of a resource it does not list).
fn worker_ok(w: &Worker, l: &Load) -> bool {
    let cap = |r: &String| w.capacity.get(r).copied().unwrap_or(0);
    within(w.slots, l.tasks)
        && (w.capacity.is_empty() || l.resources.iter().all(|(r, &n)| n <= cap(r)))
}

/// In-flight loads by queue id and by worker name.
fn loads(s: &State) -> (BTreeMap<u64, Load>, BTreeMap<String, Load>) {
    let mut queues = BTreeMap::<u64, Load>::new();
    let mut workers = BTreeMap::<String, Load>::new();
    for t in s.tasks_after(0).filter(|t| t.state.in_flight()) {
        queues.entry(t.queue).or_default().add(t);
        let worker = t.worker().expect("an in-flight task has a worker");
        workers.entry(worker.to_string()).or_default().add(t);
    }
    (queues, workers)
}

/// Property 1: no queue and no worker is ever past a limit.
fn check_limits(s: &State) {
    let (queues, workers) = loads(s);
    for (id, l) in &queues {
        let q = s.queue_by_id(*id).expect("queue");
        assert!(queue_ok(q, l), "queue {} past {:?}: {l:?}", q.name, q.spec);
    }
    for w in s.workers() {
        let l = workers.get(&w.name).cloned().unwrap_or_default();
        assert_eq!(l.tasks, w.tasks.len(), "worker {} holds its tasks", w.name);
        let limits = (w.slots, &w.capacity);
        assert!(worker_ok(w, &l), "worker {} past {limits:?}: {l:?}", w.name);
    }
}

fn selects(selector: &ClusterSelector, cluster: &str) -> bool {
    match selector {
        ClusterSelector::All => true,
        ClusterSelector::Only(clusters) => clusters.contains(cluster),
    }
}

/// The queued tasks of a queue, in order.
fn queued(s: &State, queue: u64) -> Vec<&Task> {
    let ids = s.queued_range(queue, 0, usize::MAX).into_iter();
    ids.map(|id| s.task(id).expect("a queued task")).collect()
}

/// No project has `DISPATCH_LOOKAHEAD` tasks queued in one queue: the
/// dispatcher sees every queued task, and the reference needs no bound.
fn lookahead_cannot_matter(s: &State) -> bool {
    s.queues().all(|q| {
        let mut per_project = BTreeMap::<&str, usize>::new();
        for t in queued(s, q.id) {
            *per_project.entry(&t.project).or_default() += 1;
        }
        per_project.values().all(|&n| n < DISPATCH_LOOKAHEAD)
    })
}

/// The dispatcher by brute force, from the rules in `dispatch`'s docs: the
/// worker's queues of its pool that select its cluster, by priority, then
/// its own order; from each, while a task fits, round robin takes the first
/// fitting task of the first project after the last served (by name,
/// wrapping). Shuffle interleave's order is the seed's: `real`'s next pick
/// is taken if it is the first fitting task of its project.
fn reference(pre: &State, worker: &str, max: usize, real: &[u64]) -> Vec<u64> {
    let w = pre.worker(worker).expect("worker");
    let (mut queue_loads, mut worker_loads) = loads(pre);
    let mut held = worker_loads.remove(worker).unwrap_or_default();
    let mut queues: Vec<&Queue> = (w.queues.iter().filter_map(|id| pre.queue_by_id(*id)))
        .filter(|q| q.pool == w.pool && q.state != QueueState::Drained)
        .filter(|q| selects(&q.spec.clusters, &w.cluster))
        .collect();
    queues.sort_by_key(|q| Reverse(q.spec.priority)); // stable: the worker's order
    let mut picked: Vec<u64> = Vec::new();
    for q in queues {
        let mut load = queue_loads.remove(&q.id).unwrap_or_default();
        let mut last = q.rr_last_project.clone();
        while picked.len() < max {
            let fitting: Vec<&Task> = (queued(pre, q.id).into_iter())
                .filter(|t| !picked.contains(&t.id))
                .filter(|t| queue_ok(q, &load.with(t)) && worker_ok(w, &held.with(t)))
                .collect();
            let first_of_project = |t: &Task| fitting.iter().find(|f| f.project == t.project);
            let next = match q.spec.fairness {
                Fairness::RoundRobin => {
                    let after_last =
                        |t: &&&Task| (t.project.as_str() <= last.as_str(), t.project.to_string());
                    fitting.iter().min_by_key(after_last)
                }
                Fairness::ShuffleInterleave => (real.get(picked.len()))
                    .and_then(|id| fitting.iter().find(|t| t.id == *id))
                    .filter(|t| first_of_project(t).map(|f| f.id) == Some(t.id))
                    .or(fitting.first()),
            };
            let Some(t) = next.copied() else { break };
            load.add(t);
            held.add(t);
            picked.push(t.id);
            last = t.project.to_string();
        }
    }
    picked
}

/// Property 2, and property 5 within a lease: a worker gets only tasks of
/// queues it listens to, in its pool and selecting its cluster, and one
/// project's picks from one queue come in the queue's order.
fn check_placement(pre: &State, worker: &str, picks: &[u64]) {
    let w = pre.worker(worker).expect("worker");
    let mut last = BTreeMap::<(u64, &str), usize>::new();
    for &id in picks {
        let t = pre.task(id).expect("task");
        let q = pre.queue_by_id(t.queue).expect("queue");
        assert!(w.queues.contains(&q.id), "{worker} hears no {}", q.name);
        assert_eq!(q.pool, w.pool, "task {id} crossed pools");
        let cluster = &w.cluster;
        assert!(
            selects(&q.spec.clusters, cluster),
            "{cluster:?}: {}",
            q.name
        );
        let position = pre.position(t).expect("a picked task was queued");
        if let Some(before) = last.insert((q.id, &t.project), position) {
            assert!(before < position, "{} out of queue order", t.project);
        }
    }
}

/// Leases for a random worker and checks what it got (properties 2, 3, 5).
fn lease_step(sim: &mut Sim) {
    let workers: Vec<String> = sim.s.workers().map(|w| w.name.clone()).collect();
    let worker = workers.choose(&mut sim.rng).expect("workers").clone();
    let max = sim.rng.random_range(1..=6);
    let ttl = sim.rng.random_range(1_000..=5_000);
    let pre = sim.s.clone();
    let leases = sim.lease(&worker, max, ttl);
    let picks: Vec<u64> = leases.iter().map(|l| l.0).collect();
    assert!(picks.len() <= max as usize);
    for &(id, token, expires) in &leases {
        let (before, after) = (pre.task(id).expect("task"), sim.s.task(id).expect("task"));
        assert_eq!(
            (before.state, after.state),
            (TaskState::Queued, TaskState::Leased)
        );
        assert_eq!(after.worker(), Some(worker.as_str()));
        assert_eq!(after.attempt, before.attempt + 1, "the next attempt");
        assert!(token > sim.max_token, "fencing tokens only grow");
        assert_eq!(expires, sim.now_ms + ttl);
        sim.max_token = token;
        sim.leased.push((id, token));
    }
    check_placement(&pre, &worker, &picks);
    if lookahead_cannot_matter(&pre) {
        let expected = reference(&pre, &worker, max as usize, &picks);
        if picks != expected && sim.stats.mismatch.is_none() {
            let log = sim.log.len();
            let what = format!("command {log}: {worker} leased {picks:?}, expected {expected:?}");
            sim.stats.mismatch = Some(what);
        }
        sim.stats.compared += 1;
    }
    sim.stats.leases += 1;
    sim.stats.picks += picks.len() as u64;
}

/// Starts, completes or releases a random in-flight task with its token.
fn holder_step(sim: &mut Sim) {
    let Some(t) = sim.any_task(&[TaskState::Leased, TaskState::Running]) else {
        return;
    };
    let (id, fencing_token, roll) = (t.id, t.fencing_token(), sim.rng.random_range(0..10));
    if roll < 4 && t.state == TaskState::Leased {
        sim.ok(Op::StartTask { id, fencing_token });
        assert_eq!(sim.s.task(id).expect("task").state, TaskState::Running);
    } else if roll < 8 {
        let succeeded = sim.rng.random_bool(0.7);
        sim.ok(complete(id, fencing_token, succeeded));
        let done = match succeeded {
            true => TaskState::Succeeded,
            false => TaskState::Failed,
        };
        assert_eq!(sim.s.task(id).expect("task").state, done);
    } else {
        let reason = String::new();
        sim.ok(Op::ReleaseTask {
            id,
            fencing_token,
            reason,
        });
        let after = sim.s.task(id).expect("task");
        let got = (after.state, after.attempt, sim.s.position(after));
        assert_eq!(got, (TaskState::Queued, t.attempt - 1, Some(0)), "released");
    }
}

/// Leases ever granted whose token is no longer current.
fn stale_leases(sim: &Sim) -> Vec<(u64, u64)> {
    let stale = |&(id, token): &(u64, u64)| {
        let t = sim.s.task(id).expect("task");
        !t.state.in_flight() || t.fencing_token() != token
    };
    sim.leased.iter().copied().filter(stale).collect()
}

/// Property 6: a start, progress, completion or release with a stale token
/// is refused with FailedPrecondition and changes no task, worker or queue.
fn stale_step(sim: &mut Sim) {
    let stale = stale_leases(sim);
    let Some(&(id, fencing_token)) = stale.choose(&mut sim.rng) else {
        return;
    };
    let (iteration, reason) = (7, String::new());
    let op = match sim.rng.random_range(0..4) {
        0 => Op::StartTask { id, fencing_token },
        1 => Op::ReportProgress {
            id,
            fencing_token,
            iteration,
        },
        2 => complete(id, fencing_token, true),
        _ => Op::ReleaseTask {
            id,
            fencing_token,
            reason,
        },
    };
    let pre = sim.s.clone();
    let e = sim.apply(op).expect_err("a stale token is refused");
    assert_eq!(e.kind, ErrorKind::FailedPrecondition, "{e:?}");
    let same = |a: &State, b: &State| {
        a.tasks_after(0).eq(b.tasks_after(0))
            && a.workers().eq(b.workers())
            && a.queues().eq(b.queues())
    };
    assert!(same(&pre, &sim.s), "a stale call on {id} changed something");
    sim.stats.stale += 1;
}

/// A heartbeat naming some of a worker's leases and maybe a stale one: those
/// named with their tokens last `ttl` more; the stale one changes nothing.
fn heartbeat_step(sim: &mut Sim) {
    let workers: Vec<String> = sim.s.workers().map(|w| w.name.clone()).collect();
    let worker = workers.choose(&mut sim.rng).expect("workers").clone();
    let holds = sim.s.worker(&worker).expect("worker").tasks.clone();
    let mut named: Vec<u64> = holds.iter().copied().collect();
    named.retain(|_| sim.rng.random_bool(0.8));
    let token = |id| sim.s.task(id).expect("task").fencing_token();
    let mut tasks: Vec<HeldTask> = named.iter().map(|&id| held(id, token(id))).collect();
    let mut stale = stale_leases(sim);
    stale.retain(|(id, _)| !holds.contains(id));
    tasks.extend(stale.choose(&mut sim.rng).map(|&(id, t)| held(id, t)));
    let ttl_ms = sim.rng.random_range(1_000..=5_000);
    let pre = sim.s.clone();
    assert_eq!(sim.beat(&worker, tasks.clone(), ttl_ms), named.len() as u64);
    let w = sim.s.worker(&worker).expect("worker");
    assert_eq!((w.state, w.last_seen_ms), (WorkerState::Active, sim.now_ms));
    for h in &tasks {
        let t = sim.s.task(h.id).expect("task");
        match named.contains(&h.id) {
            true => {
                let expires = t.execution.as_ref().and_then(|e| e.lease_expires_ms);
                assert_eq!(expires, Some(sim.now_ms + ttl_ms), "a renewed lease");
            }
            false => assert_eq!(Some(t), pre.task(h.id), "a stale heartbeat renews nothing"),
        }
    }
}

/// Property 7: once the clock passes, due leases and the leases of silent
/// workers end, each task to the front of its queue with its attempt, or
/// failed once it used its attempts; every other lease stays as it was.
fn expire_step(sim: &mut Sim) {
    sim.now_ms += sim.rng.random_range(0..=6_000);
    let (now, timeout) = (sim.now_ms, sim.rng.random_range(4_000..=8_000));
    let pre = sim.s.clone();
    let lost: BTreeSet<&str> = (pre.workers())
        .filter(|w| w.state == WorkerState::Active && w.last_seen_ms + timeout <= now)
        .map(|w| w.name.as_str())
        .collect();
    let in_flight = pre.tasks_after(0).filter(|t| t.state.in_flight());
    let (due, kept): (Vec<&Task>, Vec<&Task>) = in_flight.partition(|t| {
        let e = t.execution.as_ref().expect("in flight");
        e.lease_expires_ms.expect("leased") <= now || lost.contains(e.worker.as_str())
    });
    let expired = sim.expire(timeout);
    assert_eq!(expired, (due.len() as u64, lost.len() as u64));
    for name in &lost {
        let w = sim.s.worker(name).expect("worker");
        assert!(w.state == WorkerState::Lost && w.tasks.is_empty(), "{name}");
    }
    let mut requeued = BTreeMap::<u64, usize>::new();
    for t in &due {
        let after = sim.s.task(t.id).expect("task");
        assert_eq!(after.attempt, t.attempt, "an expiry keeps the attempt");
        match t.attempt >= t.max_attempts {
            true => assert_eq!(after.state, TaskState::Failed, "task {} at its last", t.id),
            false => *requeued.entry(t.queue).or_default() += 1,
        }
    }
    for t in &due {
        let position = sim.s.position(sim.s.task(t.id).expect("task"));
        let front = position.is_none_or(|p| p < requeued[&t.queue]);
        assert!(front, "{} to the front", t.id);
    }
    for t in kept {
        assert_eq!(sim.s.task(t.id), Some(t), "a lease not due stays");
    }
    sim.stats.expired += due.len() as u64;
}

/// A random move of a queued task; a refused one (another pool) is fine.
fn move_step(sim: &mut Sim) {
    let (t, other) = (
        sim.any_task(&[TaskState::Queued]),
        sim.any_task(&[TaskState::Queued]),
    );
    let (Some(t), Some(other)) = (t, other) else {
        return;
    };
    let queues = test_queues(&sim.s);
    let target = queues.choose(&mut sim.rng).expect("queues").0.clone();
    let n = sim.rng.random_range(0..5);
    let to = match sim.rng.random_range(0..8) {
        0 => MoveTo::Front,
        1 => MoveTo::Back,
        2 => MoveTo::Forward(n),
        3 => MoveTo::Backward(n),
        4 => MoveTo::Position(n),
        5 => MoveTo::Before(other.id),
        6 => MoveTo::After(other.id),
        _ => MoveTo::Queue(target),
    };
    let _ = sim.apply(Op::MoveTask { id: t.id, to });
}

fn run_random(seed: u64, run_limits: bool) -> Sim {
    let mut sim = Sim::new(seed);
    sim.run_limits = run_limits;
    build(&mut sim);
    for _ in 0..STEPS {
        sim.now_ms += sim.rng.random_range(0..100);
        match sim.rng.random_range(0..100) {
            0..=34 => lease_step(&mut sim),
            35..=62 => holder_step(&mut sim),
            63..=70 => submit_some(&mut sim),
            71..=77 => heartbeat_step(&mut sim),
            78..=85 => expire_step(&mut sim),
            86..=93 => stale_step(&mut sim),
            _ => move_step(&mut sim),
        }
        check_limits(&sim.s);
    }
    sim
}

/// Runs `check` for each seed, and names the seed that fails.
fn for_seeds<T>(seeds: u64, check: impl Fn(u64) -> T + std::panic::RefUnwindSafe) -> Vec<T> {
    let run = |seed| match std::panic::catch_unwind(|| check(seed)) {
        Ok(outcome) => outcome,
        Err(_) => panic!("seed {seed} failed: see above"),
    };
    (0..seeds).map(run).collect()
}

fn register(sim: &mut Sim, name: &str, queues: &[&str]) {
    sim.ok(Op::RegisterWorker(Registration {
        name: name.into(),
        ip: "10.0.0.1".into(),
        pool: DEFAULT_POOL.into(),
        queues: strings(queues),
        ..Default::default()
    }));
}

fn task_to(queue: &str, project: &str, run: &str) -> NewTask {
    let (queue, project, run) = (queue.into(), project.into(), run.into());
    NewTask {
        queue,
        project,
        run,
        command: vec!["x".into()],
        ..Default::default()
    }
}

fn create_projects(sim: &mut Sim, projects: &[String]) {
    for name in projects.iter().cloned() {
        let settings = Default::default();
        sim.ok(Op::CreateProject { name, settings });
    }
}

/// A round-robin queue of the default pool, limited in run concurrency alone.
fn create(sim: &mut Sim, queue: &str, priority: u8, run_concurrency: u32) {
    let spec = QueueSpec {
        depth: 0,
        priority,
        run_concurrency,
        ..Default::default()
    };
    let (name, pool) = (queue.into(), DEFAULT_POOL.into());
    sim.ok(Op::CreateQueue { name, pool, spec });
}

#[test]
fn random_leases_keep_limits_placement_order_fencing_and_expiry() {
    let stats = for_seeds(SEEDS, |seed| run_random(seed, true).stats);
    let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
    let (leases, picks) = (sum(|s| s.leases), sum(|s| s.picks));
    let (stale, expired) = (sum(|s| s.stale), sum(|s| s.expired));
    eprintln!("{leases} leases, {picks} tasks leased, {stale} stale calls, {expired} expired");
    assert!(
        picks * 2 > leases && stale * expired > 0,
        "the steps did little"
    );
}

/// Property 3: the dispatcher leases exactly what the reference does.
fn matches_the_reference(run_limits: bool) {
    let stats = for_seeds(SEEDS, |seed| run_random(seed, run_limits).stats);
    let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
    let (leases, compared) = (sum(|s| s.leases), sum(|s| s.compared));
    assert!(compared * 10 > leases * 9, "{compared} of {leases}");
    let mut mismatch = stats.iter().enumerate();
    let mismatch = mismatch.find_map(|(seed, s)| Some((seed, s.mismatch.clone()?)));
    assert_eq!(mismatch, None, "(seed, the first lease that differs)");
}

#[test]
fn random_leases_match_the_reference_without_run_limits() {
    matches_the_reference(false);
}

#[test]
fn random_leases_match_the_reference() {
    matches_the_reference(true);
}

#[test]
fn replaying_the_log_yields_equal_states_and_responses() {
    for_seeds(100, |seed| {
        let a = run_random(seed, true);
        let mut b = State::new();
        for (cmd, response) in &a.log {
            assert_eq!(&b.apply(cmd, &mut Vec::new()), response, "{cmd}");
        }
        assert_eq!(b, a.s);
        assert_eq!(run_random(seed, true).log, a.log, "one seed, one log");
    });
}

/// A node's lease polls reserve what their previews found, and the next
/// preview looks past those tasks; the lease itself, in apply, does not.
#[test]
fn a_preview_looks_past_reserved_tasks() {
    let mut sim = Sim::new(1);
    create(&mut sim, "q", 50, 0);
    register(&mut sim, "w", &["q"]);
    let tasks = (0..3).map(|_| task_to("q", "", "")).collect();
    sim.ok(Op::SubmitTasks { tasks });
    let preview = |reserved: &[u64]| {
        let reserved: BTreeSet<u64> = reserved.iter().copied().collect();
        crate::model::dispatch_preview(&sim.s, "w", 2, &reserved)
    };
    assert_eq!(preview(&[]), vec![1, 2]);
    assert_eq!(preview(&[1]), vec![2, 3]);
    assert_eq!(preview(&[2]), vec![1, 3]);
    assert!(preview(&[1, 2, 3]).is_empty());
    let leased: Vec<u64> = sim.lease("w", 2, 60_000).iter().map(|l| l.0).collect();
    assert_eq!(leased, vec![1, 2], "apply reserves nothing");
}

/// Property 4: one round-robin queue, no limits, every task queued up front:
/// after each lease, the projects that still have tasks queued got shares
/// within one of each other.
#[test]
fn round_robin_shares_stay_within_one() {
    for_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(seed);
        let projects = subset(&mut sim.rng, &strings(&["pa", "pb", "pc", "pd"]));
        create(&mut sim, "rr", 50, 0);
        create_projects(&mut sim, &projects);
        register(&mut sim, "w", &["rr"]);
        let mut tasks = Vec::new();
        for p in &projects {
            let n = sim.rng.random_range(1..=25);
            tasks.extend((0..n).map(|_| task_to("rr", p, "")));
        }
        tasks.shuffle(&mut sim.rng);
        sim.ok(Op::SubmitTasks { tasks });
        let q = sim.s.queue("rr").expect("queue").id;
        let mut got = BTreeMap::<String, usize>::new();
        while sim.s.queued(q) > 0 {
            let max = sim.rng.random_range(1..=3);
            let leases = sim.lease("w", max, 60_000);
            assert!(!leases.is_empty(), "a queue without limits leased nothing");
            for (id, token, _) in leases {
                let project = sim.s.task(id).expect("task").project.to_string();
                *got.entry(project).or_default() += 1;
                if sim.rng.random_bool(0.5) {
                    sim.ok(complete(id, token, true));
                }
            }
            let waiting: BTreeSet<&str> = queued(&sim.s, q).iter().map(|t| &*t.project).collect();
            let shares: BTreeSet<usize> = waiting
                .iter()
                .map(|p| got.get(*p).map_or(0, |n| *n))
                .collect();
            let spread = shares.last().zip(shares.first()).map(|(hi, lo)| hi - lo);
            assert!(spread.unwrap_or(0) <= 1, "{got:?}, waiting {waiting:?}");
        }
    });
}

/// Property 7 by hand: heartbeats keep a lease; without them it expires to
/// the front, the next lease is the next attempt, the last attempt fails;
/// a silent worker is lost, and its leases end before their TTL.
#[test]
fn leases_expire_unless_renewed_and_silent_workers_are_lost() {
    let mut sim = Sim::new(0);
    create(&mut sim, "q", 50, 0);
    register(&mut sim, "w", &["q"]);
    let mut tasks = vec![task_to("q", "", ""), task_to("q", "", "")];
    tasks[0].max_attempts = 2;
    sim.ok(Op::SubmitTasks { tasks });
    let (queued, failed) = (TaskState::Queued, TaskState::Failed);
    let task = |sim: &Sim, id| {
        let t = sim.s.task(id).expect("task");
        (t.state, t.attempt, sim.s.position(t))
    };
    let [(id, token, _)] = sim.lease("w", 1, 1_000)[..] else {
        panic!("one lease")
    };
    sim.now_ms += 800;
    assert_eq!(sim.beat("w", vec![held(id, token)], 1_000), 1);
    sim.now_ms += 800;
    assert_eq!(sim.expire(60_000), (0, 0), "a renewed lease stays");
    sim.now_ms += 300;
    assert_eq!(sim.expire(60_000), (1, 0));
    assert_eq!(task(&sim, id), (queued, 1, Some(0)), "to the front");
    let stale = vec![held(id, token)];
    assert_eq!(sim.beat("w", stale, 1_000), 0, "a stale token");
    let [(again, token2, _)] = sim.lease("w", 1, 1_000)[..] else {
        panic!("one lease")
    };
    assert_eq!((again, task(&sim, id).1), (id, 2), "the next attempt");
    assert!(token2 > token, "fencing tokens only grow");
    sim.now_ms += 1_000;
    assert_eq!(sim.expire(60_000), (1, 0));
    assert_eq!(task(&sim, id), (failed, 2, None), "2 of 2 attempts");
    let [(other, ..)] = sim.lease("w", 1, 3_600_000)[..] else {
        panic!("one lease")
    };
    sim.now_ms += 5_000;
    assert_eq!(sim.expire(5_000), (1, 1), "silent: lost before the TTL");
    let w = sim.s.worker("w").expect("worker");
    assert_eq!((w.state, w.tasks.len()), (WorkerState::Lost, 0));
    assert_eq!(task(&sim, other), (queued, 1, Some(0)));
}

/// A run already in flight is one run, however many of its tasks a lease
/// picks: run concurrency 2 with run `a` in flight admits `a` and `b`, and
/// the higher-priority queue is served before the lower one.
#[test]
fn a_run_in_flight_counts_once_within_a_lease() {
    let mut sim = Sim::new(0);
    create(&mut sim, "high", 90, 2);
    create(&mut sim, "low", 10, 0);
    register(&mut sim, "w", &["high", "low"]);
    let run = |r| task_to("high", "", r);
    let tasks = vec![run("a"), run("a"), run("b"), task_to("low", "", "")];
    sim.ok(Op::SubmitTasks { tasks });
    let ids = |leases: Vec<(u64, u64, u64)>| leases.iter().map(|l| l.0).collect::<Vec<_>>();
    assert_eq!(ids(sim.lease("w", 1, 60_000)), [1]);
    assert_eq!(ids(sim.lease("w", 3, 60_000)), [2, 3, 4]);
}

/// Runs belong to projects (the per-run queued limit counts by project and
/// run), so two projects' runs of one name are two runs for run concurrency.
#[test]
fn runs_of_different_projects_are_different_runs() {
    let mut sim = Sim::new(0);
    create(&mut sim, "q", 50, 1);
    create_projects(&mut sim, &strings(&["pa", "pb"]));
    register(&mut sim, "w", &["q"]);
    let tasks = vec![task_to("q", "pa", "train"), task_to("q", "pb", "train")];
    sim.ok(Op::SubmitTasks { tasks });
    let leases = sim.lease("w", 2, 60_000);
    check_limits(&sim.s);
    assert_eq!(leases.len(), 1, "two runs, and room for one");
}
