//! The stored form of the state machine's records, apart from RocksDB: the
//! tables they belong to ([`Table`]), the decoders of the record formats
//! earlier releases wrote (`formats`), the snapshot blob (`snapshot`) and
//! the backup file that wraps one (`backup`).
//! `store` keeps them in RocksDB; they live here, outside the `server`
//! feature, so that they build without RocksDB and the fuzz targets
//! (`fuzz/`) reach every decoder of bytes that come from disk or a peer.
//!
//! **Architecture Invariant:** pure: bytes in, a record or an `io::Error`
//! out, never a panic; no RocksDB and no openraft.

mod backup;
mod formats;
mod snapshot;

pub use backup::{Backup, BackupInfo, BackupWriter};
pub use formats::{decode_queue, decode_task, TASK_FORMAT};
pub use snapshot::{header_of, read_file_header, SnapshotReader, SnapshotWriter};

use std::io;

/// The state machine's tables: a RocksDB column family each ([`Table::cf`]),
/// and a tag in the snapshot blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Meta,
    Queues,
    Tasks,
    Idempotency,
    Pools,
    Projects,
    /// Task command lines and payloads, which the in-memory model does not keep.
    Bodies,
    Workers,
    /// The metrics history: tracks, counters and closed buckets (see
    /// `store::history`).
    History,
    /// Access tokens (their secrets' digests only).
    Tokens,
    /// The retention: the organisation's under `org`, a queue's own rules
    /// under `q` and its id (see [`retention_queue_key`]).
    Retention,
}

/// The row of the organisation's retention in [`Table::Retention`].
pub const RETENTION_ORG_KEY: &[u8] = b"org";

/// The row of a queue's own retention rules in [`Table::Retention`]: `q`,
/// then the queue id, big-endian.
pub fn retention_queue_key(queue: u64) -> Vec<u8> {
    let mut key = vec![b'q'];
    key.extend_from_slice(&queue.to_be_bytes());
    key
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::Meta,
        Table::Queues,
        Table::Tasks,
        Table::Idempotency,
        Table::Pools,
        Table::Projects,
        Table::Bodies,
        Table::Workers,
        Table::History,
        Table::Tokens,
        Table::Retention,
    ];

    pub fn cf(self) -> &'static str {
        match self {
            Table::Meta => "sm_meta",
            Table::Queues => "sm_queues",
            Table::Tasks => "sm_tasks",
            Table::Idempotency => "sm_idempotency",
            Table::Pools => "sm_pools",
            Table::Projects => "sm_projects",
            Table::Bodies => "sm_bodies",
            Table::Workers => "sm_workers",
            Table::History => "sm_history",
            Table::Tokens => "sm_tokens",
            Table::Retention => "sm_retention",
        }
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            Table::Meta => 1,
            Table::Queues => 2,
            Table::Tasks => 3,
            Table::Idempotency => 4,
            Table::Pools => 5,
            Table::Projects => 6,
            Table::Bodies => 7,
            Table::Workers => 8,
            Table::History => 9,
            Table::Tokens => 10,
            Table::Retention => 11,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> io::Result<Self> {
        Table::ALL
            .into_iter()
            .find(|t| t.tag() == tag)
            .ok_or_else(|| crate::codec::invalid(format!("unknown table tag {tag}")))
    }
}
