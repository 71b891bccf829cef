use super::*;
use crate::model::state::tests::{cmd, submit};
use crate::model::worker::Registration;
use crate::model::{Op, Reply};

/// A state that applies commands at growing log indexes, like a node.
struct Log {
    state: State,
    index: u64,
}

impl Log {
    fn new() -> Self {
        Self {
            state: State::new(),
            index: 10,
        }
    }

    fn apply(&mut self, op: Op) -> Reply {
        self.index += 1;
        let key = format!("k{}", self.index);
        let c = cmd(self.index * 1000, &key, op);
        self.state
            .apply_at(self.index, &c, &mut vec![])
            .result
            .unwrap()
    }

    fn register(&mut self, name: &str) {
        self.apply(Op::RegisterWorker(Registration {
            name: name.into(),
            ip: "10.0.0.1".into(),
            pool: "default".into(),
            queues: vec!["default".into()],
            ..Default::default()
        }));
    }

    /// Leases the next task to `worker`; returns (task, token).
    fn lease(&mut self, worker: &str) -> (u64, u64) {
        let op = Op::LeaseTasks {
            worker: worker.into(),
            max_tasks: 1,
            ttl_ms: 60_000,
        };
        match self.apply(op) {
            Reply::Leased { leases } => (leases[0].0, leases[0].1),
            other => panic!("not a lease: {other:?}"),
        }
    }
}

fn sent<E>(look: Look<E>) -> Vec<E> {
    match look {
        Look::Send(events) => events,
        other => panic!("expected events, got {}", kind(&other)),
    }
}

fn kind<E>(look: &Look<E>) -> &'static str {
    match look {
        Look::Same => "same",
        Look::Send(_) => "send",
        Look::Last(_) => "last",
        Look::Fail(_) => "fail",
    }
}

#[test]
fn diff_names_what_changed_and_what_went() {
    let old: BTreeMap<u64, &str> = [(1, "a"), (2, "b"), (3, "c")].into();
    let new: BTreeMap<u64, &str> = [(1, "a"), (3, "C"), (4, "d")].into();
    assert_eq!(diff(&old, &new), (vec!["C", "d"], vec![2]));
    assert_eq!(diff(&new, &new), (vec![], vec![]));
}

#[test]
fn a_queue_watch_sends_on_change_and_ends_when_the_queue_goes() {
    let mut log = Log::new();
    let create = Op::CreateQueue {
        name: "gpu".into(),
        pool: "default".into(),
        spec: Default::default(),
    };
    log.apply(create);
    let id = log.state.queue("gpu").unwrap().id;
    let mut w = QueueWatch { id, last: None };
    let first = sent(w.look(log.index, &log.state));
    assert_eq!(first[0].queue.as_ref().unwrap().queued, 0);
    assert!(matches!(w.look(log.index, &log.state), Look::Same));
    log.apply(submit("default"));
    assert!(
        matches!(w.look(log.index, &log.state), Look::Same),
        "another queue's submit"
    );
    log.apply(submit("gpu"));
    let e = sent(w.look(log.index, &log.state)).remove(0);
    let view = e.queue.unwrap();
    assert_eq!((e.index, view.queued, view.next_task_id), (13, 1, Some(2)));
    log.apply(Op::DeleteQueue {
        name: "gpu".into(),
        force: true,
    });
    match w.look(log.index, &log.state) {
        Look::Last(events) => assert!(events[0].deleted, "{events:?}"),
        other => panic!("{}", kind(&other)),
    }
}

#[test]
fn a_queues_watch_sends_everything_first_then_changes() {
    let mut log = Log::new();
    let mut w = QueuesWatch::default();
    let e = sent(w.look(log.index, &log.state)).remove(0);
    assert!(e.full && e.changed.len() == 1 && e.removed.is_empty());
    let create = Op::CreateQueue {
        name: "gpu".into(),
        pool: "default".into(),
        spec: Default::default(),
    };
    log.apply(create);
    let e = sent(w.look(log.index, &log.state)).remove(0);
    assert!(!e.full);
    assert_eq!(
        e.changed.iter().map(|q| &q.name).collect::<Vec<_>>(),
        ["gpu"]
    );
    log.apply(Op::DeleteQueue {
        name: "gpu".into(),
        force: false,
    });
    let e = sent(w.look(log.index, &log.state)).remove(0);
    assert_eq!((e.changed.len(), e.removed.len()), (0, 1));
    assert!(matches!(w.look(log.index, &log.state), Look::Same));
}

/// Every transition once, in order, with its index; a watch resumed from a
/// middle index gets exactly the rest; the terminal one ends both.
#[test]
fn a_task_watch_sends_each_transition_once_and_resumes_from_an_index() {
    let mut log = Log::new();
    log.register("w1");
    log.apply(submit("default"));
    let mut w = TaskWatch { id: 1, after: None };
    let first = sent(w.look(log.index, &log.state));
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].index, first[0].terminal), (12, false));
    assert!(matches!(w.look(log.index, &log.state), Look::Same));
    let (id, token) = log.lease("w1");
    log.apply(Op::StartTask {
        id,
        fencing_token: token,
    });
    let more = sent(w.look(log.index, &log.state));
    let states: Vec<_> = more
        .iter()
        .map(|e| (e.index, e.transition.as_ref().unwrap().state.as_str()))
        .collect();
    assert_eq!(states, [(13, "leased"), (14, "running")]);
    log.apply(Op::CompleteTask {
        id,
        fencing_token: token,
        succeeded: false,
        exit_code: Some(3),
        condition: "out of memory".into(),
    });
    let Look::Last(end) = w.look(log.index, &log.state) else {
        panic!("the terminal transition ends the watch");
    };
    assert_eq!(end.len(), 1);
    let e = &end[0];
    assert!(e.terminal && e.condition == "out of memory" && e.exit_code == Some(3));

    let mut resumed = TaskWatch {
        id: 1,
        after: Some(13),
    };
    let Look::Last(rest) = resumed.look(log.index, &log.state) else {
        panic!("a terminal task ends a resumed watch too");
    };
    let indexes: Vec<u64> = rest.iter().map(|e| e.index).collect();
    assert_eq!(indexes, [14, 15]);
    let mut missing = TaskWatch { id: 9, after: None };
    assert!(matches!(
        missing.look(log.index, &log.state),
        Look::Fail(s) if s.code() == tonic::Code::NotFound
    ));
}

#[test]
fn a_workers_watch_says_what_changed() {
    let mut log = Log::new();
    log.register("w1");
    let mut w = WorkersWatch::default();
    let e = sent(w.look(log.index, &log.state)).remove(0);
    assert!(e.full && e.changed.len() == 1);
    log.register("w2");
    let e = sent(w.look(log.index, &log.state)).remove(0);
    assert_eq!(e.changed.len(), 1);
    assert_eq!(e.changed[0].what, ["registered"]);
    log.apply(submit("default"));
    log.lease("w1");
    let e = sent(w.look(log.index, &log.state)).remove(0);
    let w1 = &e.changed[0];
    assert_eq!(w1.worker.as_ref().unwrap().name, "w1");
    assert!(w1.what.contains(&"tasks".to_string()), "{:?}", w1.what);
    assert!(matches!(w.look(log.index, &log.state), Look::Same));
}
