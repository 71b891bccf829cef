//! The state machine's tables: one column family per record kind, plus a meta
//! table for the scalars (the model's counters, and Raft's last-applied,
//! membership and digest as opaque bytes).
//!
//! Data and meta change together in one atomic `WriteBatch`
//! ([`Store::sm_commit`]), so a restarted node never sees data without the
//! applied index that produced it, or the reverse.

use rocksdb::{IteratorMode, WriteBatch};
use std::collections::BTreeMap;
use std::io;

use super::{io_err, Store};
use crate::codec::{decode, encode, encode_as, FORMAT_V2};
use crate::model::MetaRecord;
use crate::model::{IdempotencyRecord, Key, State, TaskBody};
use crate::records::{
    decode_queue, decode_task, SnapshotReader, SnapshotWriter, Table, TASK_FORMAT,
};

/// The meta key under which the model's scalar fields live.
const MODEL_META: &[u8] = b"model";
/// An end key above every key of every table (names and keys are at most a
/// few hundred bytes of UTF-8, which never contains 0xFF).
const KEY_CEILING: [u8; 512] = [0xFF; 512];

/// The row of an idempotency record: the time of the key's first use (8
/// bytes, big-endian), then the key. Rows go in nearly in time order
/// whatever the keys look like, so a random key (a UUIDv4) costs RocksDB no
/// descent through a large memtable and no compaction across the whole key
/// range. The first byte is 0 until the year 2^56 ms after 1970; a key
/// never starts with 0 (no control characters), which tells these rows from
/// format-1 rows, keyed by the key alone ([`Store::sm_load`] moves those).
fn idempotency_row(first_ms: u64, key: &str) -> Vec<u8> {
    let mut row = Vec::with_capacity(8 + key.len());
    row.extend_from_slice(&first_ms.to_be_bytes());
    row.extend_from_slice(key.as_bytes());
    row
}

/// Whether a row of the idempotency table has the layout of format 1.
fn is_v1_idempotency_row(row: &[u8]) -> bool {
    row.first().is_some_and(|&b| b != 0)
}

/// The changes of one or more applied entries, written atomically.
#[derive(Default)]
pub struct SmBatch {
    puts: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
    /// Key ranges to delete, after the puts (expired history rows).
    ranges: Vec<(Table, Vec<u8>, Vec<u8>)>,
}

impl SmBatch {
    /// Persists the current value of `key` in `state` (or its deletion).
    pub fn record(&mut self, state: &State, key: &Key) {
        match super::history::change(state, key) {
            Some(Ok((k, v))) => return self.puts.push((Table::History, k, v)),
            Some(Err((from, to))) => return self.ranges.push((Table::History, from, to)),
            None => {}
        }
        let (table, k, v) = match key {
            Key::Meta => (
                Table::Meta,
                MODEL_META.to_vec(),
                Some(encode(&state.meta())),
            ),
            Key::Pool(name) => (
                Table::Pools,
                name.as_bytes().to_vec(),
                state.pool(name).map(encode),
            ),
            Key::Queue(id) => (
                Table::Queues,
                id.to_be_bytes().to_vec(),
                state.queue_by_id(*id).map(|q| encode_as(FORMAT_V2, q)),
            ),
            Key::Project(name) => (
                Table::Projects,
                name.as_bytes().to_vec(),
                state.project(name).map(encode),
            ),
            Key::Worker(name) => (
                Table::Workers,
                name.as_bytes().to_vec(),
                state.worker(name).map(encode),
            ),
            Key::Token(name) => (
                Table::Tokens,
                name.as_bytes().to_vec(),
                state.token(name).map(encode),
            ),
            Key::Body(id, body) => (Table::Bodies, id.to_be_bytes().to_vec(), Some(encode(body))),
            Key::Task(id) => {
                let task = state.task(*id).map(|t| encode_as(TASK_FORMAT, t));
                if task.is_none() {
                    // A task is removed (collected) with its body.
                    self.puts
                        .push((Table::Bodies, id.to_be_bytes().to_vec(), None));
                }
                (Table::Tasks, id.to_be_bytes().to_vec(), task)
            }
            Key::OrgRetention | Key::QueueRetention(_) => {
                let (k, v) = super::retention::change(state, key);
                (Table::Retention, k, v)
            }
            Key::Idempotency(first_ms, key) => (
                Table::Idempotency,
                idempotency_row(*first_ms, key),
                state
                    .idempotency(key)
                    .filter(|r| r.first_ms == *first_ms)
                    .map(encode),
            ),
            Key::HistoryTrack(_)
            | Key::QueueCounters(_)
            | Key::HistoryRow(_)
            | Key::HistoryExpire { .. } => unreachable!("history keys are written above"),
        };
        self.puts.push((table, k, v));
    }

    /// Sets an opaque meta value (Raft's last-applied, membership, digest).
    pub fn meta(&mut self, name: &str, value: Vec<u8>) {
        self.puts
            .push((Table::Meta, name.as_bytes().to_vec(), Some(value)));
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.ranges.is_empty()
    }
}

/// A snapshot blob ([`Store::sm_export`]) and how many records of each
/// table it holds.
pub struct Exported {
    pub blob: Vec<u8>,
    /// By table, in the order of [`Table::ALL`].
    records: [u64; Table::ALL.len()],
}

impl Exported {
    /// The records of `table` in the blob.
    pub fn records(&self, table: Table) -> u64 {
        let at = Table::ALL.iter().position(|t| *t == table);
        self.records[at.expect("every table is in Table::ALL")]
    }
}

impl Store {
    /// Writes a batch of state machine changes atomically.
    pub fn sm_commit(&self, batch: SmBatch) -> io::Result<()> {
        let mut wb = WriteBatch::default();
        for (table, k, v) in batch.puts {
            let cf = self.cf(table.cf());
            match v {
                Some(v) => wb.put_cf(cf, k, v),
                None => wb.delete_cf(cf, k),
            }
        }
        for (table, from, to) in batch.ranges {
            wb.delete_range_cf(self.cf(table.cf()), from, to);
        }
        self.db().write(wb).map_err(io_err)
    }

    /// An opaque meta value written with [`SmBatch::meta`].
    pub fn sm_meta_get(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.db()
            .get_cf(self.cf(Table::Meta.cf()), name.as_bytes())
            .map_err(io_err)
    }

    /// A task's command line and payload.
    pub fn task_body(&self, id: u64) -> io::Result<Option<TaskBody>> {
        self.db()
            .get_cf(self.cf(Table::Bodies.cf()), id.to_be_bytes())
            .map_err(io_err)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Loads the whole model from its tables, moving idempotency records
    /// still in their format-1 rows to the current ones (one batch, which
    /// a crash either lands whole or leaves to the next load).
    pub fn sm_load(&self) -> io::Result<State> {
        let mut state = State::new();
        let db = self.db();
        if let Some(bytes) = self.sm_meta_get("model")? {
            state.load_meta(decode::<MetaRecord>(&bytes)?);
        }
        for item in db.iterator_cf(self.cf(Table::Pools.cf()), IteratorMode::Start) {
            let (_, v) = item.map_err(io_err)?;
            state.load_pool(decode(&v)?);
        }
        for item in db.iterator_cf(self.cf(Table::Workers.cf()), IteratorMode::Start) {
            let (_, v) = item.map_err(io_err)?;
            state.load_worker(decode(&v)?);
        }
        for item in db.iterator_cf(self.cf(Table::Projects.cf()), IteratorMode::Start) {
            let (_, v) = item.map_err(io_err)?;
            state.load_project(decode(&v)?);
        }
        for item in db.iterator_cf(self.cf(Table::Tokens.cf()), IteratorMode::Start) {
            let (_, v) = item.map_err(io_err)?;
            state.load_token(decode(&v)?);
        }
        self.retention_load(&mut state)?;
        for item in db.iterator_cf(self.cf(Table::Queues.cf()), IteratorMode::Start) {
            let (_, v) = item.map_err(io_err)?;
            state.load_queue(decode_queue(&v)?);
        }
        for item in db.iterator_cf(self.cf(Table::Tasks.cf()), IteratorMode::Start) {
            let (_, v) = item.map_err(io_err)?;
            state.load_task(decode_task(&v)?);
        }
        let table = self.cf(Table::Idempotency.cf());
        let mut moved = WriteBatch::default();
        for item in db.iterator_cf(table, IteratorMode::Start) {
            let (row, v) = item.map_err(io_err)?;
            let record: IdempotencyRecord = decode(&v)?;
            if is_v1_idempotency_row(&row) {
                moved.put_cf(table, idempotency_row(record.first_ms, &record.key), &v);
                moved.delete_cf(table, row);
            }
            state.load_idempotency(record);
        }
        self.history_load(&mut state)?;
        if !moved.is_empty() {
            tracing::info!(
                records = moved.len() / 2,
                "moved idempotency records to their time-ordered rows"
            );
            db.write(moved).map_err(io_err)?;
        }
        state.check_invariants();
        Ok(state)
    }

    /// Writes every state machine record, read from one consistent RocksDB
    /// snapshot, into a snapshot blob, counting them by table. Apply may go
    /// on meanwhile. `header` gets the meta table as of that snapshot and
    /// returns the blob's header.
    pub fn sm_export(
        &self,
        header: impl FnOnce(&BTreeMap<String, Vec<u8>>) -> io::Result<Vec<u8>>,
    ) -> io::Result<Exported> {
        let db = self.db();
        let snap = db.snapshot();
        let mut meta = BTreeMap::new();
        for item in snap.iterator_cf(self.cf(Table::Meta.cf()), IteratorMode::Start) {
            let (k, v) = item.map_err(io_err)?;
            meta.insert(String::from_utf8_lossy(&k).into_owned(), v.to_vec());
        }
        let mut w = SnapshotWriter::new(&header(&meta)?);
        let mut records = [0; Table::ALL.len()];
        for (table, count) in Table::ALL.into_iter().zip(&mut records) {
            for item in snap.iterator_cf(self.cf(table.cf()), IteratorMode::Start) {
                let (k, v) = item.map_err(io_err)?;
                w.record(table, &k, &v);
                *count += 1;
            }
        }
        Ok(Exported {
            blob: w.finish(),
            records,
        })
    }

    /// Replaces every state machine table with the records of a snapshot, in
    /// one synced batch, and returns the loaded model.
    pub fn sm_import(&self, snapshot: &SnapshotReader<'_>) -> io::Result<State> {
        let mut wb = WriteBatch::default();
        for table in Table::ALL {
            wb.delete_range_cf(self.cf(table.cf()), &b""[..], &KEY_CEILING[..]);
        }
        for record in snapshot.records() {
            let (table, k, v) = record?;
            wb.put_cf(self.cf(table.cf()), k, v);
        }
        self.db().write_opt(wb, &self.synced()).map_err(io_err)?;
        self.sm_load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Command, Op, Stamp, Write};

    /// Writes the current record of every key in `changed`, as apply does.
    fn persist(store: &Store, state: &State, changed: &[Key]) {
        let mut batch = SmBatch::default();
        for key in changed {
            batch.record(state, key);
        }
        store.sm_commit(batch).unwrap();
    }

    /// Every kind of record, from random sequences of every kind of command
    /// (the model's property-test generator), survives a reload from its
    /// records and a snapshot export and import.
    #[test]
    fn every_kind_of_record_round_trips_through_a_snapshot() {
        use crate::model::state::tests::{cmd, random_op};
        use rand::{Rng, SeedableRng};
        let (mut workers, mut tasks) = (0, 0);
        for seed in 0..8u64 {
            let a = tempfile::tempdir().unwrap();
            let store = Store::open(a.path()).unwrap();
            let mut state = State::new();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for i in 0..400u64 {
                let key = format!("k{}", rng.random_range(0..300));
                let op = random_op(&mut rng, &state);
                let mut changed = vec![];
                state.apply(&cmd(i * 1000, &key, op), &mut changed);
                persist(&store, &state, &changed);
            }
            workers += state.workers().count();
            tasks += state.tasks_after(0).count();
            assert_eq!(store.sm_load().unwrap(), state, "seed {seed}: reload");
            let blob = store.sm_export(|_| Ok(vec![seed as u8])).unwrap().blob;
            let b = tempfile::tempdir().unwrap();
            let other = Store::open(b.path()).unwrap();
            let imported = other
                .sm_import(&SnapshotReader::parse(&blob).unwrap())
                .unwrap();
            assert_eq!(imported, state, "seed {seed}: snapshot");
        }
        assert!(
            workers > 0 && tasks > 50,
            "{workers} workers, {tasks} tasks"
        );
    }

    /// Idempotency records in format-1 rows (keyed by the key alone) load,
    /// move to their time-ordered rows on the first load, and expire from
    /// there; a key that expires and comes back in one batch keeps one row.
    #[test]
    fn idempotency_rows_of_format_1_move_and_expire() {
        use crate::model::limits::IDEMPOTENCY_RETENTION_MS;
        use crate::model::state::tests::{cmd, submit};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut state = State::new();
        let mut changed = vec![];
        for (ms, key) in [(1_000, "a"), (2_000, "b")] {
            state.apply(&cmd(ms, key, submit("default")), &mut changed);
        }
        let mut batch = SmBatch::default();
        for key in &changed {
            match key {
                Key::Idempotency(_, k) => batch.puts.push((
                    Table::Idempotency,
                    k.as_bytes().to_vec(),
                    Some(encode(state.idempotency(k).unwrap())),
                )),
                other => batch.record(&state, other),
            }
        }
        store.sm_commit(batch).unwrap();
        let rows = |store: &Store| -> Vec<Vec<u8>> {
            let cf = store.cf(Table::Idempotency.cf());
            store
                .db()
                .iterator_cf(cf, IteratorMode::Start)
                .map(|item| item.unwrap().0.to_vec())
                .collect()
        };
        assert_eq!(rows(&store), vec![b"a".to_vec(), b"b".to_vec()]);

        assert_eq!(store.sm_load().unwrap(), state);
        let moved = vec![idempotency_row(1_000, "a"), idempotency_row(2_000, "b")];
        assert_eq!(rows(&store), moved);
        assert_eq!(store.sm_load().unwrap(), state, "a second load");

        // "a" expires and is used again, in one apply.
        let later = 1_000 + IDEMPOTENCY_RETENTION_MS + 1;
        changed.clear();
        state.apply(&cmd(later, "a", submit("default")), &mut changed);
        persist(&store, &state, &changed);
        assert_eq!(state.idempotency("a").unwrap().first_ms, later);
        assert_eq!(
            rows(&store),
            vec![idempotency_row(2_000, "b"), idempotency_row(later, "a")]
        );
        assert_eq!(store.sm_load().unwrap(), state);
    }

    /// Persisting every changed record, exporting a snapshot and importing it
    /// into another store yields a model equal to the one in memory.
    #[test]
    fn records_and_snapshots_round_trip_the_model() {
        let a = tempfile::tempdir().unwrap();
        let store = Store::open(a.path()).unwrap();
        let mut state = State::new();
        for i in 0..300u64 {
            let op = match i % 7 {
                0 => Op::CreateQueue {
                    name: format!("q{}", i % 5),
                    pool: "default".into(),
                    spec: Default::default(),
                },
                1 => Op::CreatePool {
                    name: format!("p{}", i % 3),
                    clusters: vec![format!("c{i}")],
                },
                2 => Op::AddCluster {
                    pool: format!("p{}", i % 3),
                    cluster: format!("x{i}"),
                },
                _ => Op::SubmitTasks {
                    tasks: vec![crate::model::NewTask {
                        queue: format!("q{}", i % 5),
                        command: vec!["run".into(), i.to_string()],
                        payload: vec![i as u8; (i % 13) as usize],
                        ..Default::default()
                    }],
                },
            };
            let cmd = Command {
                stamp: Stamp {
                    now_ms: i * 10,
                    seed: i,
                },
                writes: crate::model::Writes::One(Write {
                    idempotency_key: format!("k{}", i % 250),
                    actor: String::new(),
                    op,
                }),
            };
            let mut changed = vec![];
            state.apply(&cmd, &mut changed);
            let mut batch = SmBatch::default();
            for key in &changed {
                batch.record(&state, key);
            }
            batch.meta("applied", vec![1, 2, 3]);
            store.sm_commit(batch).unwrap();
        }
        assert_eq!(store.sm_load().unwrap(), state);

        let blob = store
            .sm_export(|meta| Ok(meta["applied"].clone()))
            .unwrap()
            .blob;
        let b = tempfile::tempdir().unwrap();
        let other = Store::open(b.path()).unwrap();
        // Stale records in the target must disappear.
        let mut junk = SmBatch::default();
        junk.puts.push((
            Table::Tasks,
            999_999u64.to_be_bytes().to_vec(),
            Some(vec![1]),
        ));
        other.sm_commit(junk).unwrap();
        let reader = SnapshotReader::parse(&blob).unwrap();
        assert_eq!(reader.header(), &[1, 2, 3]);
        let imported = other.sm_import(&reader).unwrap();
        assert_eq!(imported, state);
        assert_eq!(other.sm_meta_get("applied").unwrap(), Some(vec![1, 2, 3]));
        // Bodies live only in storage, and travel with the snapshot.
        let mut bodies = 0;
        for id in 1..state.meta().next_task_id {
            let body = store.task_body(id).unwrap();
            assert_eq!(body.is_some(), state.task(id).is_some(), "task {id}");
            assert_eq!(other.task_body(id).unwrap(), body, "task {id}");
            bodies += usize::from(body.is_some());
        }
        assert!(bodies > 100, "{bodies} bodies");
        let body = store.task_body(1).unwrap().unwrap();
        assert_eq!(body.command[0], "run");
    }

    /// A task's inline strings (`CompactString`), shared key (`Arc<str>`)
    /// and timeline (`SmallVec`) encode exactly as the `String`s and `Vec`
    /// they replaced: records written by earlier releases still read.
    #[test]
    fn compact_task_fields_keep_the_format_of_strings_and_lists() {
        use crate::codec::{decode, encode};
        use crate::model::{CompactString, TaskState, Timeline, Transition};
        use std::sync::Arc;
        type Old = (String, String, Vec<(u64, TaskState, String, String, u64)>);
        type New = (CompactString, Arc<str>, Timeline);
        for len in [0usize, 1, 23, 24, 25, 300] {
            let text: String = "abcdefghij".chars().cycle().take(len).collect();
            for entries in [0usize, 1, 3] {
                let old: Old = (
                    text.clone(),
                    text.clone(),
                    (0..entries)
                        .map(|i| {
                            (
                                i as u64,
                                TaskState::Queued,
                                text.clone(),
                                "submitted".to_string(),
                                i as u64 + 7,
                            )
                        })
                        .collect(),
                );
                let new: New = (
                    text.as_str().into(),
                    text.as_str().into(),
                    (0..entries)
                        .map(|i| Transition {
                            at_ms: i as u64,
                            state: TaskState::Queued,
                            actor: text.as_str().into(),
                            reason: "submitted".into(),
                            index: i as u64 + 7,
                        })
                        .collect(),
                );
                let bytes = encode(&old);
                assert_eq!(encode(&new), bytes, "len {len}, {entries} entries");
                assert_eq!(decode::<New>(&bytes).unwrap(), new);
            }
        }
    }
}
