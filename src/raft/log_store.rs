//! openraft's `RaftLogStorage` over [`Store`]: entries are written readable at
//! once, and their append callbacks complete only after the group fsync of the
//! [`Flusher`], in order. The most recent entries are also kept in memory, as
//! appended, for the reads that follow every append: one per follower to
//! replicate it, and one to apply it once committed.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend};

use super::{Entry, LogId, Proposal, TypeConfig, Vote};
use crate::codec::{
    decode, decode_body, encode, encode_as, format_of, invalid, FORMAT_V1, FORMAT_V2,
};
use crate::store::{Flusher, Store};

pub(super) const VOTE: &str = "vote";
pub(super) const PURGED: &str = "last_purged";
pub(super) const COMMITTED: &str = "committed";

/// Most entries kept in memory.
const RECENT_MAX_ENTRIES: usize = 4096;
/// Most bytes of entries (estimated) kept in memory. A follower that lags
/// further behind is served from RocksDB; this bounds what the cache adds to
/// a node's memory, which the scale benchmark counts per queued task.
const RECENT_MAX_BYTES: usize = 2 << 20;

/// Roughly the encoded size of an entry.
pub(crate) fn entry_bytes(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(proposal) => 64 + proposal.bytes().len(),
        EntryPayload::Membership(_) => 512,
        EntryPayload::Blank => 64,
    }
}

/// A log entry as format 1 wrote it: the command's fields inline.
type EntryV1 = openraft::Entry<
    openraft::alias::CommittedLeaderIdOf<TypeConfig>,
    EntryPayload<crate::model::Command, u64, openraft::BasicNode>,
>;

fn encode_entry(entry: &Entry) -> Vec<u8> {
    encode_as(FORMAT_V2, entry)
}

/// Decodes a log entry in either format.
fn decode_entry(bytes: &[u8]) -> io::Result<Entry> {
    match format_of(bytes)? {
        (FORMAT_V2, body) => decode_body(body),
        (FORMAT_V1, body) => {
            let old: EntryV1 = decode_body(body)?;
            let payload = match old.payload {
                EntryPayload::Blank => EntryPayload::Blank,
                EntryPayload::Normal(command) => EntryPayload::Normal(Proposal::new(command)),
                EntryPayload::Membership(m) => EntryPayload::Membership(m),
            };
            Ok(Entry {
                log_id: old.log_id,
                payload,
            })
        }
        (format, _) => Err(invalid(format!(
            "log entry format {format} is not known to this laneq (it reads formats \
             {FORMAT_V1} and {FORMAT_V2}); upgrade laneq"
        ))),
    }
}

/// The newest entries of the log, contiguous, as they were appended.
#[derive(Default)]
struct Recent {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl Recent {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index())
    }

    fn push(&mut self, entry: Entry) {
        let index = entry.index();
        if let Some(first) = self.first_index() {
            // An append follows a truncation, so it continues the log; if it
            // does not continue what is cached, start over from it.
            self.truncate_from(index);
            if first + self.entries.len() as u64 != index {
                self.entries.clear();
                self.bytes = 0;
            }
        }
        self.bytes += entry_bytes(&entry);
        self.entries.push_back(entry);
        while self.entries.len() > RECENT_MAX_ENTRIES
            || (self.bytes > RECENT_MAX_BYTES && self.entries.len() > 1)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= entry_bytes(&e);
        }
    }

    /// The entries with `start <= index < end`, when the cache holds
    /// `start`. It always holds the newest entry, so none past it exists.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        if start < first {
            return None;
        }
        let len = self.entries.len() as u64;
        let from = (start - first).min(len) as usize;
        let to = end.saturating_sub(first).clamp(from as u64, len) as usize;
        Some(self.entries.range(from..to).cloned().collect())
    }

    /// Drops the entries with `index >= from`.
    fn truncate_from(&mut self, from: u64) {
        while self.entries.back().is_some_and(|e| e.index() >= from) {
            let e = self.entries.pop_back().expect("checked");
            self.bytes -= entry_bytes(&e);
        }
    }

    /// Drops the entries with `index <= upto`.
    fn purge_upto(&mut self, upto: u64) {
        while self.first_index().is_some_and(|i| i <= upto) {
            self.pop_front();
        }
    }
}

/// The largest append a follower syncs on its own thread.
const SYNC_HERE_MAX_BYTES: usize = 256 << 10;

#[derive(Clone)]
pub struct LogStore {
    store: Store,
    flusher: Flusher,
    recent: Arc<Mutex<Recent>>,
    /// This node's id, which tells its own entries (as leader) from those
    /// of another leader (as follower); `None` in tests of the store alone.
    node: Option<u64>,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        let flusher = Flusher::start(store.clone());
        Self {
            store,
            flusher,
            recent: Arc::default(),
            node: None,
        }
    }

    /// The log store of node `id`.
    pub fn of_node(store: Store, id: u64) -> Self {
        Self {
            node: Some(id),
            ..Self::new(store)
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().expect("log cache lock poisoned")
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        self.store
            .raft_meta_get(key)?
            .map(|b| decode(&b))
            .transpose()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if let Some(entries) = self.recent().get(start, end) {
            return Ok(entries);
        }
        self.store
            .log_range(start, end)?
            .into_iter()
            .map(|(index, bytes)| {
                let entry = decode_entry(&bytes)?;
                debug_assert_eq!(entry.index(), index);
                Ok(entry)
            })
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.meta(PURGED)?;
        let last = match self.store.log_last()? {
            Some((_, bytes)) => Some(decode_entry(&bytes)?.log_id()),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let store = self.store.clone();
        let bytes = encode(vote);
        self.store
            .blocking(move || store.raft_meta_put(VOTE, &bytes, true))
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.store
            .raft_meta_put(COMMITTED, &encode(&committed), false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.index(), encode_entry(e)))
            .collect();
        // Another leader's entries: this node follows, and its fsync is on
        // the path of the write (see `Flusher::sync_here_if_idle`). A
        // leader's own fsync runs beside its followers', and its thread
        // has client writes to take in meanwhile. A large append (a
        // follower catching up) goes to the flusher all the same: its fsync
        // would hold this node's reads and heartbeats for milliseconds.
        let bytes: usize = encoded.iter().map(|(_, e)| e.len()).sum();
        let sync_here = bytes <= SYNC_HERE_MAX_BYTES
            && entries
                .first()
                .is_some_and(|e| Some(e.log_id().committed_leader_id().node_id) != self.node);
        self.store.log_append(&encoded)?;
        let mut recent = self.recent();
        for entry in entries {
            recent.push(entry);
        }
        drop(recent);
        let done = move |result| callback.io_completed(result);
        if sync_here {
            self.flusher.sync_here_if_idle(done);
        } else {
            self.flusher.after_sync(done);
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.store.log_truncate_from(from)?;
        self.recent().truncate_from(from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.store
            .log_purge(log_id.index(), PURGED, &encode(&log_id))?;
        self.recent().purge_upto(log_id.index());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::model::{Command, Op, Stamp, Write};

    fn log_id(index: u64) -> LogId {
        let leader = openraft::alias::CommittedLeaderIdOf::<TypeConfig>::new(1, 1);
        LogId::new(leader, index)
    }

    fn command(index: u64) -> Command {
        Command {
            stamp: Stamp {
                now_ms: index,
                seed: index,
            },
            writes: crate::model::Writes::One(Write {
                idempotency_key: format!("k{index}"),
                actor: String::new(),
                op: Op::DrainQueue {
                    name: format!("q{index}"),
                },
            }),
        }
    }

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Proposal::new(command(index))),
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index()).collect()
    }

    #[test]
    fn the_cache_serves_only_what_it_holds_and_follows_truncation_and_purge() {
        let mut recent = Recent::default();
        assert!(recent.get(1, 5).is_none(), "empty: ask the store");
        for i in 5..=9 {
            recent.push(entry(i));
        }
        assert!(recent.get(4, 7).is_none(), "index 4 is not cached");
        assert_eq!(indexes(&recent.get(5, 8).unwrap()), [5, 6, 7]);
        assert_eq!(indexes(&recent.get(8, 100).unwrap()), [8, 9]);
        assert!(recent.get(12, 20).unwrap().is_empty(), "past the newest");
        recent.truncate_from(8);
        assert_eq!(indexes(&recent.get(5, 100).unwrap()), [5, 6, 7]);
        recent.push(entry(8));
        recent.push(entry(7));
        assert_eq!(
            indexes(&recent.get(5, 100).unwrap()),
            [5, 6, 7],
            "an append over cached entries replaces them"
        );
        recent.push(entry(20));
        assert!(recent.get(5, 100).is_none(), "a gap starts the cache over");
        assert_eq!(indexes(&recent.get(20, 21).unwrap()), [20]);
        recent.purge_upto(20);
        assert!(recent.get(20, 21).is_none());
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let mut recent = Recent::default();
        for i in 1..=(RECENT_MAX_ENTRIES as u64 + 10) {
            recent.push(entry(i));
        }
        assert_eq!(recent.entries.len(), RECENT_MAX_ENTRIES);
        assert_eq!(recent.first_index(), Some(11));
        let sum: usize = recent.entries.iter().map(entry_bytes).sum();
        assert_eq!(recent.bytes, sum);
    }

    /// Entries written by a release whose log carried commands inline
    /// (format 1) still read, beside format-2 entries.
    #[tokio::test]
    async fn format_1_entries_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = EntryV1 {
            log_id: log_id(1),
            payload: EntryPayload::Normal(command(1)),
        };
        store
            .log_append(&[(1, encode(&old)), (2, encode_entry(&entry(2)))])
            .unwrap();
        let mut log = LogStore::new(store);
        let read = log.try_get_log_entries(1..3).await.unwrap();
        assert_eq!(read, vec![entry(1), entry(2)]);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2)));
    }
}
