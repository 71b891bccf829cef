//! Properties over random command sequences: after every apply the
//! invariants hold, a refusal changes nothing, the same log gives the same
//! state and responses, and a state reloaded from its changed records equals
//! the original.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::harness::for_seeds;
use super::steps::run_random;
use super::{batch, cmd};
use crate::model::state::{Key, State};
use crate::model::{MoveTo, NewTask, Op, ProjectSettings, Reply, Write};

/// One random command over a small universe of names, so that commands
/// collide: every op kind, valid and invalid.
pub(crate) fn random_op(rng: &mut StdRng, state: &State) -> Op {
    let next_task = state.meta().next_task_id;
    // Often a task that holds a lease, with its current token.
    let held: Vec<(u64, u64)> = state
        .tasks_after(0)
        .filter(|t| t.state.in_flight())
        .map(|t| (t.id, t.fencing_token()))
        .collect();
    let (held_id, held_token) = match held.is_empty() || rng.random_bool(0.3) {
        true => (
            rng.random_range(1..next_task.max(2) + 2),
            rng.random_range(1..12),
        ),
        false => held[rng.random_range(0..held.len())],
    };
    let queues = ["default", "a", "b", "c"];
    let pools = ["default", "p1", "p2"];
    let projects = ["default", "ml", "web"];
    let mut pick = |xs: &[&str]| xs[rng.random_range(0..xs.len())].to_string();
    let queue = pick(&queues);
    let other = pick(&queues);
    let pool = pick(&pools);
    let project = pick(&projects);
    let cluster = format!("c{}", rng.random_range(0..3));
    let id = rng.random_range(1..next_task.max(2) + 2);
    let other_id = rng.random_range(1..next_task.max(2) + 2);
    let new_task = |rng: &mut StdRng| NewTask {
        queue: if rng.random_bool(0.2) {
            String::new()
        } else {
            queues[rng.random_range(0..queues.len())].into()
        },
        project: projects[rng.random_range(0..projects.len())].into(),
        run: format!("r{}", rng.random_range(0..3)),
        command: vec!["train".into()],
        ..Default::default()
    };
    match rng.random_range(0..46) {
        0 | 1 => Op::CreateQueue {
            name: queue,
            pool,
            spec: crate::model::spec::QueueSpec {
                depth: rng.random_range(0..8),
                ..Default::default()
            },
        },
        2 => Op::CreatePool {
            name: pool,
            clusters: vec![cluster],
        },
        3 => Op::AddCluster { pool, cluster },
        4 => Op::RemoveCluster { pool, cluster },
        5 => Op::DrainQueue { name: queue },
        6 => Op::ActivateQueue { name: queue },
        7 => Op::RenameQueue {
            name: queue,
            new_name: other,
        },
        8 => Op::ClearQueue { name: queue },
        9 => Op::DeleteQueue {
            name: queue,
            force: rng.random_bool(0.5),
        },
        10 => Op::CreateProject {
            name: project,
            settings: random_settings(rng, queue, other, 0.5, ""),
        },
        11 => Op::SetDefaultQueue { queue },
        12..=14 => Op::CancelTask {
            id,
            reason: String::new(),
        },
        15 => Op::DequeueTask {
            id,
            reason: "no longer needed".into(),
        },
        16..=22 => Op::MoveTask {
            id,
            to: match rng.random_range(0..8) {
                0 => MoveTo::Front,
                1 => MoveTo::Back,
                2 => MoveTo::Forward(rng.random_range(0..5)),
                3 => MoveTo::Backward(rng.random_range(0..5)),
                4 => MoveTo::Position(rng.random_range(0..10)),
                5 => MoveTo::Before(other_id),
                6 => MoveTo::After(other_id),
                _ => MoveTo::Queue(queue),
            },
        },
        26 | 27 => Op::RegisterWorker(crate::model::worker::Registration {
            name: format!("w{}", rng.random_range(0..3)),
            ip: "10.0.0.1".into(),
            pool,
            cluster: if rng.random_bool(0.5) {
                String::new()
            } else {
                format!("c{}", rng.random_range(0..3))
            },
            queues: vec![queue, other],
            capacity: if rng.random_bool(0.5) {
                Default::default()
            } else {
                [("gpu".to_string(), rng.random_range(0..3))].into()
            },
            slots: rng.random_range(0..3),
        }),
        28..=30 => Op::LeaseTasks {
            worker: format!("w{}", rng.random_range(0..3)),
            max_tasks: rng.random_range(1..4),
            ttl_ms: 5_000,
        },
        31 => Op::StartTask {
            id: held_id,
            fencing_token: held_token,
        },
        32 => Op::CompleteTask {
            id: held_id,
            fencing_token: held_token,
            succeeded: rng.random_bool(0.5),
            exit_code: Some(rng.random_range(0..3)),
            condition: String::new(),
        },
        33 => Op::ReleaseTask {
            id: held_id,
            fencing_token: held_token,
            reason: String::new(),
        },
        34 => Op::WorkerHeartbeats {
            reports: vec![crate::model::worker::HeartbeatReport {
                worker: format!("w{}", rng.random_range(0..3)),
                tasks: vec![crate::model::worker::HeldTask {
                    id: held_id,
                    fencing_token: held_token,
                    iteration: Some(3),
                }],
                // Usage now and then, from what is already drawn.
                usage: (held_token % 2 == 1).then(|| crate::model::worker::Usage {
                    cpu_permille: Some((held_id % 1000) as u32),
                    memory_used_bytes: Some(held_token << 20),
                    gpus: vec![crate::model::worker::GpuUsage {
                        index: (held_id % 2) as u32,
                        name: "g".into(),
                        util_permille: (held_token % 1000) as u32,
                        memory_used_bytes: held_id << 20,
                        memory_total_bytes: 1 << 34,
                    }],
                    at_ms: held_token,
                    ..Default::default()
                }),
            }],
            ttl_ms: 5_000,
        },
        35 => Op::ExpireLeases {
            worker_timeout_ms: 20_000,
        },
        36 => Op::UpdateQueue {
            expected_version: match state.queue(&queue) {
                Some(q) if rng.random_bool(0.8) => q.version,
                _ => rng.random_range(0..4),
            },
            name: queue,
            pool: rng.random_bool(0.3).then_some(pool),
            spec: crate::model::spec::QueueSpec {
                depth: rng.random_range(0..8),
                priority: rng.random_range(1..=100),
                action_concurrency: rng.random_range(0..3),
                ..Default::default()
            },
        },
        37 => Op::UpdateProject {
            expected_version: match state.project(&project) {
                Some(p) if rng.random_bool(0.8) => p.version,
                _ => rng.random_range(0..4),
            },
            name: project,
            settings: random_settings(rng, queue, other, 0.3, "edited"),
        },
        38 => Op::ReportProgress {
            id: held_id,
            fencing_token: held_token,
            iteration: rng.random_range(0..100),
        },
        23..=25 => Op::SubmitTasks {
            tasks: (0..rng.random_range(1..5)).map(|_| new_task(rng)).collect(),
        },
        39 => random_token_op(rng, project, pool),
        40 => random_retention_op(rng, queue),
        _ => Op::SubmitTasks {
            tasks: vec![new_task(rng)],
        },
    }
}

/// Retention rules short enough to let go within a random sequence (which
/// advances a second a command), a collect, or a worker's removal.
fn random_retention_op(rng: &mut StdRng, queue: String) -> Op {
    let age = |rng: &mut StdRng| rng.random_range(0..4) * 20_000;
    match rng.random_range(0..6) {
        0 => Op::SetRetention {
            age_ms: rng.random_bool(0.7).then(|| age(rng)),
            count: rng.random_bool(0.5).then(|| rng.random_range(0..5)),
            lost_worker_ttl_ms: Some(age(rng)),
        },
        1 => Op::SetQueueRetention {
            name: queue,
            age_ms: rng
                .random_bool(0.7)
                .then(|| rng.random_bool(0.8).then(|| age(rng))),
            count: Some(rng.random_bool(0.8).then(|| rng.random_range(0..5))),
        },
        2 => Op::RemoveWorker {
            name: format!("w{}", rng.random_range(0..3)),
            force: rng.random_bool(0.5),
        },
        _ => Op::CollectExpired,
    }
}

/// Creating a token (of any role, bound to `project` or `pool` as its role
/// needs, now and then a bootstrap one) or revoking one.
fn random_token_op(rng: &mut StdRng, project: String, pool: String) -> Op {
    use crate::model::token::Role;
    let name = format!("t{}", rng.random_range(0..3));
    if rng.random_bool(0.3) {
        return Op::RevokeToken { name };
    }
    let role = Role::ALL[rng.random_range(0..Role::ALL.len())];
    Op::CreateToken {
        name,
        role,
        projects: (role == Role::Submitter)
            .then_some(project)
            .into_iter()
            .collect(),
        pools: (role == Role::Worker).then_some(pool).into_iter().collect(),
        secret_sha256: vec![rng.random(); 32],
        ttl_ms: rng.random_range(0..3) * 60_000,
        bootstrap: rng.random_bool(0.1),
    }
}

/// A project's settings for `random_op`: maybe `queue` as its default, maybe
/// `other` as its only allowed queue (with probability `allowed`).
fn random_settings(
    rng: &mut StdRng,
    queue: String,
    other: String,
    allowed: f64,
    description: &str,
) -> ProjectSettings {
    ProjectSettings {
        default_queue: if rng.random_bool(0.5) {
            queue
        } else {
            String::new()
        },
        allowed_queues: if rng.random_bool(allowed) {
            [other].into()
        } else {
            Default::default()
        },
        max_queued_per_run: rng.random_range(0..4),
        description: description.into(),
    }
}

/// Rebuilds a state from the records an apply sequence changed, as storage
/// does: the final value of every changed key, deletions left out.
fn reload(a: &State, changed: &[Key]) -> State {
    let mut keys = changed.to_vec();
    keys.sort();
    keys.dedup();
    let mut reloaded = State::new();
    for key in keys {
        match key {
            Key::Meta => reloaded.load_meta(a.meta()),
            Key::Queue(id) => {
                if let Some(q) = a.queue_by_id(id) {
                    reloaded.load_queue(q.clone())
                }
            }
            Key::Pool(n) => reloaded.load_pool(a.pool(&n).unwrap().clone()),
            Key::Project(n) => reloaded.load_project(a.project(&n).unwrap().clone()),
            Key::Task(id) => {
                if let Some(t) = a.task(id) {
                    reloaded.load_task(t.clone())
                }
            }
            Key::OrgRetention => reloaded.load_org_retention(*a.retention()),
            Key::QueueRetention(id) => {
                if let Some(own) = a.queue_retention(id) {
                    reloaded.load_queue_retention(*own)
                }
            }
            Key::Idempotency(first_ms, k) => {
                if let Some(r) = a.idempotency(&k).filter(|r| r.first_ms == first_ms) {
                    reloaded.load_idempotency(r.clone())
                }
            }
            Key::Worker(n) => {
                if let Some(w) = a.worker(&n) {
                    reloaded.load_worker(w.clone())
                }
            }
            Key::HistoryTrack(e) => {
                if let Some(t) = a.history().track(&e) {
                    reloaded.load_history_track(e, t.clone())
                }
            }
            Key::QueueCounters(id) => {
                if let Some(c) = a.queue_counters(id) {
                    reloaded.load_queue_counters(id, c.clone())
                }
            }
            Key::Token(n) => {
                if let Some(t) = a.token(&n) {
                    reloaded.load_token(t.clone())
                }
            }
            Key::Body(..) | Key::HistoryRow(_) | Key::HistoryExpire { .. } => {}
        }
    }
    reloaded
}

/// The model without what every command changes, refused or not: the clock,
/// the idempotency records (a refusal is recorded under its key), and the
/// history, whose sweep runs at every command by the clock.
fn model_part(s: &State) -> State {
    let mut s = s.clone();
    s.clock_ms = 0;
    s.idempotency.clear();
    s.idempotency_by_time.clear();
    s.history = Default::default();
    s
}

/// Property test over random command sequences: after every apply the
/// invariants hold (counts match the contents, positions in each queue are a
/// permutation, no task is in two queues, the default pool, queue and
/// project exist and the default queue is active); a refused command
/// changes nothing; apply is deterministic; and a state rebuilt from its
/// changed records equals the original.
#[test]
fn random_sequences_keep_invariants_are_deterministic_and_reload_equal() {
    let mut succeeded = std::collections::BTreeSet::new();
    let mut refused = 0u64;
    let mut collected = 0u64;
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut run = |rng: &mut StdRng| {
            let mut s = State::new();
            let mut changed = vec![];
            let mut responses = vec![];
            for i in 0..300u64 {
                let key = format!("k{}", rng.random_range(0..250));
                // One entry in ten carries writes the leader coalesced.
                let c = if rng.random_ratio(1, 10) {
                    let writes = (0..rng.random_range(2..6))
                        .map(|_| Write {
                            idempotency_key: format!("k{}", rng.random_range(0..250)),
                            actor: "tester".into(),
                            op: random_op(rng, &s),
                        })
                        .collect();
                    batch(i * 1000, writes)
                } else {
                    cmd(i * 1000, &key, random_op(rng, &s))
                };
                let before = model_part(&s);
                let r = s.apply(&c, &mut changed);
                if r.result.is_ok() && !r.replayed {
                    succeeded.insert(c.to_string().split(' ').next().unwrap().to_string());
                }
                if let Ok(Reply::Collected { tasks, .. }) = r.result {
                    collected += tasks;
                }
                if r.result.is_err() {
                    assert!(model_part(&s) == before, "refused {c} changed the model");
                    refused += 1;
                }
                responses.push(r);
                s.check_invariants();
            }
            (s, responses, changed)
        };
        let (a, ra, changed) = run(&mut StdRng::seed_from_u64(seed));
        let (b, rb, _) = run(&mut rng);
        assert_eq!(a, b, "seed {seed}");
        assert_eq!(ra, rb, "seed {seed}");
        let reloaded = reload(&a, &changed);
        reloaded.check_invariants();
        assert_eq!(a, reloaded, "seed {seed}");
    }
    // The universe is small enough that every kind of op succeeds sometimes.
    let kinds = [
        "create-queue",
        "submit",
        "create-pool",
        "add-cluster",
        "remove-cluster",
        "drain-queue",
        "activate-queue",
        "rename-queue",
        "clear-queue",
        "delete-queue",
        "create-project",
        "set-default-queue",
        "cancel-task",
        "dequeue-task",
        "move-task",
        "register-worker",
        "lease-tasks",
        "start-task",
        "complete-task",
        "release-task",
        "heartbeats",
        "expire-leases",
        "update-queue",
        "update-project",
        "report-progress",
        "batch",
        "set-retention",
        "set-queue-retention",
        "collect-expired",
        "remove-worker",
    ];
    for kind in kinds {
        assert!(
            succeeded.contains(kind),
            "no {kind} ever succeeded: {succeeded:?}"
        );
    }
    assert!(refused > 1000, "only {refused} refusals");
    assert!(collected > 20, "collects removed only {collected} tasks");
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
