//! Stored records, log commands and snapshot blobs decoded from any bytes,
//! as a node reads them from its RocksDB tables, from a peer's append or
//! from a snapshot a leader streams. The first byte picks the kind:
//!
//! - 0 to 13: one record of one kind ([`KINDS`]): `codec::decode`, or the
//!   decoders of every format (`records::decode_task`,
//!   `records::decode_queue`). What decodes must encode to bytes that
//!   decode to the same value.
//! - 14: a snapshot blob as is (`SnapshotReader::parse`, `header_of`), and
//!   a backup file as is (`Backup::parse`: its lengths are read before its
//!   checksum); the checksums refuse nearly all.
//! - 15: a snapshot blob whose content is the rest of the input, with the
//!   magic in front and its checksum computed here, so that the parser's
//!   walk over the records and each record's decoding by its table are
//!   reached.
//!
//! A corrupt record must be an `io::Error`, never a panic or an abort.

use laneq::codec::{self, FORMAT_V2};
use laneq::model::history::{Entity, Point, QueueCounters, Track};
use laneq::model::worker::Worker;
use laneq::model::{
    Command, IdempotencyRecord, MetaRecord, Pool, Project, Response, TaskBody, Write,
};
use laneq::records::{self as rec, SnapshotReader, Table, TASK_FORMAT};

/// The record kinds of modes 0 to 13, by mode.
pub const KINDS: [&str; 14] = [
    "task",
    "queue",
    "pool",
    "project",
    "worker",
    "idempotency",
    "meta",
    "body",
    "track",
    "counters",
    "point",
    "command",
    "write",
    "response",
];

/// The snapshot blob's magic (`records::snapshot`).
pub const MAGIC: &[u8; 8] = b"LANEQSN1";

pub fn run(data: &[u8]) {
    let (mode, rest) = crate::split(data);
    match mode % 16 {
        14 => {
            let _ = rec::header_of(rest);
            if let Ok(r) = SnapshotReader::parse(rest) {
                walk(&r);
            }
            if let Ok(b) = rec::Backup::parse(rest) {
                if let Ok(r) = SnapshotReader::parse(b.blob) {
                    walk(&r);
                }
            }
        }
        15 => {
            let mut blob = MAGIC.to_vec();
            blob.extend_from_slice(rest);
            let sum = blake3::hash(&blob);
            blob.extend_from_slice(sum.as_bytes());
            // Refused only when too short to hold a header length and an end.
            if let Ok(r) = SnapshotReader::parse(&blob) {
                walk(&r);
            }
        }
        kind => record(kind, rest),
    }
}

/// Every record of a snapshot, each decoded as its table's loader does.
fn walk(r: &SnapshotReader<'_>) {
    let _ = r.header();
    for item in r.records() {
        let Ok((table, key, value)) = item else {
            continue;
        };
        match table {
            Table::Meta if key == b"model" => record(6, value),
            Table::Meta => {} // Raft's own values, opaque here
            Table::Queues => record(1, value),
            Table::Tasks => record(0, value),
            Table::Idempotency => record(5, value),
            Table::Pools => record(2, value),
            Table::Projects => record(3, value),
            Table::Bodies => record(7, value),
            Table::Workers => record(4, value),
            Table::Tokens => same::<laneq::model::Token>(value),
            Table::Retention if key == rec::RETENTION_ORG_KEY => {
                same::<laneq::model::retention::OrgRetention>(value)
            }
            Table::Retention => same::<laneq::model::retention::QueueRetention>(value),
            Table::History => match key.first() {
                Some(b'c') => record(9, value),
                Some(b't') => record(8, value),
                _ => record(10, value),
            },
        }
    }
}

/// One record of kind `kind` (an index of [`KINDS`]).
pub fn record(kind: u8, bytes: &[u8]) {
    match kind {
        0 => {
            if let Ok(t) = rec::decode_task(bytes) {
                let again = rec::decode_task(&codec::encode_as(TASK_FORMAT, &t));
                assert_eq!(again.expect("re-encoded task"), t);
            }
        }
        1 => {
            if let Ok(q) = rec::decode_queue(bytes) {
                let again = rec::decode_queue(&codec::encode_as(FORMAT_V2, &q));
                assert_eq!(again.expect("re-encoded queue"), q);
            }
        }
        2 => same::<Pool>(bytes),
        3 => same::<Project>(bytes),
        4 => same::<Worker>(bytes),
        5 => same::<IdempotencyRecord>(bytes),
        6 => same::<MetaRecord>(bytes),
        7 => same::<TaskBody>(bytes),
        8 => same::<(Entity, Track)>(bytes),
        9 => same::<(u64, QueueCounters)>(bytes),
        10 => same::<Point>(bytes),
        11 => {
            if let Ok(c) = codec::decode::<Command>(bytes) {
                let _ = laneq::model::validate_writes(&c.writes);
                let _ = c.to_string();
                same_value(&c);
            }
        }
        12 => {
            if let Ok(w) = codec::decode::<Write>(bytes) {
                let _ = laneq::model::validate_write(&w);
                same_value(&w);
            }
        }
        _ => same::<Response>(bytes),
    }
}

/// Decodes a format-1 `T`; if it decodes, its encoding decodes to it again.
fn same<T>(bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = codec::decode::<T>(bytes) {
        same_value(&value);
    }
}

fn same_value<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let again: T = codec::decode(&codec::encode(value)).expect("a re-encoded record decodes");
    assert_eq!(&again, value);
}
