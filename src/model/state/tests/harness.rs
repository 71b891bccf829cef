//! The harness of the random dispatch and lease properties: a [`Sim`] (a
//! state with its stamped clock, a log to replay and counters that show the
//! checks ran), random builders of pools, queues, projects, workers and
//! tasks, and small helpers for hand-written cases. Every random state
//! replays from its seed.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::model::spec::{ClusterSelector, Fairness, QueueSpec, Resources};
use crate::model::state::{State, DEFAULT_POOL, DEFAULT_QUEUE};
use crate::model::worker::{HeartbeatReport, HeldTask, Registration};
use crate::model::{Command, ModelError, NewTask, Op, Reply, Response, Stamp, Task, TaskState};
use crate::model::{Write, Writes};

/// Random states per property.
pub(super) const SEEDS: u64 = 300;
/// Random steps after building a state.
pub(super) const STEPS: usize = 80;

/// A state under test with its stamped clock, and what the checks remember.
pub(super) struct Sim {
    pub(super) s: State,
    pub(super) rng: StdRng,
    pub(super) now_ms: u64,
    /// Whether random queues may limit run concurrency.
    pub(super) run_limits: bool,
    /// Every command applied, with its response: a log to replay.
    pub(super) log: Vec<(Command, Response)>,
    /// Every (task, token) ever leased, to send stale ones back.
    pub(super) leased: Vec<(u64, u64)>,
    pub(super) max_token: u64,
    pub(super) stats: Stats,
}

/// What the steps did, so that a test can tell that its checks ran.
#[derive(Default, Debug)]
pub(super) struct Stats {
    pub(super) leases: u64,
    pub(super) picks: u64,
    pub(super) stale: u64,
    pub(super) expired: u64,
    /// Leases compared with the reference (the lookahead could not matter).
    pub(super) compared: u64,
    /// The first lease that the reference would have made otherwise.
    pub(super) mismatch: Option<String>,
}

impl Sim {
    pub(super) fn new(seed: u64) -> Self {
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
    pub(super) fn apply(&mut self, op: Op) -> Result<Reply, ModelError> {
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
        let cmd = Command {
            stamp,
            writes: Writes::One(write),
        };
        let r = self.s.apply(&cmd, &mut Vec::new());
        assert!(!r.replayed, "every key is new");
        self.log.push((cmd, r.clone()));
        r.result
    }

    pub(super) fn ok(&mut self, op: Op) -> Reply {
        let what = format!("{op:?}");
        let reply = self.apply(op);
        reply.unwrap_or_else(|e| panic!("{what} refused: {e:?}"))
    }

    pub(super) fn lease(
        &mut self,
        worker: &str,
        max_tasks: u32,
        ttl_ms: u64,
    ) -> Vec<(u64, u64, u64)> {
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
    pub(super) fn expire(&mut self, worker_timeout_ms: u64) -> (u64, u64) {
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
    pub(super) fn beat(&mut self, worker: &str, tasks: Vec<HeldTask>, ttl_ms: u64) -> u64 {
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
    pub(super) fn any_task(&mut self, states: &[TaskState]) -> Option<Task> {
        let all = self.s.tasks_after(0).filter(|t| states.contains(&t.state));
        let ids: Vec<u64> = all.map(|t| t.id).collect();
        let id = *ids.choose(&mut self.rng)?;
        self.s.task(id).cloned()
    }
}

pub(super) fn held(id: u64, fencing_token: u64) -> HeldTask {
    let iteration = None;
    HeldTask {
        id,
        fencing_token,
        iteration,
    }
}

pub(super) fn complete(id: u64, fencing_token: u64, succeeded: bool) -> Op {
    let (exit_code, condition) = (Some(i32::from(!succeeded)), String::new());
    Op::CompleteTask {
        id,
        fencing_token,
        succeeded,
        exit_code,
        condition,
    }
}

pub(super) fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

/// A non-empty random subset of `of`, in random order.
pub(super) fn subset(rng: &mut StdRng, of: &[String]) -> Vec<String> {
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
pub(super) fn resources(rng: &mut StdRng, cpu: (f64, u64), gpu: (f64, u64)) -> Resources {
    let mut r = Resources::new();
    if rng.random_bool(cpu.0) {
        r.insert("cpu".into(), rng.random_range(1..=cpu.1));
    }
    if rng.random_bool(gpu.0) {
        r.insert("gpu".into(), rng.random_range(0..=gpu.1));
    }
    r
}

pub(super) fn random_spec(rng: &mut StdRng, clusters: &[String], run_limits: bool) -> QueueSpec {
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
pub(super) fn test_queues(s: &State) -> Vec<(String, String)> {
    let qs = s.queues().filter(|q| q.name != DEFAULT_QUEUE);
    qs.map(|q| (q.name.clone(), q.pool.clone())).collect()
}

pub(super) fn random_registration(sim: &mut Sim, i: usize) -> Registration {
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

pub(super) fn random_task(rng: &mut StdRng, queues: &[String], projects: &[String]) -> NewTask {
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

pub(super) fn submit_some(sim: &mut Sim) {
    let queues: Vec<String> = test_queues(&sim.s).into_iter().map(|q| q.0).collect();
    let projects: Vec<String> = sim.s.projects().map(|p| p.name.clone()).collect();
    let n = sim.rng.random_range(1..=5);
    let tasks = (0..n).map(|_| random_task(&mut sim.rng, &queues, &projects));
    let tasks = tasks.collect();
    sim.ok(Op::SubmitTasks { tasks });
}

/// 1–2 pools, 2–5 queues, 1–3 projects besides the default, 1–4 workers,
/// some tasks: all at random.
pub(super) fn build(sim: &mut Sim) {
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

/// Runs `check` for each seed, and names the seed that fails.
pub(super) fn for_seeds<T>(
    seeds: u64,
    check: impl Fn(u64) -> T + std::panic::RefUnwindSafe,
) -> Vec<T> {
    let run = |seed| match std::panic::catch_unwind(|| check(seed)) {
        Ok(outcome) => outcome,
        Err(_) => panic!("seed {seed} failed: see above"),
    };
    (0..seeds).map(run).collect()
}

pub(super) fn register(sim: &mut Sim, name: &str, queues: &[&str]) {
    sim.ok(Op::RegisterWorker(Registration {
        name: name.into(),
        ip: "10.0.0.1".into(),
        pool: DEFAULT_POOL.into(),
        queues: strings(queues),
        ..Default::default()
    }));
}

pub(super) fn create_projects(sim: &mut Sim, projects: &[String]) {
    for name in projects.iter().cloned() {
        let settings = Default::default();
        sim.ok(Op::CreateProject { name, settings });
    }
}

/// A round-robin queue of the default pool, limited in run concurrency alone.
pub(super) fn create(sim: &mut Sim, queue: &str, priority: u8, run_concurrency: u32) {
    let spec = QueueSpec {
        depth: 0,
        priority,
        run_concurrency,
        ..Default::default()
    };
    let (name, pool) = (queue.into(), DEFAULT_POOL.into());
    sim.ok(Op::CreateQueue { name, pool, spec });
}
