//! Apply's basics: ids and queue order, idempotency keys (replay, refusal,
//! expiry), coalesced entries, and a clock that never goes backwards.

use super::{batch, cmd, queued, submit};
use crate::model::limits::{COALESCED_WRITES_MAX, IDEMPOTENCY_RETENTION_MS};
use crate::model::state::{Key, State};
use crate::model::{ErrorKind, Op, Reply, Write};

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

/// A batch applies its writes one by one, in order, each under its own key:
/// one refused leaves the others applied, a retried key answers its first
/// outcome, and the batch itself has no key to remember.
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
    let each = vec![
        write("b", submit("default")),
        write("c", submit("nope")),
        write("a", submit("default")),
        write("d", submit("default")),
    ];
    let r = s.apply(&batch(2, each), &mut changed);
    let Ok(Reply::Batch(rs)) = r.result else {
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
    assert!(s.idempotency("").is_none());
    // A batch past its bound is refused whole.
    let over = (0..=COALESCED_WRITES_MAX)
        .map(|i| write(&format!("e{i}"), submit("default")))
        .collect();
    let r = s.apply(&batch(3, over), &mut changed);
    assert_eq!(r.result.unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(queued(&s, "default"), 3);
    assert!(s.idempotency("e0").is_none());
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
