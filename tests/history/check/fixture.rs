//! Made-up histories and replicas for the properties' own tests: small
//! builders, and one clean history that laneq's model really applied.

pub use super::super::{
    Call, Entry, History, Lease, Outcome, ReadView, Record, Replica, Reply, TaskView,
};

use laneq::model::worker::Registration;
use laneq::model::{Command, NewTask, Op, Response, Stamp, State, Write, Writes};
use laneq::raft::Applied;

pub fn ok() -> Outcome {
    Outcome::Ok(Reply::Done)
}

pub fn ok_ids(ids: &[u64]) -> Outcome {
    Outcome::Ok(Reply::Submitted { ids: ids.to_vec() })
}

pub fn refused() -> Outcome {
    Outcome::Refused("draining".into())
}

pub fn unknown() -> Outcome {
    Outcome::Unknown("timeout".into())
}

/// `call` by `client`, sent at `at` and answered 2 ms later.
pub fn call(call: Call, client: &str, outcome: Outcome, at: u64) -> Record {
    let key = match call {
        Call::Complete { task, token, .. } => format!("{client}-{task}-{token}-done"),
        _ => String::new(),
    };
    Record {
        client: client.into(),
        key,
        call,
        sent_ms: at,
        done_ms: at + 2,
        outcome,
        entry: None,
    }
}

/// A submit of `tasks` under `key`, sent at `at` and answered 5 ms later.
pub fn batch(key: &str, tasks: usize, outcome: Outcome, at: u64) -> Record {
    Record {
        key: key.into(),
        done_ms: at + 5,
        ..call(Call::Submit { tasks }, "s1", outcome, at)
    }
}

pub fn submit(key: &str, outcome: Outcome, at: u64) -> Record {
    batch(key, 1, outcome, at)
}

/// A lease call by `worker` that got `token` for `task`.
pub fn grant(task: u64, worker: &str, token: u64, at: u64) -> Record {
    let leases = vec![Lease { task, token }];
    let lease = Call::Lease {
        worker: worker.into(),
    };
    call(lease, worker, Outcome::Ok(Reply::Leased { leases }), at)
}

pub fn start(task: u64, token: u64) -> Call {
    Call::Start { task, token }
}

/// A successful completion.
pub fn complete(task: u64, token: u64) -> Call {
    let succeeded = true;
    Call::Complete {
        task,
        token,
        succeeded,
    }
}

/// A linearizable read answered by `node` at `applied`.
pub fn read(node: u64, applied: u64, at: u64) -> Record {
    let what = "tasks".to_string();
    let tasks = Vec::new();
    let view = ReadView {
        node,
        applied,
        tasks,
    };
    call(
        Call::Read { what },
        "reader",
        Outcome::Ok(Reply::Read(view)),
        at,
    )
}

/// `r`, answered by the log entry at `index`.
pub fn at_index(r: Record, index: u64) -> Record {
    let response = Response {
        result: Ok(laneq::model::Reply::None),
        replayed: false,
    };
    let entry = Some(Entry { index, response });
    Record { entry, ..r }
}

/// `r`, answered from an earlier entry's idempotency record.
pub fn replayed(mut r: Record) -> Record {
    let entry = r.entry.as_mut().expect("an answer from the log");
    entry.response.replayed = true;
    r
}

pub fn task(id: u64, key: &str, state: &str) -> TaskView {
    task_with(id, key, state, 0)
}

pub fn task_with(id: u64, key: &str, state: &str, token: u64) -> TaskView {
    TaskView {
        id,
        key: key.into(),
        queue: "default".into(),
        state: state.into(),
        token,
        successes: u32::from(state == "succeeded"),
    }
}

/// A replica at index 10 whose `default` queue lists `queued`.
pub fn node(id: u64, digest: &str, tasks: Vec<TaskView>, queued: &[(u64, u64)]) -> Replica {
    Replica {
        id,
        applied: 10,
        digest: digest.into(),
        tasks,
        queued: [("default".to_string(), queued.to_vec())].into(),
        records: None,
    }
}

fn lease(key: &str) -> (&str, Op) {
    let op = Op::LeaseTasks {
        worker: "w1".into(),
        max_tasks: 1,
        ttl_ms: 1000,
    };
    (key, op)
}

/// One task, leased, expired, leased again and completed, applied by the
/// model: the history holds the real answers, the replica the real state.
pub fn clean() -> (History, Replica) {
    let task = NewTask {
        command: vec!["true".into()],
        ..NewTask::default()
    };
    let worker = Registration {
        name: "w1".into(),
        pool: "default".into(),
        queues: vec!["default".into()],
        ..Registration::default()
    };
    let complete = Op::CompleteTask {
        id: 1,
        fencing_token: 2,
        succeeded: true,
        exit_code: Some(0),
        condition: String::new(),
    };
    let expire = Op::ExpireLeases {
        worker_timeout_ms: 60_000,
    };
    let ops = vec![
        ("s-1", Op::SubmitTasks { tasks: vec![task] }),
        ("w-0", Op::RegisterWorker(worker)),
        lease("w-1"),
        ("x-1", expire),
        lease("w-2"),
        ("w-3", complete),
    ];
    let mut state = State::new();
    let mut history = History::default();
    for (i, (key, op)) in ops.into_iter().enumerate() {
        let index = i as u64 + 1;
        let write = Write {
            idempotency_key: key.to_string(),
            actor: "test".into(),
            op,
        };
        let stamp = Stamp {
            now_ms: 1000 * index,
            seed: 0,
        };
        let command = Command {
            stamp,
            writes: Writes::One(write.clone()),
        };
        let response = state.apply(&command, &mut Vec::new());
        let times = (10 * index, 10 * index + 5);
        let answer = Some((response, index));
        let record = super::super::model::record("test", &write, times, answer);
        history.records.push(record);
    }
    let applied = Applied {
        index: history.records.len() as u64,
        ..Applied::default()
    };
    let keys = history.records.iter().map(|r| r.key.as_str());
    let replica = super::super::model::replica(1, &applied, &state, keys);
    (history, replica)
}
