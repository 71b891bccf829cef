//! Versioned encoding of every persisted record, every log entry and every
//! peer message: one format byte, then bincode (serde, standard config).
//!
//! **Architecture Invariant:** a leaf that knows serde and bincode only, so
//! that storage, Raft and the model's tests share one encoding.
//!
//! A reader refuses a format it does not know with a clear error instead of
//! misreading it. Most records are format 1; log entries are format 2 (see
//! [`FORMAT_V2`]).

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;

/// The format of every record but log entries.
pub const FORMAT_V1: u8 = 1;
/// Raft log entries, on disk and in append messages between peers, whose
/// client commands are carried as their own format-1 encoding, a byte string
/// (`raft::Proposal`). Format-1 log entries carried the command's fields
/// inline; the log store still reads them.
pub const FORMAT_V2: u8 = 2;
/// Task records since a run records the GPUs it was given
/// (`records::formats`).
pub const FORMAT_V3: u8 = 3;

/// The most bytes the strings and byte strings of one decoded value may
/// hold together: the largest message a node takes from a peer
/// (`raft::PEER_MESSAGE_MAX_BYTES`, which is checked against it). bincode
/// allocates a string's length before it reads the string, so without a
/// bound a corrupt length, a few bytes of a record or a message, asked for
/// up to 2^64 bytes and aborted the process (found by `fuzz/`); past this
/// bound the decode is an error.
pub const DECODE_MAX_BYTES: usize = 256 << 20;

/// Room most records fit in, so that encoding one does not grow its buffer
/// field by field (1, 8, 16, ... bytes: six copies for a task).
const ENCODE_START: usize = 256;

/// Encodes a record in format 1.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(FORMAT_V1, value)
}

/// Encodes a record, marked with `format`.
pub fn encode_as<T: Serialize>(format: u8, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCODE_START);
    out.push(format);
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .expect("encoding into a Vec cannot fail");
    out
}

/// Decodes a format-1 record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    decode_as(FORMAT_V1, bytes)
}

/// Decodes a record that must be in `format`.
pub fn decode_as<T: DeserializeOwned>(format: u8, bytes: &[u8]) -> io::Result<T> {
    let (found, body) = format_of(bytes)?;
    if found != format {
        return Err(invalid(format!(
            "record format {found} is not the format {format} this laneq reads here: another \
             laneq release wrote it (upgrade laneq, and run one release on every node)"
        )));
    }
    decode_body(body)
}

/// A record's format mark and its body.
pub fn format_of(bytes: &[u8]) -> io::Result<(u8, &[u8])> {
    match bytes.split_first() {
        Some((&format, body)) => Ok((format, body)),
        None => Err(invalid("empty record")),
    }
}

/// Decodes a record's body (after its format mark).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    let config = bincode::config::standard().with_limit::<DECODE_MAX_BYTES>();
    let (value, used) = bincode::serde::decode_from_slice(body, config)
        .map_err(|e| invalid(format!("corrupt record: {e}")))?;
    if used != body.len() {
        return Err(invalid(format!(
            "corrupt record: {} trailing bytes",
            body.len() - used
        )));
    }
    Ok(value)
}

pub fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refuse_unknown_formats() {
        let v = (7u64, "x".to_string(), vec![1u8, 2]);
        let bytes = encode(&v);
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), v);
        let mut future = bytes.clone();
        future[0] = 3;
        let err = decode::<(u64, String, Vec<u8>)>(&future).unwrap_err();
        assert!(err.to_string().contains("format 3"), "{err}");
        assert!(decode::<u64>(&[]).is_err());
        let mut trailing = encode(&1u64);
        trailing.push(0);
        assert!(decode::<u64>(&trailing).is_err());
    }

    /// A length that claims more than a record can hold is an error, not
    /// an allocation: bincode allocated a string's length before reading
    /// it, and 17 bytes of a command (found by the `model_apply` fuzz
    /// target) aborted the process asking for 2^57 bytes.
    #[test]
    fn corrupt_lengths_are_errors_not_allocations() {
        for len in [1u64 << 57, u64::MAX, DECODE_MAX_BYTES as u64 + 1] {
            let mut bytes = vec![FORMAT_V1, 0xFD]; // a u64 length follows
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(b"short");
            let err = decode::<String>(&bytes).unwrap_err();
            assert!(err.to_string().contains("corrupt record"), "{err}");
            assert!(decode::<Vec<u8>>(&bytes).is_err());
            assert!(decode::<(u64, String)>(&[&[FORMAT_V1, 7][..], &bytes[1..]].concat()).is_err());
        }
        let big = "x".repeat(1 << 20);
        assert_eq!(decode::<String>(&encode(&big)).unwrap(), big);
    }

    /// Payloads are encoded as byte strings (`serde_bytes`), which bincode
    /// writes exactly as it wrote them as sequences of bytes before: logs
    /// and records written by earlier releases still read.
    #[test]
    fn byte_strings_keep_the_format_of_byte_sequences() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Seq(Vec<u8>);
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Bytes(#[serde(with = "serde_bytes")] Vec<u8>);
        for len in [0usize, 1, 250, 251, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let old = encode(&Seq(data.clone()));
            assert_eq!(encode(&Bytes(data.clone())), old, "len {len}");
            assert_eq!(decode::<Bytes>(&old).unwrap(), Bytes(data));
        }
    }
}
