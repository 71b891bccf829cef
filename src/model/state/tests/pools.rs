//! Pools: their clusters, and queues that live in one.

use super::cmd;
use crate::model::state::State;
use crate::model::{ErrorKind, Op, Reply};

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
