//! openraft's `RaftStateMachine` over [`Store`] and the pure [`State`].
//!
//! Apply runs the model in memory, then writes every changed record together
//! with last-applied, membership and the digest in one atomic batch. The
//! digest is a running BLAKE3 hash over (index, command, outcome) of every
//! applied entry, so two replicas with the same digest at the same index
//! applied the same entries with the same outcomes.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use futures::TryStreamExt;
use openraft::async_runtime::watch::{Watch, WatchReceiver, WatchSender};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};

use super::log_store::entry_bytes;
use super::runtime::watch::{FifoReceiver, FifoSender, FifoWatch};
use super::{Entry, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};
use crate::codec::{decode, encode};
use crate::meter;
use crate::model::history::Settings as HistorySettings;
use crate::model::{Key, Response, State};
use crate::store::{Exported, SmBatch, SnapshotReader, Store};

pub(super) const APPLIED: &str = "applied";
pub(super) const MEMBERSHIP: &str = "membership";
pub(super) const DIGEST: &str = "digest";
/// The snapshot file, under the data dir.
pub(super) const SNAPSHOT_PATH: &str = "snapshot/current";
/// Entries of at least this many bytes in all make a long apply: about ten
/// submits of a 256 B payload.
const LONG_APPLY_BYTES: usize = 4096;

/// Where apply has got to: the last applied index and the digest there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub index: u64,
    pub digest: [u8; 32],
}

impl Applied {
    pub fn digest_hex(&self) -> String {
        self.digest
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The part of the state machine that the API reads: the model and the
/// applied position. Shared between apply and the gRPC services.
pub struct SmShared {
    state: RwLock<State>,
    /// The last index applied to `state`: written under its write lock, so
    /// that a reader under the read lock knows exactly how far the state it
    /// sees is (`applied` is published later, after the RocksDB write).
    state_index: AtomicU64,
    /// FIFO, so that waiters wake in a replayable order (see
    /// `runtime/watch.rs`): the simulation runs the real write path, which
    /// waits on it.
    applied: FifoSender<Applied>,
    store: Store,
}

impl SmShared {
    /// A task's command line and payload, read from storage. Bodies are
    /// written once, with the task, and never change.
    pub fn task_body(&self, id: u64) -> io::Result<Option<crate::model::TaskBody>> {
        self.store.task_body(id)
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// Read access to the model as of the last apply.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("state lock poisoned")
    }

    /// Reads history rows and tracks from one consistent view of storage
    /// (see `Store::history_read`).
    pub fn history_read(
        &self,
        entities: &[crate::model::history::Entity],
        step_ms: u64,
        from_ms: u64,
        to_ms: u64,
    ) -> io::Result<(u64, Vec<crate::store::HistoryRead>)> {
        self.store.history_read(entities, step_ms, from_ms, to_ms)
    }

    /// Read access to the model, with the index of the last entry applied
    /// to it: exact, where [`Self::applied`] may still lag behind the state.
    pub fn state_at(&self) -> (u64, RwLockReadGuard<'_, State>) {
        let state = self.state();
        (self.state_index.load(Ordering::Relaxed), state)
    }

    pub fn applied(&self) -> Applied {
        *self.applied.borrow_watched()
    }

    /// Makes `applied` the position every reader sees, and wakes the waiters.
    fn publish(&self, applied: Applied) {
        self.applied.send_if_modified(|a| {
            *a = applied;
            true
        });
    }

    /// A follower of the applied position, for a watch: it waits for the
    /// next apply, and apply never waits for it.
    pub fn follow(&self) -> AppliedFollower {
        AppliedFollower(self.applied.subscribe())
    }

    /// Waits until the local state machine has applied `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ()> {
        let mut rx = self.applied.subscribe();
        let wait = async move {
            while rx.borrow_watched().index < index {
                rx.changed().await.map_err(|_| ())?;
            }
            Ok(())
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(Err(()))
    }
}

/// Follows the applied position (see [`SmShared::follow`]). Apply publishes
/// the position after it has changed the state, so a state read after
/// [`AppliedFollower::mark_seen`] is at least as new as the position it
/// returns, and any later apply makes [`AppliedFollower::changed`] return.
pub struct AppliedFollower(FifoReceiver<Applied>);

impl AppliedFollower {
    /// The applied position now, which `changed` then counts as seen.
    pub fn mark_seen(&mut self) -> Applied {
        *self.0.borrow_and_update()
    }

    /// Waits for an apply after the position last marked seen. `false`
    /// once the state machine is gone (the node stops).
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

pub struct StateMachine {
    store: Store,
    shared: Arc<SmShared>,
    /// The node's `[history]` settings, given to every state it loads.
    history: HistorySettings,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl StateMachine {
    /// Applies one entry to `state`: a command through the model, a blank
    /// or membership entry as itself; each extends the digest chain.
    fn apply_entry(
        &mut self,
        state: &mut State,
        entry: &Entry,
        applied: &mut Applied,
        changed: &mut Vec<Key>,
    ) -> Response {
        let log_id = entry.log_id();
        let response = match &entry.payload {
            EntryPayload::Blank => {
                applied.digest = chain(&applied.digest, log_id.index(), &[b"blank"]);
                Response::none()
            }
            EntryPayload::Normal(proposal) => {
                let response = state.apply_at(log_id.index(), proposal.command(), changed);
                applied.digest = chain(
                    &applied.digest,
                    log_id.index(),
                    &[proposal.bytes(), &encode(&response)],
                );
                response
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(log_id), m.clone());
                applied.digest = chain(&applied.digest, log_id.index(), &[&encode(m)]);
                Response::none()
            }
        };
        applied.index = log_id.index();
        self.last_applied = Some(log_id);
        response
    }

    /// Loads the state machine from its tables, with the default history
    /// settings.
    pub fn open(store: Store) -> io::Result<Self> {
        Self::open_with(store, HistorySettings::default())
    }

    /// Loads the state machine from its tables.
    pub fn open_with(store: Store, history: HistorySettings) -> io::Result<Self> {
        let mut state = store.sm_load()?;
        state.set_history(history.clone());
        crate::store::release_free_memory();
        let last_applied: Option<LogId> = read_meta(&store, APPLIED)?.flatten();
        let membership: StoredMembership = read_meta(&store, MEMBERSHIP)?.unwrap_or_default();
        let digest: [u8; 32] = read_meta(&store, DIGEST)?.unwrap_or([0; 32]);
        let applied = Applied {
            index: last_applied.as_ref().map_or(0, |l| l.index()),
            digest,
        };
        Ok(Self {
            store: store.clone(),
            shared: Arc::new(SmShared {
                state: RwLock::new(state),
                state_index: AtomicU64::new(applied.index),
                applied: FifoWatch::channel(applied).0,
                store,
            }),
            last_applied,
            membership,
            history,
        })
    }

    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }

    fn snapshot_path(&self) -> std::path::PathBuf {
        self.store.dir().join(SNAPSHOT_PATH)
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(store: &Store, key: &str) -> io::Result<Option<T>> {
    store.sm_meta_get(key)?.map(|b| decode(&b)).transpose()
}

/// The next digest: a hash over the previous one and this entry's content.
fn chain(prev: &[u8; 32], index: u64, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(&index.to_le_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    *h.finalize().as_bytes()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let items: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        if items.is_empty() {
            return Ok(());
        }
        let start = std::time::Instant::now();
        meter::APPLIED_ENTRIES.inc_by(items.len() as u64);
        // Apply is the longest piece of work on a node's thread, and nothing
        // in it is urgent on a follower, whose answer to the leader's next
        // append decides when that entry commits. So a long apply lets the
        // tasks that are ready run first, here and again before the RocksDB
        // write; a short one (a single write, at light load) is not worth
        // the turn (see bench/RESULTS.md, "Long applies give way").
        let long = items.iter().map(|(e, _)| entry_bytes(e)).sum::<usize>() >= LONG_APPLY_BYTES;
        if long {
            tokio::task::yield_now().await;
        }
        let mut applied = self.shared.applied();
        let mut changed: Vec<Key> = Vec::new();
        let mut replies = Vec::with_capacity(items.len());
        let mut batch = SmBatch::default();
        {
            let shared = self.shared.clone();
            let mut state = shared.state.write().expect("state lock poisoned");
            for (entry, responder) in items {
                let response = self.apply_entry(&mut state, &entry, &mut applied, &mut changed);
                replies.push((responder, response));
            }
            shared.state_index.store(applied.index, Ordering::Relaxed);
            changed.sort();
            changed.dedup();
            for key in &changed {
                batch.record(&state, key);
            }
        }
        if long {
            tokio::task::yield_now().await;
        }
        batch.meta(APPLIED, encode(&self.last_applied));
        batch.meta(MEMBERSHIP, encode(&self.membership));
        batch.meta(DIGEST, encode(&applied.digest));
        self.store.sm_commit(batch)?;
        self.shared.publish(applied);
        meter::observe_since(&meter::APPLY_SECONDS, start);
        for (responder, response) in replies {
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            path: self.snapshot_path(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let blob = snapshot.into_inner();
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = blob.len(), "installing snapshot");
        let start = std::time::Instant::now();
        meter::SNAPSHOT_BYTES.set(blob.len() as i64);
        let store = self.store.clone();
        let path = self.snapshot_path();
        let expected = meta.clone();
        let history = self.history.clone();
        let (state, digest) = self.store.blocking(move || -> io::Result<(State, [u8; 32])> {
            let reader = SnapshotReader::parse(&blob)?;
            let header: SnapshotMeta = decode(reader.header())?;
            if header != expected {
                return Err(crate::codec::invalid(format!(
                    "snapshot header {header:?} does not match the meta it was sent with {expected:?}"
                )));
            }
            // The file first: a node killed between the two finds a snapshot
            // newer than its state and installs it again at start (openraft's
            // restore). The other way round, it would find its state ahead of
            // the log, purge the log up to it, and have no snapshot that far.
            save_snapshot_file(&store, &path, &blob)?;
            let mut state = store.sm_import(&reader)?;
            state.set_history(history);
            let digest: [u8; 32] = read_meta(&store, DIGEST)?.unwrap_or([0; 32]);
            Ok((state, digest))
        })
        .await?;

        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let index = self.last_applied.as_ref().map_or(0, |l| l.index());
        {
            let mut current = self.shared.state.write().expect("state lock poisoned");
            *current = state;
            self.shared.state_index.store(index, Ordering::Relaxed);
        }
        self.shared.publish(Applied { index, digest });
        crate::store::release_free_memory();
        meter::observe_since(&meter::SNAPSHOT_INSTALL_SECONDS, start);
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let path = self.snapshot_path();
        let blob = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta: SnapshotMeta = decode(SnapshotReader::parse(&blob)?.header())?;
        Ok(Some(Snapshot {
            meta,
            snapshot: std::io::Cursor::new(blob),
        }))
    }
}

/// A snapshot file is synced after every this many bytes written.
const SNAPSHOT_SYNC_BYTES: usize = 4 << 20;

/// Writes the blob to a temp file, fsyncs it (if the store fsyncs) and
/// renames it into place, unless the file already holds a snapshot at least
/// as new. A build that began before an install can end after it; putting
/// its older snapshot back would leave the log purged past the current
/// snapshot, and the node would refuse to start again.
pub(super) fn save_snapshot_file(
    store: &Store,
    path: &std::path::Path,
    blob: &[u8],
) -> io::Result<()> {
    static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _saving = SAVING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let last_log_id = |header: &[u8]| decode::<SnapshotMeta>(header).map(|m| m.last_log_id);
    let new = last_log_id(crate::store::snapshot_header_of(blob)?)?;
    if let Some(header) = crate::store::read_snapshot_file_header(path)? {
        let saved = last_log_id(&header)?;
        if saved >= new {
            tracing::info!(?saved, built = ?new, "kept the newer snapshot already saved");
            return Ok(());
        }
    }
    let fsync = store.options().fsync;
    let dir = path.parent().expect("snapshot path has a parent");
    std::fs::create_dir_all(dir)?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{n}"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        // Synced as it is written, rather than in one fsync of tens of MB
        // at the end, in front of the log fsyncs that acknowledge writes.
        for chunk in blob.chunks(SNAPSHOT_SYNC_BYTES) {
            f.write_all(chunk)?;
            if fsync {
                f.sync_data()?;
            }
        }
        if fsync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if fsync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The state machine as a snapshot blob, read from one consistent RocksDB
/// view while apply goes on, with its meta (last applied, membership) as of
/// that view.
pub(super) fn export(store: &Store) -> io::Result<(SnapshotMeta, Exported)> {
    let mut meta_out = None;
    let exported = store.sm_export(|table| {
        let last_log_id: Option<LogId> =
            table.get(APPLIED).map(|b| decode(b)).transpose()?.flatten();
        let last_membership: StoredMembership = table
            .get(MEMBERSHIP)
            .map(|b| decode(b))
            .transpose()?
            .unwrap_or_default();
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        let header = encode(&meta);
        meta_out = Some(meta);
        Ok(header)
    })?;
    Ok((meta_out.expect("header callback ran"), exported))
}

/// Builds a snapshot from one consistent RocksDB view while apply goes on.
pub struct SnapshotBuilder {
    store: Store,
    path: std::path::PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let store = self.store.clone();
        let path = self.path.clone();
        let start = std::time::Instant::now();
        self.store.background(move || -> io::Result<Snapshot> {
            let (meta, exported) = export(&store)?;
            let blob = exported.blob;
            save_snapshot_file(&store, &path, &blob)?;
            crate::store::release_free_memory();
            meter::observe_since(&meter::SNAPSHOT_BUILD_SECONDS, start);
            meter::SNAPSHOT_BYTES.set(blob.len() as i64);
            tracing::info!(last_log_id = ?meta.last_log_id, bytes = blob.len(), "built snapshot");
            Ok(Snapshot {
                meta,
                snapshot: std::io::Cursor::new(blob),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::store::SnapshotWriter;

    fn blob(index: u64) -> Vec<u8> {
        let leader = openraft::alias::CommittedLeaderIdOf::<TypeConfig>::new(1, 1);
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(leader, index)),
            ..Default::default()
        };
        SnapshotWriter::new(&encode(&meta)).finish()
    }

    fn saved_index(path: &std::path::Path) -> Option<u64> {
        let header = crate::store::read_snapshot_file_header(path).unwrap()?;
        decode::<SnapshotMeta>(&header)
            .unwrap()
            .last_log_id
            .map(|l| l.index())
    }

    /// A snapshot build that started before an install and ends after it
    /// must not put its older snapshot back (found by the chaos suite).
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = dir.path().join("snapshot").join("current");
        save_snapshot_file(&store, &path, &blob(300)).unwrap();
        assert_eq!(saved_index(&path), Some(300));
        save_snapshot_file(&store, &path, &blob(1800)).unwrap();
        assert_eq!(saved_index(&path), Some(1800));
        save_snapshot_file(&store, &path, &blob(1200)).unwrap();
        assert_eq!(
            saved_index(&path),
            Some(1800),
            "the older build was dropped"
        );
        save_snapshot_file(&store, &path, &blob(1800)).unwrap();
        assert_eq!(saved_index(&path), Some(1800));
    }
}
