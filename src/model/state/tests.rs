use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::model::{ErrorKind, Stamp, Write};

fn cmd(now_ms: u64, key: &str, op: Op) -> Command {
    Command {
        stamp: Stamp { now_ms, seed: 0 },
        write: Write {
            idempotency_key: key.to_string(),
            op,
        },
    }
}

fn submit(queue: &str) -> Op {
    Op::SubmitTask {
        queue: queue.into(),
        command: vec!["echo".into(), "hi".into()],
        payload: vec![],
    }
}

#[test]
fn the_default_queue_exists_from_the_start() {
    let s = State::new();
    assert!(s.queue("default").is_some());
    assert_eq!(s.queued("default"), 0);
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
        assert_eq!(r.result, Ok(Reply::TaskSubmitted { id: i + 1 }));
    }
    assert_eq!(s.queued("gpu"), 3);
    assert_eq!(s.next_task("gpu"), Some(1));
    assert_eq!(s.position(s.task(3).unwrap()), Some(2));
    assert!(changed.contains(&Key::Task(3)));
    assert!(changed.contains(&Key::Queue("gpu".into())));
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
    assert_eq!(s.queued("default"), 1);
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

#[test]
fn idempotency_keys_expire_after_the_retention() {
    let mut s = State::new();
    let mut changed = vec![];
    s.apply(&cmd(1_000, "old", submit("default")), &mut changed);
    changed.clear();
    let later = 1_000 + IDEMPOTENCY_RETENTION_MS + 1;
    s.apply(&cmd(later, "new", submit("default")), &mut changed);
    assert!(s.idempotency("old").is_none());
    assert!(changed.contains(&Key::Idempotency("old".into())));
    // The key may now be used again, and makes a new task.
    let r = s.apply(&cmd(later + 1, "old", submit("default")), &mut changed);
    assert!(!r.replayed);
    assert_eq!(s.queued("default"), 3);
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

/// A random command sequence: apply is deterministic, and a state rebuilt from
/// its changed records (as storage does) equals the original.
#[test]
fn random_sequences_are_deterministic_and_reload_equal() {
    for seed in 0..50u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let queues = ["default", "a", "b", "c"];
        let cmds: Vec<Command> = (0..200)
            .map(|i| {
                let key = format!("k{}", rng.random_range(0..150));
                let pools = ["default", "p1", "p2"];
                let pool = pools[rng.random_range(0..pools.len())].to_string();
                let cluster = format!("c{}", rng.random_range(0..3));
                let op = match rng.random_range(0..20) {
                    0 | 1 => Op::CreateQueue {
                        name: queues[rng.random_range(0..queues.len())].into(),
                        pool,
                        spec: Default::default(),
                    },
                    2 => Op::CreatePool {
                        name: pool,
                        clusters: vec![cluster],
                    },
                    3 => Op::AddCluster { pool, cluster },
                    5 => Op::DrainQueue {
                        name: queues[rng.random_range(0..queues.len())].into(),
                    },
                    6 => Op::ActivateQueue {
                        name: queues[rng.random_range(0..queues.len())].into(),
                    },
                    4 => Op::RemoveCluster { pool, cluster },
                    _ => submit(queues[rng.random_range(0..queues.len())]),
                };
                cmd(i * 1000, &key, op)
            })
            .collect();
        let run = || {
            let mut s = State::new();
            let mut changed = vec![];
            let responses: Vec<Response> = cmds.iter().map(|c| s.apply(c, &mut changed)).collect();
            s.check_invariants();
            (s, responses, changed)
        };
        let (a, ra, changed) = run();
        let (b, rb, _) = run();
        assert_eq!(a, b, "seed {seed}");
        assert_eq!(ra, rb, "seed {seed}");

        let mut reloaded = State::new();
        let mut keys = changed.clone();
        keys.sort();
        keys.dedup();
        for key in keys {
            match key {
                Key::Meta => reloaded.load_meta(a.meta()),
                Key::Queue(n) => reloaded.load_queue(a.queue(&n).unwrap().clone()),
                Key::Pool(n) => reloaded.load_pool(a.pool(&n).unwrap().clone()),
                Key::Task(id) => reloaded.load_task(a.task(id).unwrap().clone()),
                Key::Idempotency(k) => {
                    if let Some(r) = a.idempotency(&k) {
                        reloaded.load_idempotency(r.clone())
                    }
                }
            }
        }
        reloaded.check_invariants();
        assert_eq!(a, reloaded, "seed {seed}");
    }
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
    assert_eq!(s.queued("q"), 2);

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
