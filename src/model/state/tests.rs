use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use std::sync::Arc;

use super::*;
use crate::model::{ErrorKind, MoveTo, NewTask, ProjectSettings, Stamp, Write};

pub(crate) fn cmd(now_ms: u64, key: &str, op: Op) -> Command {
    Command {
        stamp: Stamp { now_ms, seed: 0 },
        write: Write {
            idempotency_key: key.to_string(),
            actor: "tester".to_string(),
            op,
        },
    }
}

pub(crate) fn submit(queue: &str) -> Op {
    Op::SubmitTasks {
        tasks: vec![NewTask {
            queue: queue.into(),
            command: vec!["echo".into(), "hi".into()],
            ..Default::default()
        }],
    }
}

/// Queued tasks of a queue, by name.
fn queued(s: &State, queue: &str) -> usize {
    s.queued(s.queue(queue).unwrap().id)
}

#[test]
fn the_default_queue_exists_from_the_start() {
    let s = State::new();
    assert!(s.queue("default").is_some());
    assert_eq!(queued(&s, "default"), 0);
    s.check_invariants();
}

#[test]
fn submit_assigns_monotonic_ids_in_queue_order() {
    let mut s = State::new();
    let mut changed = vec![];
    let r = s.apply(
        &cmd(
            10,
            "q",
            Op::CreateQueue {
                name: "gpu".into(),
                pool: "default".into(),
                spec: Default::default(),
            },
        ),
        &mut changed,
    );
    assert_eq!(r.result, Ok(Reply::QueueCreated { name: "gpu".into() }));
    for i in 0..3 {
        let r = s.apply(&cmd(11 + i, &format!("k{i}"), submit("gpu")), &mut changed);
        assert_eq!(r.result, Ok(Reply::TasksSubmitted { ids: vec![i + 1] }));
    }
    assert_eq!(queued(&s, "gpu"), 3);
    assert_eq!(s.next_task(s.queue("gpu").unwrap().id), Some(1));
    assert_eq!(s.position(s.task(3).unwrap()), Some(2));
    assert!(changed.contains(&Key::Task(3)));
    assert!(changed.contains(&Key::Queue(s.queue("gpu").unwrap().id)));
}

#[test]
fn a_retried_key_is_applied_once_and_answers_the_first_outcome() {
    let mut s = State::new();
    let mut changed = vec![];
    let first = s.apply(&cmd(1, "same", submit("default")), &mut changed);
    let again = s.apply(&cmd(2, "same", submit("default")), &mut changed);
    assert_eq!(first.result, again.result);
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(queued(&s, "default"), 1);
}

#[test]
fn refusals_name_the_field_and_change_nothing_but_the_key() {
    let mut s = State::new();
    let mut changed = vec![];
    let r = s.apply(&cmd(1, "a", submit("nope")), &mut changed);
    let e = r.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.field.as_deref(), Some("queue"));
    assert_eq!(s.tasks.len(), 0);
    let r = s.apply(
        &cmd(
            2,
            "b",
            Op::CreateQueue {
                name: "default".into(),
                pool: "default".into(),
                spec: Default::default(),
            },
        ),
        &mut changed,
    );
    assert_eq!(r.result.unwrap_err().kind, ErrorKind::AlreadyExists);
    let r = s.apply(
        &cmd(
            3,
            "c",
            Op::CreateQueue {
                name: "bad name".into(),
                pool: "default".into(),
                spec: Default::default(),
            },
        ),
        &mut changed,
    );
    assert_eq!(r.result.unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(s.queues().count(), 1);
}

/// A coalesced entry applies its writes one by one, in order, each under
/// its own key: one refused leaves the others applied, a retried key answers
/// its first outcome, and the entry itself is not remembered.
#[test]
fn coalesced_writes_apply_on_their_own_in_order() {
    let mut s = State::new();
    let mut changed = vec![];
    let write = |key: &str, op: Op| Write {
        idempotency_key: key.into(),
        actor: "tester".into(),
        op,
    };
    let first = s.apply(&cmd(1, "a", submit("default")), &mut changed);
    let each = Op::Each(vec![
        write("b", submit("default")),
        write("c", submit("nope")),
        write("a", submit("default")),
        write("d", submit("default")),
    ]);
    let r = s.apply(&cmd(2, "coalesced", each), &mut changed);
    let Ok(Reply::Each(rs)) = r.result else {
        panic!("{r:?}");
    };
    assert_eq!(rs.len(), 4);
    assert_eq!(rs[0].result, Ok(Reply::TasksSubmitted { ids: vec![2] }));
    assert_eq!(rs[1].result.as_ref().unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        rs[2].result, first.result,
        "a retried key answers the first outcome"
    );
    assert!(rs[2].replayed);
    assert_eq!(rs[3].result, Ok(Reply::TasksSubmitted { ids: vec![3] }));
    assert_eq!(queued(&s, "default"), 3);
    assert!(s.idempotency("c").is_some(), "a refusal is remembered too");
    assert!(s.idempotency("coalesced").is_none());
    // Coalesced entries do not nest.
    let nested = Op::Each(vec![write("e", Op::Each(vec![]))]);
    let r = s.apply(&cmd(3, "coalesced", nested), &mut changed);
    assert_eq!(r.result.unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(queued(&s, "default"), 3);
    s.check_invariants();
}

#[test]
fn idempotency_keys_expire_after_the_retention() {
    let mut s = State::new();
    let mut changed = vec![];
    s.apply(&cmd(1_000, "old", submit("default")), &mut changed);
    changed.clear();
    let later = 1_000 + IDEMPOTENCY_RETENTION_MS + 1;
    s.apply(&cmd(later, "new", submit("default")), &mut changed);
    assert!(s.idempotency("old").is_none());
    assert!(changed.contains(&Key::Idempotency(1_000, "old".into())));
    // The key may now be used again, and makes a new task.
    let r = s.apply(&cmd(later + 1, "old", submit("default")), &mut changed);
    assert!(!r.replayed);
    assert_eq!(queued(&s, "default"), 3);
}

#[test]
fn the_clock_never_goes_backwards() {
    let mut s = State::new();
    let mut changed = vec![];
    s.apply(&cmd(500, "a", submit("default")), &mut changed);
    s.apply(&cmd(100, "b", submit("default")), &mut changed);
    assert_eq!(s.meta().clock_ms, 500);
    assert_eq!(s.task(2).unwrap().created_ms, 500);
}

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
                usage: None,
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
        _ => Op::SubmitTasks {
            tasks: vec![new_task(rng)],
        },
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
            Key::Task(id) => reloaded.load_task(a.task(id).unwrap().clone()),
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
            Key::Body(..) => {}
        }
    }
    reloaded
}

/// The model without what every command changes, refused or not: the clock,
/// and the idempotency records (a refusal is recorded under its key).
fn model_part(s: &State) -> State {
    let mut s = s.clone();
    s.clock_ms = 0;
    s.idempotency.clear();
    s.idempotency_by_time.clear();
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
                    cmd(i * 1000, "coalesced", Op::Each(writes))
                } else {
                    cmd(i * 1000, &key, random_op(rng, &s))
                };
                let before = model_part(&s);
                let r = s.apply(&c, &mut changed);
                if r.result.is_ok() && !r.replayed {
                    succeeded.insert(c.to_string().split(' ').next().unwrap().to_string());
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
        "coalesced",
    ];
    for kind in kinds {
        assert!(
            succeeded.contains(kind),
            "no {kind} ever succeeded: {succeeded:?}"
        );
    }
    assert!(refused > 1000, "only {refused} refusals");
}

#[test]
fn pools_hold_clusters_and_queues_live_in_one() {
    let mut s = State::new();
    let mut changed = vec![];
    let create = Op::CreatePool {
        name: "gpu".into(),
        clusters: vec!["a100".into(), "h100".into(), "a100".into()],
    };
    assert_eq!(
        s.apply(&cmd(1, "p", create), &mut changed).result,
        Ok(Reply::Pool { name: "gpu".into() })
    );
    assert_eq!(s.pool("gpu").unwrap().clusters.len(), 2);
    let add = |c: &str| Op::AddCluster {
        pool: "gpu".into(),
        cluster: c.into(),
    };
    assert!(s
        .apply(&cmd(2, "a", add("b200")), &mut changed)
        .result
        .is_ok());
    let e = s
        .apply(&cmd(3, "b", add("b200")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    let remove = Op::RemoveCluster {
        pool: "gpu".into(),
        cluster: "nope".into(),
    };
    let e = s
        .apply(&cmd(4, "c", remove), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::NotFound, Some("cluster"))
    );
    let queue = |name: &str, pool: &str| Op::CreateQueue {
        name: name.into(),
        pool: pool.into(),
        spec: Default::default(),
    };
    let e = s
        .apply(&cmd(5, "d", queue("q", "nope")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::NotFound, Some("pool"))
    );
    assert!(s
        .apply(&cmd(6, "e", queue("q", "gpu")), &mut changed)
        .result
        .is_ok());
    assert_eq!(s.queue("q").unwrap().pool, "gpu");
    assert_eq!(s.queues_in_pool("gpu"), 1);
    assert_eq!(s.queues_per_pool().get("gpu"), Some(&1));
    assert_eq!(s.queues_per_pool().get("default"), Some(&1));
    assert_eq!(s.pool("gpu").unwrap().version, 2);
    s.check_invariants();
}

#[test]
fn queue_settings_apply_depth_and_cluster_selectors() {
    use crate::model::spec::{ClusterSelector, QueueSpec};
    let mut s = State::new();
    let mut changed = vec![];
    let pool = Op::CreatePool {
        name: "gpu".into(),
        clusters: vec!["a100".into()],
    };
    s.apply(&cmd(1, "p", pool), &mut changed);
    let queue = |name: &str, clusters: &[&str], depth: u64| Op::CreateQueue {
        name: name.into(),
        pool: "gpu".into(),
        spec: QueueSpec {
            clusters: if clusters.is_empty() {
                ClusterSelector::All
            } else {
                ClusterSelector::Only(clusters.iter().map(|c| c.to_string()).collect())
            },
            depth,
            ..QueueSpec::default()
        },
    };
    let e = s
        .apply(&cmd(2, "q1", queue("q", &["h100"], 2)), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::InvalidArgument, Some("clusters"))
    );
    assert!(s
        .apply(&cmd(3, "q2", queue("q", &["a100"], 2)), &mut changed)
        .result
        .is_ok());
    assert_eq!(s.queue("q").unwrap().spec.depth, 2);

    for i in 0..2 {
        let r = s.apply(&cmd(4 + i, &format!("s{i}"), submit("q")), &mut changed);
        assert!(r.result.is_ok());
    }
    let e = s
        .apply(&cmd(9, "s9", submit("q")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::ResourceExhausted, Some("queue"))
    );
    assert!(e.message.contains("depth 2"), "{e}");
    assert_eq!(queued(&s, "q"), 2);

    let remove = Op::RemoveCluster {
        pool: "gpu".into(),
        cluster: "a100".into(),
    };
    let e = s
        .apply(&cmd(10, "r", remove), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
    assert!(
        e.message.contains("queue \"q\" selects cluster \"a100\""),
        "{e}"
    );
    // Depth 0 is unlimited.
    assert!(s
        .apply(&cmd(11, "q3", queue("big", &[], 0)), &mut changed)
        .result
        .is_ok());
    for i in 0..20 {
        assert!(s
            .apply(&cmd(12 + i, &format!("b{i}"), submit("big")), &mut changed)
            .result
            .is_ok());
    }
    s.check_invariants();
}

#[test]
fn draining_stops_submissions_and_activate_resumes_them() {
    let mut s = State::new();
    let mut changed = vec![];
    let create = Op::CreateQueue {
        name: "q".into(),
        pool: "default".into(),
        spec: Default::default(),
    };
    s.apply(&cmd(1, "c", create), &mut changed);
    s.apply(&cmd(2, "s1", submit("q")), &mut changed);
    let drain = |name: &str| Op::DrainQueue { name: name.into() };
    let activate = |name: &str| Op::ActivateQueue { name: name.into() };
    assert!(s
        .apply(&cmd(3, "d", drain("q")), &mut changed)
        .result
        .is_ok());
    assert_eq!(s.queue("q").unwrap().state.as_str(), "draining");
    let e = s
        .apply(&cmd(4, "s2", submit("q")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::FailedPrecondition, Some("queue"))
    );
    let e = s
        .apply(&cmd(5, "d2", drain("q")), &mut changed)
        .result
        .unwrap_err();
    assert!(e.message.contains("already draining"), "{e}");
    assert!(s
        .apply(&cmd(6, "a", activate("q")), &mut changed)
        .result
        .is_ok());
    assert!(s
        .apply(&cmd(7, "s3", submit("q")), &mut changed)
        .result
        .is_ok());
    let e = s
        .apply(&cmd(8, "a2", activate("q")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);

    // An empty queue is drained at once; the default queue never drains.
    let create = Op::CreateQueue {
        name: "empty".into(),
        pool: "default".into(),
        spec: Default::default(),
    };
    s.apply(&cmd(9, "c2", create), &mut changed);
    s.apply(&cmd(10, "d3", drain("empty")), &mut changed);
    assert_eq!(s.queue("empty").unwrap().state.as_str(), "drained");
    let e = s
        .apply(&cmd(11, "d4", drain("default")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
    let e = s
        .apply(&cmd(12, "d5", drain("nope")), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    s.check_invariants();
}

#[test]
fn updates_check_the_version_and_keep_the_pool() {
    use crate::model::spec::QueueSpec;
    let mut s = State::new();
    let mut changed = vec![];
    let create = Op::CreateQueue {
        name: "q".into(),
        pool: "default".into(),
        spec: QueueSpec::default(),
    };
    s.apply(&cmd(1, "c", create), &mut changed);
    let version = s.queue("q").unwrap().version;
    let update = |pool: Option<&str>, priority: u8, expected_version: u64| Op::UpdateQueue {
        name: "q".into(),
        pool: pool.map(str::to_string),
        spec: QueueSpec {
            priority,
            ..QueueSpec::default()
        },
        expected_version,
    };
    let r = s.apply(&cmd(2, "u1", update(None, 90, version)), &mut changed);
    assert_eq!(r.result, Ok(Reply::QueueChanged { name: "q".into() }));
    assert_eq!(s.queue("q").unwrap().spec.priority, 90);
    // A second edit based on the old version loses, and changes nothing.
    let e = s
        .apply(&cmd(3, "u2", update(None, 10, version)), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Aborted, Some("expected_version"))
    );
    assert_eq!(s.queue("q").unwrap().spec.priority, 90);
    let now = s.queue("q").unwrap().version;
    let e = s
        .apply(&cmd(4, "u3", update(Some("gpu"), 10, now)), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::FailedPrecondition, Some("pool"))
    );
    let r = s.apply(
        &cmd(5, "u4", update(Some("default"), 10, now)),
        &mut changed,
    );
    assert!(r.result.is_ok());
    let e = s
        .apply(&cmd(6, "u5", update(None, 0, now + 1)), &mut changed)
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    s.check_invariants();
}

/// Applies `op` with a fresh key and returns the result.
fn run_op(s: &mut State, op: Op) -> Result<Reply, crate::model::ModelError> {
    let key = format!("t{}", s.meta().clock_ms + 1);
    let now = s.meta().clock_ms + 1;
    s.apply(&cmd(now, &key, op), &mut vec![]).result
}

fn task_to(queue: &str, project: &str, run: &str) -> NewTask {
    NewTask {
        queue: queue.into(),
        project: project.into(),
        run: run.into(),
        command: vec!["train".into()],
        ..Default::default()
    }
}

fn new_queue(s: &mut State, name: &str, pool: &str, depth: u64) {
    let spec = crate::model::spec::QueueSpec {
        depth,
        ..Default::default()
    };
    let op = Op::CreateQueue {
        name: name.into(),
        pool: pool.into(),
        spec,
    };
    run_op(s, op).unwrap();
}

fn ids(r: Result<Reply, crate::model::ModelError>) -> Vec<u64> {
    match r.unwrap() {
        Reply::TasksSubmitted { ids } => ids,
        other => panic!("not a submit: {other:?}"),
    }
}

/// Queued ids of a queue in order.
fn order(s: &State, queue: &str) -> Vec<u64> {
    s.queued_range(s.queue(queue).unwrap().id, 0, usize::MAX)
}

#[test]
fn a_batch_is_all_or_nothing_and_counts_itself_against_the_depth() {
    let mut s = State::new();
    new_queue(&mut s, "small", "default", 3);
    let bad = Op::SubmitTasks {
        tasks: vec![task_to("small", "", ""), task_to("nope", "", "")],
    };
    let e = run_op(&mut s, bad).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.field.as_deref(), Some("tasks[1].queue"));
    assert_eq!(queued(&s, "small"), 0);
    assert!(s.task(1).is_none(), "nothing was created");

    let over = Op::SubmitTasks {
        tasks: (0..4).map(|_| task_to("small", "", "")).collect(),
    };
    let e = run_op(&mut s, over).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceExhausted);
    assert_eq!(e.field.as_deref(), Some("tasks[3].queue"));
    let fits = Op::SubmitTasks {
        tasks: (0..3).map(|_| task_to("small", "", "")).collect(),
    };
    assert_eq!(ids(run_op(&mut s, fits)), vec![1, 2, 3]);
    assert_eq!(order(&s, "small"), vec![1, 2, 3]);
}

/// The tasks of a batch share one key in memory, and again once reloaded
/// from their encoded records in id order, as storage loads them.
#[test]
fn a_batch_shares_its_key_in_memory_and_after_a_reload() {
    let mut s = State::new();
    let mut changed = vec![];
    let batch = Op::SubmitTasks {
        tasks: (0..3).map(|_| task_to("default", "", "")).collect(),
    };
    s.apply(&cmd(1, "batch-key", batch), &mut changed);
    s.apply(&cmd(2, "alone-key", submit("default")), &mut changed);
    let check = |s: &State| {
        let key = |id| s.task(id).unwrap().idempotency_key.clone();
        assert_eq!(
            (&*key(1), &*key(3), &*key(4)),
            ("batch-key", "batch-key", "alone-key")
        );
        assert!(Arc::ptr_eq(&key(1), &key(2)) && Arc::ptr_eq(&key(2), &key(3)));
        assert!(!Arc::ptr_eq(&key(3), &key(4)));
    };
    check(&s);
    let mut reloaded = State::new();
    for id in 1..=4 {
        let record = crate::codec::encode(s.task(id).unwrap());
        reloaded.load_task(crate::codec::decode(&record).unwrap());
    }
    check(&reloaded);
}

#[test]
fn queue_choice_goes_project_default_then_organisation_default() {
    let mut s = State::new();
    new_queue(&mut s, "org", "default", 0);
    new_queue(&mut s, "ml-q", "default", 0);
    let project = |default_queue: &str| Op::CreateProject {
        name: "ml".into(),
        settings: ProjectSettings {
            default_queue: default_queue.into(),
            ..Default::default()
        },
    };
    run_op(&mut s, project("ml-q")).unwrap();
    let id = ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("", "ml", "")],
        },
    ))[0];
    assert_eq!(s.task(id).unwrap().queue, s.queue("ml-q").unwrap().id);

    run_op(
        &mut s,
        Op::SetDefaultQueue {
            queue: "org".into(),
        },
    )
    .unwrap();
    let id = ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("", "", "")],
        },
    ))[0];
    assert_eq!(s.task(id).unwrap().queue, s.queue("org").unwrap().id);
    assert_eq!(s.task(id).unwrap().project, "default");

    let e = run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("", "ghost", "")],
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::NotFound, Some("project"))
    );
    // The organisation's default queue cannot be deleted.
    let e = run_op(
        &mut s,
        Op::DeleteQueue {
            name: "org".into(),
            force: true,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
}

#[test]
fn allowed_queues_and_the_per_run_limit_are_enforced() {
    let mut s = State::new();
    new_queue(&mut s, "a", "default", 0);
    new_queue(&mut s, "b", "default", 0);
    let op = Op::CreateProject {
        name: "ml".into(),
        settings: ProjectSettings {
            default_queue: "a".into(),
            allowed_queues: ["a".to_string()].into(),
            max_queued_per_run: 2,
            description: String::new(),
        },
    };
    run_op(&mut s, op).unwrap();
    let e = run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("b", "ml", "")],
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::PermissionDenied, Some("queue"))
    );
    assert!(e.message.contains("allowed queues are a"), "{e}");

    let two = (0..2).map(|_| task_to("a", "ml", "r1")).collect();
    let first = ids(run_op(&mut s, Op::SubmitTasks { tasks: two }));
    let e = run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("a", "ml", "r1")],
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::ResourceExhausted, Some("run"))
    );
    // Another run, or the same run once a task has left the queue, fits.
    run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("a", "ml", "r2")],
        },
    )
    .unwrap();
    run_op(
        &mut s,
        Op::CancelTask {
            id: first[0],
            reason: String::new(),
        },
    )
    .unwrap();
    run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("a", "ml", "r1")],
        },
    )
    .unwrap();
    // A move into a queue the project may not use is refused too.
    let e = run_op(
        &mut s,
        Op::MoveTask {
            id: first[1],
            to: MoveTo::Queue("b".into()),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    // A queue a project names cannot be deleted.
    let e = run_op(
        &mut s,
        Op::DeleteQueue {
            name: "a".into(),
            force: true,
        },
    )
    .unwrap_err();
    assert!(e.message.contains("project \"ml\""), "{e}");
}

#[test]
fn moves_reorder_a_queue_like_clearml() {
    let mut s = State::new();
    let all = Op::SubmitTasks {
        tasks: (0..5).map(|_| task_to("default", "", "")).collect(),
    };
    assert_eq!(ids(run_op(&mut s, all)), vec![1, 2, 3, 4, 5]);
    let mut mv = |id, to| run_op(&mut s, Op::MoveTask { id, to }).map(|_| ());
    mv(4, MoveTo::Front).unwrap();
    mv(1, MoveTo::Back).unwrap();
    mv(5, MoveTo::Forward(2)).unwrap();
    mv(4, MoveTo::Backward(1)).unwrap();
    mv(3, MoveTo::Position(0)).unwrap();
    mv(2, MoveTo::Position(99)).unwrap();
    assert!(mv(2, MoveTo::Before(2)).is_err());
    assert_eq!(
        mv(2, MoveTo::After(77)).unwrap_err().kind,
        ErrorKind::NotFound
    );
    mv(1, MoveTo::Before(4)).unwrap();
    mv(5, MoveTo::After(2)).unwrap();
    assert_eq!(order(&s, "default"), vec![3, 1, 4, 2, 5]);
    for (i, id) in [3, 1, 4, 2, 5].into_iter().enumerate() {
        assert_eq!(s.position(s.task(id).unwrap()), Some(i));
    }
}

#[test]
fn moves_to_another_queue_keep_pool_state_and_depth() {
    let mut s = State::new();
    run_op(
        &mut s,
        Op::CreatePool {
            name: "other".into(),
            clusters: vec![],
        },
    )
    .unwrap();
    new_queue(&mut s, "far", "other", 0);
    new_queue(&mut s, "near", "default", 1);
    let id = ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("default", "", "")],
        },
    ))[0];
    let to = |q: &str| Op::MoveTask {
        id,
        to: MoveTo::Queue(q.into()),
    };
    let e = run_op(&mut s, to("far")).unwrap_err();
    assert!(e.message.contains("never crosses pools"), "{e}");
    run_op(&mut s, to("near")).unwrap();
    let t = s.task(id).unwrap();
    assert_eq!(
        (t.queue, s.position(t)),
        (s.queue("near").unwrap().id, Some(0))
    );
    assert!(t
        .timeline
        .last()
        .unwrap()
        .reason
        .contains("moved from queue \"default\""));
    assert_eq!(queued(&s, "default"), 0);
    // near is full (depth 1), and a drained queue takes nothing.
    let other = ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("default", "", "")],
        },
    ))[0];
    let e = run_op(
        &mut s,
        Op::MoveTask {
            id: other,
            to: MoveTo::Queue("near".into()),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceExhausted);
    run_op(&mut s, to("default")).unwrap();
    run_op(
        &mut s,
        Op::DrainQueue {
            name: "near".into(),
        },
    )
    .unwrap();
    assert_eq!(s.queue("near").unwrap().state, QueueState::Drained);
    let e = run_op(&mut s, to("near")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
}

#[test]
fn cancel_and_dequeue_record_the_timeline_and_settle_a_draining_queue() {
    let mut s = State::new();
    new_queue(&mut s, "q", "default", 0);
    let two = Op::SubmitTasks {
        tasks: (0..2).map(|_| task_to("q", "", "")).collect(),
    };
    let ids = ids(run_op(&mut s, two));
    run_op(&mut s, Op::DrainQueue { name: "q".into() }).unwrap();
    assert_eq!(s.queue("q").unwrap().state, QueueState::Draining);
    run_op(
        &mut s,
        Op::CancelTask {
            id: ids[0],
            reason: "wrong lr".into(),
        },
    )
    .unwrap();
    let t = s.task(ids[0]).unwrap();
    assert_eq!(t.state, TaskState::Canceled);
    assert_eq!(t.condition.as_deref(), Some("wrong lr"));
    let states: Vec<_> = t
        .timeline
        .iter()
        .map(|e| (e.state, e.actor.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            (TaskState::Queued, "tester"),
            (TaskState::Canceled, "tester")
        ]
    );
    let e = run_op(
        &mut s,
        Op::CancelTask {
            id: ids[0],
            reason: String::new(),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
    run_op(
        &mut s,
        Op::DequeueTask {
            id: ids[1],
            reason: String::new(),
        },
    )
    .unwrap();
    assert_eq!(s.task(ids[1]).unwrap().state, TaskState::Dequeued);
    assert_eq!(s.queue("q").unwrap().state, QueueState::Drained);
}

#[test]
fn rename_clear_and_delete_keep_tasks_and_protect_the_default_queue() {
    let mut s = State::new();
    new_queue(&mut s, "old", "default", 0);
    let three = Op::SubmitTasks {
        tasks: (0..3).map(|_| task_to("old", "", "")).collect(),
    };
    let ids = ids(run_op(&mut s, three));
    run_op(
        &mut s,
        Op::RenameQueue {
            name: "old".into(),
            new_name: "new".into(),
        },
    )
    .unwrap();
    assert!(s.queue("old").is_none());
    assert_eq!(order(&s, "new"), ids);
    let rename = Op::RenameQueue {
        name: "default".into(),
        new_name: "x".into(),
    };
    assert_eq!(
        run_op(&mut s, rename).unwrap_err().kind,
        ErrorKind::FailedPrecondition
    );
    let delete = Op::DeleteQueue {
        name: "default".into(),
        force: true,
    };
    assert_eq!(
        run_op(&mut s, delete).unwrap_err().kind,
        ErrorKind::FailedPrecondition
    );
    let taken = Op::RenameQueue {
        name: "new".into(),
        new_name: "default".into(),
    };
    assert_eq!(
        run_op(&mut s, taken).unwrap_err().kind,
        ErrorKind::AlreadyExists
    );

    let e = run_op(
        &mut s,
        Op::DeleteQueue {
            name: "new".into(),
            force: false,
        },
    )
    .unwrap_err();
    assert!(e.message.contains("3 queued tasks"), "{e}");
    run_op(
        &mut s,
        Op::DequeueTask {
            id: ids[0],
            reason: String::new(),
        },
    )
    .unwrap();
    assert_eq!(
        run_op(&mut s, Op::ClearQueue { name: "new".into() }),
        Ok(Reply::QueueCleared {
            name: "new".into(),
            dequeued: 2,
            remaining: 0
        })
    );
    new_queue(&mut s, "gone", "default", 0);
    let id = self::ids(run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("gone", "", "")],
        },
    ))[0];
    assert_eq!(
        run_op(
            &mut s,
            Op::DeleteQueue {
                name: "gone".into(),
                force: true
            }
        ),
        Ok(Reply::QueueCleared {
            name: "gone".into(),
            dequeued: 1,
            remaining: 0
        })
    );
    assert!(s.queue("gone").is_none());
    assert_eq!(s.task(id).unwrap().state, TaskState::Dequeued);
    // The name is free again, under a new id.
    new_queue(&mut s, "gone", "default", 0);
    assert_ne!(s.queue("gone").unwrap().id, s.task(id).unwrap().queue);
}

#[test]
fn an_edit_races_no_submit_but_a_concurrent_edit() {
    let mut s = State::new();
    new_queue(&mut s, "q", "default", 0);
    let version = s.queue("q").unwrap().version;
    run_op(
        &mut s,
        Op::SubmitTasks {
            tasks: vec![task_to("q", "", "")],
        },
    )
    .unwrap();
    let update = |v| Op::UpdateQueue {
        name: "q".into(),
        pool: None,
        spec: Default::default(),
        expected_version: v,
    };
    run_op(&mut s, update(version)).unwrap();
    assert_eq!(
        run_op(&mut s, update(version)).unwrap_err().kind,
        ErrorKind::Aborted
    );
}

#[test]
fn clear_and_forced_delete_work_in_bounded_chunks_decided_by_the_first() {
    use crate::model::limits::{BATCH_MAX_TASKS, CLEAR_MAX_PER_COMMAND};
    use crate::model::worker::Registration;
    use crate::model::Clearing;
    let mut s = State::new();
    new_queue(&mut s, "big", "default", 0);
    new_queue(&mut s, "other", "default", 0);
    let total = CLEAR_MAX_PER_COMMAND + 1;
    for start in (0..total).step_by(BATCH_MAX_TASKS) {
        let n = BATCH_MAX_TASKS.min(total - start);
        let batch = Op::SubmitTasks {
            tasks: (0..n).map(|_| task_to("big", "", "")).collect(),
        };
        run_op(&mut s, batch).unwrap();
    }
    let clear = || Op::ClearQueue { name: "big".into() };
    let first = run_op(&mut s, clear()).unwrap();
    assert_eq!(
        first,
        Reply::QueueCleared {
            name: "big".into(),
            dequeued: CLEAR_MAX_PER_COMMAND as u64,
            remaining: 1
        }
    );
    // The back went first, and the head is as good as gone: the first step
    // decided the clear for every queued task.
    assert_eq!(order(&s, "big"), vec![1]);
    assert_eq!(s.queue("big").unwrap().clearing, Some(Clearing::Clear));
    let refused = [
        Op::SubmitTasks {
            tasks: vec![task_to("big", "", "")],
        },
        Op::MoveTask {
            id: 1,
            to: MoveTo::Queue("other".into()),
        },
        Op::DequeueTask {
            id: 1,
            reason: String::new(),
        },
        Op::CancelTask {
            id: 1,
            reason: String::new(),
        },
        Op::RenameQueue {
            name: "big".into(),
            new_name: "huge".into(),
        },
    ];
    for op in refused {
        let what = format!("{op:?}");
        let e = run_op(&mut s, op).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FailedPrecondition, "{what}");
        assert!(e.message.contains("being cleared"), "{what}: {e:?}");
    }
    let worker = Registration {
        name: "w".into(),
        ip: "10.0.0.1".into(),
        pool: "default".into(),
        queues: vec!["big".into()],
        ..Default::default()
    };
    run_op(&mut s, Op::RegisterWorker(worker)).unwrap();
    let lease = Op::LeaseTasks {
        worker: "w".into(),
        max_tasks: 1,
        ttl_ms: 1000,
    };
    assert_eq!(
        run_op(&mut s, lease).unwrap(),
        Reply::Leased { leases: vec![] }
    );
    assert_eq!(s.task(1).unwrap().state, TaskState::Queued);
    s.check_invariants();

    // A forced delete takes the clear over and ends it.
    let delete = Op::DeleteQueue {
        name: "big".into(),
        force: true,
    };
    let last = run_op(&mut s, delete).unwrap();
    assert_eq!(
        last,
        Reply::QueueCleared {
            name: "big".into(),
            dequeued: 1,
            remaining: 0
        }
    );
    assert!(s.queue("big").is_none());
    assert_eq!(s.task(1).unwrap().state, TaskState::Dequeued);
    s.check_invariants();
}

#[test]
fn a_clear_without_a_step_for_a_while_is_stalled() {
    use crate::model::limits::{BATCH_MAX_TASKS, CLEAR_MAX_PER_COMMAND};
    let mut s = State::new();
    new_queue(&mut s, "big", "default", 0);
    for _ in 0..=CLEAR_MAX_PER_COMMAND / BATCH_MAX_TASKS {
        let batch = Op::SubmitTasks {
            tasks: (0..BATCH_MAX_TASKS)
                .map(|_| task_to("big", "", ""))
                .collect(),
        };
        run_op(&mut s, batch).unwrap();
    }
    assert!(s.stalled_clears(u64::MAX, 0).is_empty(), "no clear yet");
    run_op(&mut s, Op::ClearQueue { name: "big".into() }).unwrap();
    let at = s.queue("big").unwrap().activity_ms;
    assert!(s.stalled_clears(at + 1_999, 2_000).is_empty());
    assert_eq!(s.stalled_clears(at + 2_000, 2_000), vec!["big".to_string()]);
    // The leader's step (any actor) ends it.
    let Reply::QueueCleared { remaining: 0, .. } =
        run_op(&mut s, Op::ClearQueue { name: "big".into() }).unwrap()
    else {
        panic!("the second step ends the clear");
    };
    assert!(s.stalled_clears(u64::MAX, 0).is_empty());
    assert_eq!(s.queued(s.queue("big").unwrap().id), 0);
}

#[test]
fn a_clear_that_fits_one_command_leaves_no_mark() {
    let mut s = State::new();
    new_queue(&mut s, "q", "default", 0);
    for _ in 0..3 {
        let submit = Op::SubmitTasks {
            tasks: vec![task_to("q", "", "")],
        };
        run_op(&mut s, submit).unwrap();
    }
    let version = s.queue("q").unwrap().version;
    let cleared = run_op(&mut s, Op::ClearQueue { name: "q".into() }).unwrap();
    assert_eq!(
        cleared,
        Reply::QueueCleared {
            name: "q".into(),
            dequeued: 3,
            remaining: 0
        }
    );
    let q = s.queue("q").unwrap();
    assert_eq!((q.clearing, q.version), (None, version));
    // The queue takes tasks again at once.
    let submit = Op::SubmitTasks {
        tasks: vec![task_to("q", "", "")],
    };
    run_op(&mut s, submit).unwrap();
}
