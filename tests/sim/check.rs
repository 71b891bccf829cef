//! The checker: once the healed cluster has converged, the replicas must be
//! identical and sound, and the history the clients saw must agree with
//! the product's guarantees.
//!
//! 1. Every acknowledged submit exists exactly once: retries with its key
//!    made no duplicates, and a submit whose outcome stayed unknown exists
//!    wholly or not at all.
//! 2. Fencing: a token names one lease of one task; an accepted start,
//!    progress, completion or release used the task's current token (no
//!    lease with a larger token had been granted before it); the tokens of
//!    accepted calls about a task never go backwards; no task succeeded
//!    twice.
//! 3. Every node applied the same index, with the same digest and the same
//!    state, and loads that same state back from its disk.
//! 4. The model's invariants hold on every node.
//!
//! Also, every acknowledged write's idempotency record holds the outcome
//! the client got, so a retry would have been answered the same.

use std::collections::{BTreeMap, BTreeSet};

use laneq::model::{Op, Reply, State, TaskState};
use laneq::raft::Applied;

use super::world::Record;

pub type Replicas = BTreeMap<u64, (Applied, State)>;

/// Every violation found, or nothing.
pub fn check(history: &[Record], replicas: &Replicas, reloaded: &Replicas) -> Vec<String> {
    let mut errors = replicas_agree(replicas, reloaded);
    if let Some((_, state)) = replicas.values().next() {
        errors.extend(outcomes_remembered(history, state));
        errors.extend(submits_exactly_once(history, state));
        errors.extend(fencing(history, state));
    }
    errors
}

fn replicas_agree(replicas: &Replicas, reloaded: &Replicas) -> Vec<String> {
    let mut errors = Vec::new();
    for (id, (applied, state)) in replicas {
        if let Err(panic) = std::panic::catch_unwind(|| state.check_invariants()) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            errors.push(format!("node {id}: invariants broken: {why:?}"));
        }
        let (first_id, (first_applied, first_state)) = replicas.iter().next().expect("not empty");
        if applied != first_applied {
            errors.push(format!(
                "node {id} applied {applied:?}, node {first_id} {first_applied:?}"
            ));
        } else if state != first_state {
            errors.push(format!(
                "node {id} and node {first_id} have different states at the same index {}",
                applied.index
            ));
        }
        match reloaded.get(id) {
            Some((a, s)) if a == applied && s == state => {}
            Some((a, _)) => errors.push(format!(
                "node {id} reloads {a:?} from disk, not the {applied:?} it served"
            )),
            None => errors.push(format!("node {id} was not reloaded")),
        }
    }
    errors
}

/// Heartbeat batches and expiry leave no idempotency record (by design).
fn remembered(op: &Op) -> bool {
    !matches!(op, Op::WorkerHeartbeats { .. } | Op::ExpireLeases { .. })
}

fn outcomes_remembered(history: &[Record], state: &State) -> Vec<String> {
    let mut errors = Vec::new();
    for rec in history {
        let Some((response, _)) = &rec.outcome else {
            continue;
        };
        if !remembered(&rec.op) {
            continue;
        }
        match state.idempotency(&rec.key) {
            Some(r) if r.result == response.result => {}
            Some(r) => errors.push(format!(
                "key {}: the client got {:?}, the store remembers {:?}",
                rec.key, response.result, r.result
            )),
            None => errors.push(format!(
                "key {}: acknowledged ({:?}) but not remembered: the write was lost",
                rec.key, response.result
            )),
        }
    }
    errors
}

fn submits_exactly_once(history: &[Record], state: &State) -> Vec<String> {
    let mut by_key: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for task in state.tasks_after(0) {
        by_key
            .entry(&task.idempotency_key)
            .or_default()
            .insert(task.id);
    }
    let mut errors = Vec::new();
    for rec in history {
        let Op::SubmitTasks { tasks } = &rec.op else {
            continue;
        };
        let found = by_key.get(rec.key.as_str()).cloned().unwrap_or_default();
        let ok = match &rec.outcome {
            Some((r, _)) => match &r.result {
                Ok(Reply::TasksSubmitted { ids }) => {
                    found == ids.iter().copied().collect::<BTreeSet<u64>>()
                        && ids.len() == tasks.len()
                }
                _ => found.is_empty(),
            },
            None => found.is_empty() || found.len() == tasks.len(),
        };
        if !ok {
            errors.push(format!(
                "submit {} of {} task(s) ({:?}) left tasks {found:?}",
                rec.key,
                tasks.len(),
                rec.outcome.as_ref().map(|(r, _)| &r.result)
            ));
        }
    }
    errors
}

/// A call on a leased task that the store accepted: (log index, task,
/// token, whether it completed the task successfully).
struct Accepted {
    index: u64,
    task: u64,
    token: u64,
    key: String,
    success: bool,
}

fn accepted_calls(history: &[Record]) -> Vec<Accepted> {
    let mut calls = Vec::new();
    for rec in history {
        let (task, token, success) = match &rec.op {
            Op::StartTask { id, fencing_token }
            | Op::ReportProgress {
                id, fencing_token, ..
            }
            | Op::ReleaseTask {
                id, fencing_token, ..
            } => (*id, *fencing_token, false),
            Op::CompleteTask {
                id,
                fencing_token,
                succeeded,
                ..
            } => (*id, *fencing_token, *succeeded),
            _ => continue,
        };
        // A replayed answer's entry is not where the call took effect.
        if let Some((r, index)) = &rec.outcome {
            if r.result.is_ok() && !r.replayed {
                let key = rec.key.clone();
                calls.push(Accepted {
                    index: *index,
                    task,
                    token,
                    key,
                    success,
                });
            }
        }
    }
    calls.sort_by_key(|c| c.index);
    calls
}

fn fencing(history: &[Record], state: &State) -> Vec<String> {
    let mut errors = Vec::new();
    let grants = grants(history, &mut errors);
    let calls = accepted_calls(history);
    errors.extend(current_tokens(&grants, &calls));
    errors.extend(single_successes(&calls, state));
    errors
}

/// Every lease the clients saw: token -> (task, the earliest log index
/// known to follow its grant). A replayed answer came later than the grant.
fn grants(history: &[Record], errors: &mut Vec<String>) -> BTreeMap<u64, (u64, u64)> {
    let mut grants: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for rec in history {
        let Some((r, index)) = &rec.outcome else {
            continue;
        };
        let Ok(Reply::Leased { leases }) = &r.result else {
            continue;
        };
        for &(task, token, _) in leases {
            let grant = grants.entry(token).or_insert((task, *index));
            if grant.0 != task {
                errors.push(format!(
                    "token {token} was granted for task {} and for task {task}",
                    grant.0
                ));
            }
            grant.1 = grant.1.min(*index);
        }
    }
    grants
}

/// Each accepted call used a token granted for its task, no newer lease of
/// the task had been granted before it, and a task's accepted tokens never
/// go backwards.
fn current_tokens(grants: &BTreeMap<u64, (u64, u64)>, calls: &[Accepted]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut last_token: BTreeMap<u64, u64> = BTreeMap::new();
    for c in calls {
        match grants.get(&c.token) {
            Some(&(task, _)) if task == c.task => {}
            other => errors.push(format!(
                "key {}: token {} accepted for task {}, but it was granted as {other:?}",
                c.key, c.token, c.task
            )),
        }
        let newer = grants
            .range(c.token + 1..)
            .find(|(_, &(task, granted))| task == c.task && granted < c.index);
        if let Some((newer, (_, granted))) = newer {
            errors.push(format!(
                "key {}: task {} accepted stale token {} at index {}; token {newer} was \
                 granted by index {granted}",
                c.key, c.task, c.token, c.index
            ));
        }
        let last = last_token.entry(c.task).or_insert(c.token);
        if c.token < *last {
            errors.push(format!(
                "key {}: task {} accepted token {} at index {} after token {}",
                c.key, c.task, c.token, c.index, *last
            ));
        }
        *last = (*last).max(c.token);
    }
    errors
}

/// No task succeeded twice, and one that succeeded ends succeeded with the
/// token of that completion.
fn single_successes(calls: &[Accepted], state: &State) -> Vec<String> {
    let mut errors = Vec::new();
    let mut succeeded: BTreeMap<u64, (&str, u64)> = BTreeMap::new();
    for c in calls.iter().filter(|c| c.success) {
        if let Some((first, _)) = succeeded.insert(c.task, (&c.key, c.token)) {
            errors.push(format!(
                "task {} succeeded twice: keys {first} and {}",
                c.task, c.key
            ));
        }
    }
    for (task, (key, token)) in &succeeded {
        match state.task(*task) {
            Some(t) if t.state == TaskState::Succeeded && t.fencing_token() == *token => {}
            other => errors.push(format!(
                "key {key}: task {task} succeeded with token {token}, but it ends as {:?}",
                other.map(|t| (t.state, t.fencing_token()))
            )),
        }
    }
    for task in state.tasks_after(0) {
        let successes = task
            .timeline
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count();
        if successes > 1 {
            errors.push(format!("task {} has {successes} successes", task.id));
        }
    }
    errors
}

/// The checker must find what it looks for: a clean history passes, and a
/// lost write or a stale token accepted is reported.
mod tests {
    use laneq::model::worker::Registration;
    use laneq::model::{Command, NewTask, Response, Stamp, Write};

    use super::*;

    /// Applies `ops` to a fresh state; the history holds their real answers.
    fn run(ops: Vec<(&str, Op)>) -> (Replicas, Vec<Record>) {
        let mut state = State::new();
        let mut history = Vec::new();
        for (i, (key, op)) in ops.into_iter().enumerate() {
            let write = Write {
                idempotency_key: key.to_string(),
                actor: "test".into(),
                op: op.clone(),
            };
            let stamp = Stamp {
                now_ms: 1000 * (i as u64 + 1),
                seed: 0,
            };
            let response = state.apply(&Command { stamp, write }, &mut Vec::new());
            let outcome = Some((response, i as u64 + 1));
            let key = key.to_string();
            history.push(Record { key, op, outcome });
        }
        let replicas = Replicas::from([(1, (Applied::default(), state))]);
        (replicas, history)
    }

    fn lease(key: &str) -> (&str, Op) {
        let op = Op::LeaseTasks {
            worker: "w1".into(),
            max_tasks: 1,
            ttl_ms: 1000,
        };
        (key, op)
    }

    /// One task, leased, expired, leased again and completed.
    fn clean() -> (Replicas, Vec<Record>) {
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
        run(vec![
            ("s-1", Op::SubmitTasks { tasks: vec![task] }),
            ("w-0", Op::RegisterWorker(worker)),
            lease("w-1"),
            ("x-1", expire),
            lease("w-2"),
            ("w-3", complete),
        ])
    }

    fn acked(key: &str, op: Op, reply: Reply, index: u64) -> Record {
        let response = Response {
            result: Ok(reply),
            replayed: false,
        };
        let key = key.to_string();
        let outcome = Some((response, index));
        Record { key, op, outcome }
    }

    #[test]
    fn a_clean_history_passes() {
        let (replicas, history) = clean();
        let errors = check(&history, &replicas, &replicas);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn a_lost_submit_is_found() {
        let (replicas, mut history) = clean();
        let op = Op::SubmitTasks {
            tasks: vec![NewTask::default()],
        };
        history.push(acked("s-9", op, Reply::TasksSubmitted { ids: vec![9] }, 9));
        let errors = check(&history, &replicas, &replicas).join("\n");
        assert!(errors.contains("s-9: acknowledged"), "{errors}");
        assert!(errors.contains("submit s-9 of 1 task(s)"), "{errors}");
    }

    #[test]
    fn a_stale_token_accepted_is_found() {
        let (replicas, mut history) = clean();
        let stale = Op::StartTask {
            id: 1,
            fencing_token: 1,
        };
        history.push(acked("w-9", stale, Reply::Task { id: 1 }, 9));
        let errors = check(&history, &replicas, &replicas).join("\n");
        assert!(errors.contains("accepted stale token 1"), "{errors}");
    }
}
