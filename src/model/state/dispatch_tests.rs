//! Property tests of the dispatcher and of leases over random states, each
//! replayable from its seed: limits, pools and selectors, strict priority and
//! round-robin against a brute-force reference, shares within one, each
//! project's queue order, fencing and expiry, and a deterministic replay.
//!
//! The reference here is deliberately slow and plain; it must never call into
//! `dispatch`, or it would check the dispatcher against itself.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::{State, DEFAULT_POOL, DEFAULT_QUEUE};
use crate::model::limits::DISPATCH_LOOKAHEAD;
use crate::model::spec::{ClusterSelector, Fairness, QueueSpec, QueueState, Resources};
use crate::model::worker::{HeartbeatReport, HeldTask, Registration, Worker, WorkerState};
use crate::model::{
    Command, ErrorKind, ModelError, MoveTo, NewTask, Op, Queue, Reply, Response, Stamp, Task,
    TaskState, Write,
};

/// Random states per property.
const SEEDS: u64 = 300;
/// Random steps after building a state.
const STEPS: usize = 80;

/// A state under test, its stamped clock and what the checks need to remember.
struct Sim {
    s: State,
    rng: StdRng,
    now_ms: u64,
    /// Every command applied, with its response: the log to replay.
    log: Vec<(Command, Response)>,
    /// Every (task, token) ever leased, to send stale ones back.
    leased: Vec<(u64, u64)>,
    max_token: u64,
    stats: Stats,
}

/// Counts that show the checks ran at all.
#[derive(Default, Debug)]
struct Stats {
    leases: u64,
    picks: u64,
    /// Leases compared with the reference (the lookahead could not matter).
    compared: u64,
    stale: u64,
    expired: u64,
}

impl Sim {
    fn new(seed: u64) -> Self {
        Self {
            s: State::new(),
            rng: StdRng::seed_from_u64(seed),
            now_ms: 1_000,
            log: Vec::new(),
            leased: Vec::new(),
            max_token: 0,
            stats: Stats::default(),
        }
    }

    /// Stamps `op` with the clock and a random seed, and applies it.
    fn apply(&mut self, op: Op) -> Result<Reply, ModelError> {
        let cmd = Command {
            stamp: Stamp {
                now_ms: self.now_ms,
                seed: self.rng.random(),
            },
            write: Write {
                idempotency_key: format!("k{}", self.log.len()),
                actor: "prop".into(),
                op,
            },
        };
        let r = self.s.apply(&cmd, &mut Vec::new());
        assert!(!r.replayed, "every key is new");
        self.log.push((cmd, r.clone()));
        r.result
    }

    fn ok(&mut self, op: Op) -> Reply {
        let what = format!("{op:?}");
        self.apply(op)
            .unwrap_or_else(|e| panic!("{what} refused: {e:?}"))
    }

    fn lease(&mut self, worker: &str, max_tasks: u32, ttl_ms: u64) -> Vec<(u64, u64, u64)> {
        let op = Op::LeaseTasks {
            worker: worker.into(),
            max_tasks,
            ttl_ms,
        };
        match self.ok(op) {
            Reply::Leased { leases } => leases,
            other => panic!("a lease answered {other:?}"),
        }
    }

    /// Ids of tasks in `state`, by id.
    fn tasks_in(&self, state: TaskState) -> Vec<u64> {
        let all = self.s.tasks_after(0);
        all.filter(|t| t.state == state).map(|t| t.id).collect()
    }
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

/// A non-empty random subset of `of`, in random order.
fn subset(rng: &mut StdRng, of: &[String]) -> Vec<String> {
    let mut v: Vec<String> = of.iter().filter(|_| rng.random_bool(0.5)).cloned().collect();
    if v.is_empty() {
        v.push(of.choose(rng).expect("not empty").clone());
    }
    v.shuffle(rng);
    v
}

/// Random amounts of `cpu` and `gpu`, each present with its probability.
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

fn random_spec(rng: &mut StdRng, clusters: &[String]) -> QueueSpec {
    let limit = |rng: &mut StdRng, max| match rng.random_bool(0.5) {
        true => 0,
        false => rng.random_range(1..=max),
    };
    QueueSpec {
        clusters: match rng.random_bool(0.5) {
            true => ClusterSelector::All,
            false => ClusterSelector::Only(subset(rng, clusters).into_iter().collect()),
        },
        run_concurrency: limit(rng, 3),
        action_concurrency: limit(rng, 4),
        depth: 0,
        priority: *[10, 50, 50, 90].choose(rng).expect("not empty"),
        fairness: match rng.random_bool(0.5) {
            true => Fairness::RoundRobin,
            false => Fairness::ShuffleInterleave,
        },
        quota: resources(rng, (0.4, 8), (0.3, 3)),
        ..Default::default()
    }
}

/// Names of the queues the random states create (not the default one).
fn test_queues(s: &State) -> Vec<(String, String)> {
    let qs = s.queues().filter(|q| q.name != DEFAULT_QUEUE);
    qs.map(|q| (q.name.clone(), q.pool.clone())).collect()
}

fn random_registration(sim: &mut Sim, i: usize) -> Registration {
    let queues = test_queues(&sim.s);
    let rng = &mut sim.rng;
    let pool = queues.choose(rng).expect("queues exist").1.clone();
    let in_pool: Vec<String> = queues.iter().filter(|q| q.1 == pool).map(|q| q.0.clone());
    let in_pool = in_pool.collect::<Vec<_>>();
    let clusters: Vec<String> = sim.s.pool(&pool).expect("pool").clusters.iter().cloned().collect();
    Registration {
        name: format!("w{i}"),
        ip: "10.0.0.1".into(),
        cluster: match rng.random_bool(0.2) {
            true => String::new(),
            false => clusters.choose(rng).expect("clusters").clone(),
        },
        pool,
        queues: subset(rng, &in_pool),
        capacity: match rng.random_bool(0.3) {
            true => Resources::new(),
            false => resources(rng, (1.0, 10), (0.7, 3)),
        },
        slots: rng.random_range(0..=4),
    }
}
