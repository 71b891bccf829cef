//! RocksDB storage: the Raft log, Raft's own metadata, and the state machine
//! in column families.
//!
//! **Architecture Invariant:** this module knows RocksDB and the model's
//! records, never openraft. Raft types arrive as opaque encoded bytes; the
//! adapters in `src/raft` give them meaning. Any RocksDB error is returned as
//! `io::Error` and is fatal to the node: it stops rather than run half-working.

mod flusher;
mod history;
mod identity;
#[cfg(test)]
mod month;
mod retention;
mod tables;

pub use crate::records::{
    header_of as snapshot_header_of, read_file_header as read_snapshot_file_header, SnapshotReader,
    SnapshotWriter, Table,
};
pub use flusher::Flusher;
pub use history::HistoryRead;
pub use identity::Identity;
pub use tables::{Exported, SmBatch};

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Log entries by big-endian index.
pub(crate) const CF_LOG: &str = "log";
/// Raft's metadata: vote, last purged id, committed id.
pub(crate) const CF_RAFT: &str = "raft_meta";

fn all_cfs() -> Vec<&'static str> {
    let mut cfs = vec![CF_LOG, CF_RAFT];
    cfs.extend(Table::ALL.iter().map(|t| t.cf()));
    cfs
}

/// One RocksDB instance holding the log and the state machine. They share a
/// write-ahead log, so one fsync makes both durable up to that point.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    dir: PathBuf,
    options: StoreOptions,
}

/// How a store does its IO. A node always runs with the default; only the
/// deterministic simulation (`tests/sim.rs`) changes it.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// fsync wherever durability is promised. The simulation turns it off:
    /// its crashes stop a node, not the machine, so the page cache survives
    /// them, and fsyncs would only make hundreds of seeds slow.
    pub fsync: bool,
    /// Do the blocking work (the group-commit fsync, snapshot build and
    /// install, the vote) on the calling thread, not on the flusher thread or
    /// tokio's blocking pool. The simulation runs a cluster on one thread:
    /// work finished on another thread would wake it at a moment that no
    /// seed decides.
    pub inline_io: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            inline_io: false,
        }
    }
}

/// Gives memory that a bulk operation freed (loading or replacing the whole
/// state, building a snapshot) back to the system at once. The allocator
/// would otherwise keep it for reuse and return it over the next seconds;
/// after a load, whose invariant check rebuilds every index once more, the
/// resident size of a node was nearly double what it keeps.
pub fn release_free_memory() {
    // SAFETY: "arena.<MALLCTL_ARENAS_ALL>.purge" takes and returns nothing;
    // the name is a NUL-terminated string.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// The calling thread's nice value up by 10 (Linux keeps one per thread).
/// A failure leaves it as it was, which is only less kind to the others.
fn lower_this_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: nice(2) changes only the calling thread's priority.
    unsafe {
        libc::nice(10);
    }
}

pub(crate) fn io_err(e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("rocksdb: {e}"))
}

/// Memory for RocksDB's memtables over every column family.
const MEMTABLES_MAX: usize = 128 << 20;

/// One column family's memtable, at most. With RocksDB's default (64 MiB)
/// the shared budget above set off large flushes one after another beside
/// the log fsyncs, and end-to-end tasks waited behind them; smaller
/// memtables flush in short pieces (see bench/RESULTS.md, "Memtables, 16
/// MiB each").
const MEMTABLE_MAX: usize = 16 << 20;

impl Store {
    /// Opens (or creates) the store under `dir/db`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the store under `dir/db`, doing its IO as
    /// `options` say.
    pub fn open_with(dir: &Path, options: StoreOptions) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        opts.set_max_total_wal_size(256 << 20);
        // All column families' memtables together, rather than up to 64 MiB
        // each: what the state does not need in memory stays on disk.
        opts.set_db_write_buffer_size(MEMTABLES_MAX);
        // Table files written by flushes and compactions are synced as they
        // grow, 1 MiB at a time, rather than in one fsync of many MiB at the
        // end, in front of the log fsyncs that acknowledge writes.
        opts.set_bytes_per_sync(1 << 20);
        let cfs = all_cfs().into_iter().map(|name| {
            let mut o = Options::default();
            if name != CF_LOG {
                o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            }
            o.set_write_buffer_size(MEMTABLE_MAX);
            ColumnFamilyDescriptor::new(name, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs).map_err(io_err)?;
        Ok(Self {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            options,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// Runs `work` (store IO that may block for a while) on tokio's blocking
    /// pool, or right here when the store does its IO inline.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        if self.options.inline_io {
            return work();
        }
        tokio::task::spawn_blocking(work)
            .await
            .map_err(io::Error::other)?
    }

    /// Runs `work` like [`Store::blocking`], but on a thread of its own at a
    /// lower CPU priority: work that can wait (building a snapshot) yields
    /// the cores to the work that answers clients.
    pub async fn background<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        if self.options.inline_io {
            return work();
        }
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("laneq-background".into())
            .spawn(move || {
                lower_this_thread_priority();
                let _ = done.send(work());
            })?;
        result
            .await
            .map_err(|_| io::Error::other("a background store thread panicked"))?
    }

    /// How many handles share the database (this one included).
    #[cfg(test)]
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.db)
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// Makes every write so far durable (fsync of the write-ahead log).
    pub fn sync(&self) -> io::Result<()> {
        let start = std::time::Instant::now();
        let result = self.db.flush_wal(self.options.fsync).map_err(io_err);
        crate::meter::observe_since(&crate::meter::WAL_FSYNC_SECONDS, start);
        result
    }

    /// Write options that fsync before returning (unless fsync is off).
    pub(crate) fn synced(&self) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.options.fsync);
        wo
    }

    // --- Raft metadata ---

    pub fn raft_meta_get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(CF_RAFT), key).map_err(io_err)
    }

    /// Writes a Raft metadata value; with `durable` it is fsynced before return.
    pub fn raft_meta_put(&self, key: &str, value: &[u8], durable: bool) -> io::Result<()> {
        let wo = if durable {
            self.synced()
        } else {
            WriteOptions::default()
        };
        self.db
            .put_cf_opt(self.cf(CF_RAFT), key, value, &wo)
            .map_err(io_err)
    }

    // --- the log ---

    /// Writes entries so that they are readable at once. Durability comes from
    /// a later [`Store::sync`] (see [`Flusher`]).
    pub fn log_append(&self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_LOG);
        for (index, bytes) in entries {
            batch.put_cf(cf, index.to_be_bytes(), bytes);
        }
        self.db.write(batch).map_err(io_err)
    }

    /// Entries with `start <= index < end`, in order.
    pub fn log_range(&self, start: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let from = start.to_be_bytes();
        let iter = self.db.iterator_cf(
            self.cf(CF_LOG),
            IteratorMode::From(&from, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(io_err)?;
            let index = index_of(&k)?;
            if index >= end {
                break;
            }
            out.push((index, v.to_vec()));
        }
        Ok(out)
    }

    /// The entry with the highest index.
    pub fn log_last(&self) -> io::Result<Option<(u64, Vec<u8>)>> {
        match self
            .db
            .iterator_cf(self.cf(CF_LOG), IteratorMode::End)
            .next()
        {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(io_err)?;
                Ok(Some((index_of(&k)?, v.to_vec())))
            }
        }
    }

    /// Deletes every entry with `index >= from`.
    pub fn log_truncate_from(&self, from: u64) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_LOG), from.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(self.cf(CF_LOG), u64::MAX.to_be_bytes());
        self.db.write_opt(batch, &self.synced()).map_err(io_err)
    }

    /// Records the new purge point and deletes every entry with
    /// `index <= upto`, in one atomic batch, so no hole can appear.
    pub fn log_purge(&self, upto: u64, purged_key: &str, purged: &[u8]) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_RAFT), purged_key, purged);
        batch.delete_range_cf(
            self.cf(CF_LOG),
            0u64.to_be_bytes(),
            (upto + 1).to_be_bytes(),
        );
        self.db.write(batch).map_err(io_err)
    }
}

fn index_of(key: &[u8]) -> io::Result<u64> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| crate::codec::invalid("log key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Background work runs at a lower CPU priority than the caller, and
    /// the caller's own priority does not change.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_work_runs_at_a_lower_priority() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        // SAFETY: getpriority on this thread's own id reads its nice value.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS as _, libc::gettid() as _) };
        let here = nice();
        let there = s.background(move || Ok(nice())).await.unwrap();
        assert_eq!(there, (here + 10).min(19));
        assert_eq!(nice(), here);
    }

    #[test]
    fn log_append_range_truncate_purge() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let entries: Vec<_> = (1..=10u64).map(|i| (i, vec![i as u8])).collect();
        s.log_append(&entries).unwrap();
        assert_eq!(s.log_range(3, 6).unwrap().len(), 3);
        assert_eq!(s.log_last().unwrap().unwrap().0, 10);
        s.log_truncate_from(8).unwrap();
        assert_eq!(s.log_last().unwrap().unwrap().0, 7);
        s.log_purge(4, "purged", b"4").unwrap();
        assert_eq!(s.log_range(0, 100).unwrap().first().unwrap().0, 5);
        assert_eq!(s.raft_meta_get("purged").unwrap().unwrap(), b"4");
        s.sync().unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.log_range(0, 100).unwrap().len(), 3);
    }
}
