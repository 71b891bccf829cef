//! The metrics history's table, `sm_history`: the tracks (each entity's
//! open buckets and current values, loaded with the state), the per-queue
//! counters (loaded too), and the closed buckets, which stay on disk and are
//! read by queries. One table, three key prefixes:
//!
//! ```text
//! c | queue id (u64 BE)                                 -> (id, QueueCounters)
//! t | entity                                            -> (Entity, Track)
//! r | step_ms (u64 BE) | entity | bucket_ms (u64 BE)    -> Point
//! entity: 0 (all queues) | 1, queue id (u64 BE) | 2 (workers) | 3, name length (u16 BE), name
//! ```
//!
//! A row's key puts an entity's buckets of one resolution side by side in
//! time order, so a query is one short range scan and dropping expired rows
//! one range delete per entity and resolution.

use std::io;

use rocksdb::{Direction, IteratorMode};

use super::{io_err, Store, Table};
use crate::codec::{decode, encode};
use crate::model::history::{Entity, Point, QueueCounters, Row, Track};
use crate::model::{Key, MetaRecord, State};

const COUNTERS: u8 = b'c';
const TRACK: u8 = b't';
const ROW: u8 = b'r';

fn entity_key(out: &mut Vec<u8>, entity: &Entity) {
    match entity {
        Entity::AllQueues => out.push(0),
        Entity::Queue(id) => {
            out.push(1);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Entity::Workers => out.push(2),
        Entity::Worker(name) => {
            out.push(3);
            let len = u16::try_from(name.len()).expect("a worker name is short");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(name.as_bytes());
        }
    }
}

/// The key of the rows of `entity` at `step_ms`, without the bucket.
fn row_prefix(step_ms: u64, entity: &Entity) -> Vec<u8> {
    let mut k = vec![ROW];
    k.extend_from_slice(&step_ms.to_be_bytes());
    entity_key(&mut k, entity);
    k
}

fn row_key(step_ms: u64, entity: &Entity, bucket_ms: u64) -> Vec<u8> {
    let mut k = row_prefix(step_ms, entity);
    k.extend_from_slice(&bucket_ms.to_be_bytes());
    k
}

fn track_key(entity: &Entity) -> Vec<u8> {
    let mut k = vec![TRACK];
    entity_key(&mut k, entity);
    k
}

fn counters_key(queue: u64) -> Vec<u8> {
    let mut k = vec![COUNTERS];
    k.extend_from_slice(&queue.to_be_bytes());
    k
}

/// What a history key of apply's changes writes: a put or deletion of one
/// row, or a range to delete (`Err`).
pub(super) type Change = Result<(Vec<u8>, Option<Vec<u8>>), (Vec<u8>, Vec<u8>)>;

/// The change a history key stands for; `None` for any other key.
pub(super) fn change(state: &State, key: &Key) -> Option<Change> {
    Some(match key {
        Key::HistoryTrack(entity) => Ok((
            track_key(entity),
            state.history().track(entity).map(|t| encode(&(entity, t))),
        )),
        Key::QueueCounters(id) => Ok((
            counters_key(*id),
            state.queue_counters(*id).map(|c| encode(&(id, c))),
        )),
        Key::HistoryRow(row) => {
            let Row {
                step_ms,
                entity,
                bucket_ms,
                point,
            } = &**row;
            Ok((row_key(*step_ms, entity, *bucket_ms), Some(encode(point))))
        }
        Key::HistoryExpire {
            step_ms,
            entity,
            before_ms,
        } => Err((
            row_key(*step_ms, entity, 0),
            row_key(*step_ms, entity, *before_ms),
        )),
        _ => return None,
    })
}

/// What a query of one entity reads, from one consistent view.
#[derive(Debug, Clone, Default)]
pub struct HistoryRead {
    pub track: Option<Track>,
    /// The last row before the window.
    pub before: Option<Point>,
    /// The rows in the window, by bucket.
    pub rows: Vec<(u64, Point)>,
}

impl Store {
    /// Loads the tracks and counters into `state`.
    pub(super) fn history_load(&self, state: &mut State) -> io::Result<()> {
        let db = self.db();
        let cf = self.cf(Table::History.cf());
        for prefix in [COUNTERS, TRACK] {
            let mode = IteratorMode::From(&[prefix], Direction::Forward);
            for item in db.iterator_cf(cf, mode) {
                let (k, v) = item.map_err(io_err)?;
                if k.first() != Some(&prefix) {
                    break;
                }
                if prefix == COUNTERS {
                    let (id, counters): (u64, QueueCounters) = decode(&v)?;
                    state.load_queue_counters(id, counters);
                } else {
                    let (entity, track): (Entity, Track) = decode(&v)?;
                    state.load_history_track(entity, track);
                }
            }
        }
        Ok(())
    }

    /// Reads, from one RocksDB snapshot, the latest applied time and for each
    /// of `entities` its track, its last row at `step_ms` before `from_ms`,
    /// and its rows in `[from_ms, to_ms)`. One view: rows and tracks are
    /// written in one batch per apply, so they always agree.
    pub fn history_read(
        &self,
        entities: &[Entity],
        step_ms: u64,
        from_ms: u64,
        to_ms: u64,
    ) -> io::Result<(u64, Vec<HistoryRead>)> {
        let db = self.db();
        let snap = db.snapshot();
        let meta = self.cf(Table::Meta.cf());
        let clock_ms = match snap.get_cf(meta, b"model").map_err(io_err)? {
            Some(v) => decode::<MetaRecord>(&v)?.clock_ms,
            None => 0,
        };
        let cf = self.cf(Table::History.cf());
        let mut out = Vec::with_capacity(entities.len());
        for entity in entities {
            let mut read = HistoryRead::default();
            if let Some(v) = snap.get_cf(cf, track_key(entity)).map_err(io_err)? {
                read.track = Some(decode::<(Entity, Track)>(&v)?.1);
            }
            let prefix = row_prefix(step_ms, entity);
            let mut it = snap.raw_iterator_cf(cf);
            if from_ms > 0 {
                it.seek_for_prev(row_key(step_ms, entity, from_ms - 1));
                if let (Some(k), Some(v)) = (it.key(), it.value()) {
                    if k.starts_with(&prefix) && k.len() == prefix.len() + 8 {
                        read.before = Some(decode(v)?);
                    }
                }
            }
            it.seek(row_key(step_ms, entity, from_ms));
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                let Some(bucket) = k.strip_prefix(prefix.as_slice()) else {
                    break;
                };
                let bucket =
                    u64::from_be_bytes(bucket.try_into().map_err(|_| {
                        crate::codec::invalid("a history row key of the wrong length")
                    })?);
                if bucket >= to_ms {
                    break;
                }
                read.rows.push((bucket, decode(v)?));
                it.next();
            }
            it.status().map_err(io_err)?;
            out.push(read);
        }
        Ok((clock_ms, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::history::{Resolution, Settings};
    use crate::model::state::tests::{cmd, random_op};
    use crate::store::{SmBatch, SnapshotReader};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const S: u64 = 1_000;

    /// 10 s points kept 2 minutes, 1 min points kept 20 minutes.
    fn short() -> Settings {
        Settings {
            enabled: true,
            resolutions: vec![
                Resolution {
                    step_ms: 10 * S,
                    retention_ms: 120 * S,
                },
                Resolution {
                    step_ms: 60 * S,
                    retention_ms: 1_200 * S,
                },
            ],
        }
    }

    /// Applies random commands from `at_ms`, one every 2 s, writing each
    /// apply's changes as the state machine does.
    fn apply_some(store: &Store, state: &mut State, rng: &mut StdRng, at_ms: u64, n: u64) {
        for i in 0..n {
            let key = format!("k{}", rng.random_range(0..10_000));
            let op = random_op(rng, state);
            let mut changed = vec![];
            state.apply(&cmd(at_ms + i * 2 * S, &key, op), &mut changed);
            changed.sort();
            changed.dedup();
            let mut batch = SmBatch::default();
            for key in &changed {
                batch.record(state, key);
            }
            store.sm_commit(batch).unwrap();
        }
    }

    fn table(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        let cf = store.cf(Table::History.cf());
        store
            .db()
            .iterator_cf(cf, IteratorMode::Start)
            .map(|item| {
                let (k, v) = item.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    /// Rows are written, expire by their retention (none older than it
    /// plus the sweep's slack), and the tracks and counters reload; a
    /// snapshot carries all of it, and both copies go on alike.
    #[test]
    fn rows_expire_reload_and_travel_in_snapshots() {
        for seed in 0..3u64 {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let mut state = State::new();
            state.set_history(short());
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            apply_some(&store, &mut state, &mut rng, 1_000_000 * S, 1_500);
            let clock = state.clock_ms();
            let rows: Vec<(u64, u64)> = table(&store)
                .iter()
                .filter(|(k, _)| k[0] == ROW)
                .map(|(k, _)| {
                    let step = u64::from_be_bytes(k[1..9].try_into().unwrap());
                    let bucket = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap());
                    (step, bucket)
                })
                .collect();
            for step in [10 * S, 60 * S] {
                let retention = short().retention_ms(step);
                let kept = rows.iter().filter(|(s, _)| *s == step);
                assert!(kept.clone().count() > 0, "seed {seed}: rows at {step}");
                let oldest = kept.map(|(_, b)| *b).min().unwrap();
                let bound = clock - retention - retention / 16 - 2 * step;
                assert!(
                    oldest >= bound,
                    "seed {seed}: a row at {oldest}, older than {bound}"
                );
            }
            let mut loaded = store.sm_load().unwrap();
            loaded.set_history(short());
            assert_eq!(loaded, state, "seed {seed}: reload");
            assert!(state.all_queue_counters().count() > 0);

            let blob = store.sm_export(|_| Ok(vec![])).unwrap().blob;
            let other_dir = tempfile::tempdir().unwrap();
            let other = Store::open(other_dir.path()).unwrap();
            let mut imported = other
                .sm_import(&SnapshotReader::parse(&blob).unwrap())
                .unwrap();
            imported.set_history(short());
            assert_eq!(imported, state, "seed {seed}: snapshot");
            assert_eq!(table(&other), table(&store), "seed {seed}: snapshot rows");

            let mut again = rand::rngs::StdRng::seed_from_u64(seed + 100);
            let mut twin = again.clone();
            apply_some(&store, &mut state, &mut again, clock + 5 * S, 300);
            apply_some(&other, &mut imported, &mut twin, clock + 5 * S, 300);
            assert_eq!(imported, state, "seed {seed}: after more commands");
            assert_eq!(table(&other), table(&store), "seed {seed}: rows after");
            let (clock_ms, reads) = store
                .history_read(&[Entity::AllQueues, Entity::Workers], 60 * S, 0, u64::MAX)
                .unwrap();
            assert_eq!(clock_ms, state.clock_ms());
            assert!(reads.iter().all(|r| r.track.is_some()));
            assert!(!reads[0].rows.is_empty(), "seed {seed}");
        }
    }

    /// Bytes of rows per entity per day, as stored (key and value; RocksDB
    /// compresses with LZ4 and adds its own overhead on top): a busy queue
    /// (a change and a lease every 2 s), and a worker heartbeating every
    /// 2 s (the agent's default) with 1 GPU, or 8. Printed for
    /// bench/RESULTS.md; the asserts keep the figures from growing unseen.
    #[test]
    fn bytes_per_entity_per_day() {
        let s = Settings::default();
        let day = 86_400 * S;
        let measure = |entity: Entity, gpus: u32| -> (u64, u64) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut track = Track::new(vec![0, 0]);
            let mut rows = Vec::new();
            let start = 1_000_000 * S;
            for t in (0..day).step_by(2_000) {
                let now = start + t;
                if let Entity::Worker(_) = entity {
                    track.set(&s, 1, u64::from(rng.random_ratio(1, 50)), now, &mut rows);
                    for (i, v) in [(0, 400), (1, 24 << 30), (2, 5 << 20), (3, 1 << 20)] {
                        track.sample(&s, i, v + rng.random_range(0..v / 4), now, &mut rows);
                    }
                    for g in 0..gpus {
                        track.sample(
                            &s,
                            crate::model::history::gpu_util(g),
                            rng.random_range(0..1000),
                            now,
                            &mut rows,
                        );
                        track.sample(
                            &s,
                            crate::model::history::gpu_memory(g),
                            40 << 30,
                            now,
                            &mut rows,
                        );
                    }
                } else {
                    track.set(&s, 0, rng.random_range(0..5_000), now, &mut rows);
                    track.sample(&s, 0, rng.random_range(0..600_000), now, &mut rows);
                }
            }
            let (mut written, mut stored) = (0, 0.0);
            for r in &s.resolutions {
                let of_step: Vec<&Row> = rows.iter().filter(|x| x.step_ms == r.step_ms).collect();
                let bytes: usize = of_step
                    .iter()
                    .map(|x| {
                        row_key(x.step_ms, &entity, x.bucket_ms).len() + encode(&x.point).len()
                    })
                    .sum();
                written += bytes as u64;
                stored += bytes as f64 * r.retention_ms as f64 / day as f64;
            }
            (written, stored as u64)
        };
        for (what, entity, gpus) in [
            ("queue", Entity::Queue(7), 0),
            ("worker, 1 GPU", Entity::Worker("gpu-worker-07".into()), 1),
            ("worker, 8 GPUs", Entity::Worker("gpu-worker-07".into()), 8),
        ] {
            let (written, stored) = measure(entity, gpus);
            eprintln!(
                "history: a busy {what}: {} KiB written per day; {} KiB kept at the default \
                 retention (6 h, 7 d, 90 d)",
                written / 1024,
                stored / 1024
            );
            assert!(written < 8 << 20, "{what}: {written} bytes per day");
        }
    }
}
