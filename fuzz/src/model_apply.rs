//! Commands applied to `model::State`. The first byte picks the mode:
//!
//! - even: a structured sequence ([`crate::gen`]) of up to
//!   [`COMMANDS_MAX`] commands. Each write is checked as the API checks it
//!   (`validate_write`), a batch as the leader checks it
//!   (`validate_writes`), and only what passes is applied; after each
//!   command `check_invariants` holds. At the end the log replays to the
//!   same state and responses (apply is deterministic), and the state
//!   reloaded from the records the commands changed, each encoded and
//!   decoded as storage does, equals it.
//! - odd: raw log entries, each a little-endian `u16` length and a
//!   format-1 `Command` (`codec::decode`), as a peer or the log could hand
//!   them over; each that decodes and validates is applied, and the
//!   invariants hold after it.
//!
//! No input may make apply panic: a refusal is a `ModelError` in the
//! response.

use arbitrary::Unstructured;
use laneq::codec;
use laneq::model::{validate_write, validate_writes, Command, Key, Response, State, Writes};
use laneq::records;

use crate::gen::Gen;

/// Most commands of one structured run: enough for leases, expiry and
/// clears to meet, few enough for millions of runs.
pub const COMMANDS_MAX: usize = 32;

pub fn run(data: &[u8]) {
    let (mode, rest) = crate::split(data);
    if mode % 2 == 0 {
        structured(rest);
    } else {
        raw(rest);
    }
}

fn structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut gen = Gen::new();
    let mut state = State::new();
    let mut log: Vec<(Command, Response)> = Vec::new();
    let mut changed: Vec<Key> = Vec::new();
    while log.len() < COMMANDS_MAX && !u.is_empty() {
        let Ok(mut cmd) = gen.command(&mut u, &state) else {
            break;
        };
        if let Writes::Batch(writes) = &mut cmd.writes {
            writes.retain(|w| validate_write(w).is_ok());
            if writes.is_empty() {
                continue;
            }
        }
        if validate_writes(&cmd.writes).is_err() {
            continue;
        }
        let response = state.apply_at(log.len() as u64 + 1, &cmd, &mut changed);
        state.check_invariants();
        log.push((cmd, response));
    }
    replay(&state, &log);
    reload(&state, &changed);
}

/// The same log applied again from scratch gives the same state and the
/// same responses.
fn replay(state: &State, log: &[(Command, Response)]) {
    let mut again = State::new();
    for (i, (cmd, response)) in log.iter().enumerate() {
        let r = again.apply_at(i as u64 + 1, cmd, &mut Vec::new());
        assert_eq!(
            &r, response,
            "command {i} ({cmd}) answered otherwise on replay"
        );
    }
    assert!(again == *state, "the replayed state differs");
}

/// Rebuilds the state from the records the commands changed, each through
/// the encoding storage writes (the final value of every key; deleted
/// records are left out), and checks it equals the state.
fn reload(state: &State, changed: &[Key]) {
    let mut keys = changed.to_vec();
    keys.sort();
    keys.dedup();
    let mut loaded = State::new();
    for key in keys {
        match key {
            Key::Meta => loaded.load_meta(through(&state.meta())),
            Key::Queue(id) => {
                if let Some(q) = state.queue_by_id(id) {
                    let bytes = codec::encode_as(codec::FORMAT_V2, q);
                    loaded.load_queue(records::decode_queue(&bytes).expect("a queue record"));
                }
            }
            Key::Pool(name) => {
                if let Some(p) = state.pool(&name) {
                    loaded.load_pool(through(p));
                }
            }
            Key::Project(name) => {
                if let Some(p) = state.project(&name) {
                    loaded.load_project(through(p));
                }
            }
            Key::Task(id) => {
                if let Some(t) = state.task(id) {
                    let bytes = codec::encode_as(records::TASK_FORMAT, t);
                    loaded.load_task(records::decode_task(&bytes).expect("a task record"));
                }
            }
            Key::Idempotency(first_ms, k) => {
                if let Some(r) = state.idempotency(&k).filter(|r| r.first_ms == first_ms) {
                    loaded.load_idempotency(through(r));
                }
            }
            Key::Worker(name) => {
                if let Some(w) = state.worker(&name) {
                    loaded.load_worker(through(w));
                }
            }
            Key::Token(name) => {
                if let Some(t) = state.token(&name) {
                    loaded.load_token(through(t));
                }
            }
            Key::HistoryTrack(e) => {
                if let Some(t) = state.history().track(&e) {
                    let (e, t) = through(&(e, t.clone()));
                    loaded.load_history_track(e, t);
                }
            }
            Key::QueueCounters(id) => {
                if let Some(c) = state.queue_counters(id) {
                    let (id, c) = through(&(id, c.clone()));
                    loaded.load_queue_counters(id, c);
                }
            }
            Key::Body(_, body) => {
                assert_eq!(through(&body), body, "a task body record");
            }
            Key::HistoryRow(row) => {
                assert_eq!(through(&row.point), row.point, "a history row");
            }
            Key::HistoryExpire { .. } => {}
            Key::OrgRetention => loaded.load_org_retention(through(state.retention())),
            Key::QueueRetention(id) => {
                if let Some(own) = state.queue_retention(id) {
                    loaded.load_queue_retention(through(own));
                }
            }
        }
    }
    loaded.check_invariants();
    assert!(
        loaded == *state,
        "the state reloaded from its records differs"
    );
}

/// `value` encoded as a format-1 record and decoded again.
fn through<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    codec::decode(&codec::encode(value)).expect("a record decodes as it was encoded")
}

fn raw(mut data: &[u8]) {
    let mut state = State::new();
    let mut index = 0;
    while data.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let end = (2 + len).min(data.len());
        let entry = &data[2..end];
        data = &data[end..];
        let Ok(cmd) = codec::decode::<Command>(entry) else {
            continue;
        };
        if validate_writes(&cmd.writes).is_err() {
            continue;
        }
        index += 1;
        state.apply_at(index, &cmd, &mut Vec::new());
        state.check_invariants();
    }
}
