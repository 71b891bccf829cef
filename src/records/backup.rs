//! A backup file: what `laneq cluster snapshot save` writes and `laneq node
//! restore` reads. It wraps a snapshot blob (see `snapshot`) with what a
//! person needs to know of it, and a checksum over the whole file.
//!
//! ```text
//! "LANEQBK1" | u32 info_len | info (JSON) | u64 blob_len | blob | blake3(all before)
//! ```
//!
//! The info is JSON so that it stays readable by other tools (`head -c`),
//! and so that a later laneq can add fields that an older one skips.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::codec::invalid;

const MAGIC: &[u8; 8] = b"LANEQBK1";
const CHECKSUM_LEN: usize = 32;
/// Most bytes of the info: it is a few short fields.
const INFO_MAX: usize = 64 * 1024;

/// What a backup holds, as the leader that took it saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The name of the cluster it was taken from.
    pub cluster: String,
    /// The leader that took it.
    pub node: u64,
    /// The last log index it includes, and that entry's term.
    pub index: u64,
    pub term: u64,
    /// The leader's wall clock when it was taken, in ms since the epoch.
    pub taken_at_ms: u64,
    pub tasks: u64,
    pub queues: u64,
    /// The laneq version that took it.
    pub version: String,
}

/// Writes a backup file as its blob arrives in pieces, hashing as it goes.
pub struct BackupWriter<W: Write> {
    out: W,
    hasher: blake3::Hasher,
    /// Blob bytes still expected.
    left: u64,
}

impl<W: Write> BackupWriter<W> {
    /// Starts a backup of `info` whose blob is `blob_len` bytes.
    pub fn new(out: W, info: &BackupInfo, blob_len: u64) -> io::Result<Self> {
        let info = serde_json::to_vec(info).map_err(io::Error::other)?;
        let mut w = Self {
            out,
            hasher: blake3::Hasher::new(),
            left: blob_len,
        };
        w.put(MAGIC)?;
        w.put(&(info.len() as u32).to_le_bytes())?;
        w.put(&info)?;
        w.put(&blob_len.to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)
    }

    /// The next piece of the blob.
    pub fn blob(&mut self, piece: &[u8]) -> io::Result<()> {
        if piece.len() as u64 > self.left {
            return Err(invalid("the snapshot is longer than its announced size"));
        }
        self.left -= piece.len() as u64;
        self.put(piece)
    }

    /// Ends the file with its checksum; refused unless the whole blob came.
    pub fn finish(mut self) -> io::Result<W> {
        if self.left > 0 {
            return Err(invalid(format!(
                "the snapshot ended {} bytes short of its announced size",
                self.left
            )));
        }
        let sum = self.hasher.finalize();
        self.out.write_all(sum.as_bytes())?;
        Ok(self.out)
    }
}

/// A parsed, checksum-verified backup file.
#[derive(Debug)]
pub struct Backup<'a> {
    pub info: BackupInfo,
    /// The snapshot blob (verified again, on its own, when it is read).
    pub blob: &'a [u8],
}

impl<'a> Backup<'a> {
    /// Checks a whole backup file and splits it; each way a file can be
    /// wrong gets its own error.
    pub fn parse(file: &'a [u8]) -> io::Result<Self> {
        if file.len() < MAGIC.len() || &file[..MAGIC.len()] != MAGIC {
            return Err(invalid(
                "not a laneq backup (it does not start as `laneq cluster snapshot save` writes)",
            ));
        }
        let truncated = |what: &str| {
            invalid(format!(
                "the backup is truncated: it ends in its {what} ({} bytes in all)",
                file.len()
            ))
        };
        let mut at = MAGIC.len();
        let info_len = u32::from_le_bytes(
            take(file, &mut at, 4)
                .ok_or_else(|| truncated("header"))?
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        if info_len > INFO_MAX {
            return Err(invalid(format!(
                "the backup is corrupt: its header claims {info_len} bytes"
            )));
        }
        let info = take(file, &mut at, info_len).ok_or_else(|| truncated("header"))?;
        let blob_len = u64::from_le_bytes(
            take(file, &mut at, 8)
                .ok_or_else(|| truncated("header"))?
                .try_into()
                .expect("8 bytes"),
        );
        let expected = (at as u64)
            .checked_add(blob_len)
            .and_then(|n| n.checked_add(CHECKSUM_LEN as u64))
            .ok_or_else(|| {
                invalid("the backup is corrupt: its header claims an impossible size")
            })?;
        if (file.len() as u64) < expected {
            return Err(invalid(format!(
                "the backup is truncated: it has {} bytes of the {expected} its header announces",
                file.len()
            )));
        }
        if (file.len() as u64) > expected {
            return Err(invalid(format!(
                "the backup is corrupt: it has {} bytes, {} more than its header announces",
                file.len(),
                file.len() as u64 - expected
            )));
        }
        let (content, sum) = file.split_at(file.len() - CHECKSUM_LEN);
        if blake3::hash(content).as_bytes() != sum {
            return Err(invalid(
                "the backup is corrupt: its checksum does not match its content",
            ));
        }
        let info: BackupInfo = serde_json::from_slice(info)
            .map_err(|e| invalid(format!("the backup's header is unreadable: {e}")))?;
        Ok(Self {
            info,
            blob: &content[at..],
        })
    }
}

fn take<'a>(file: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = at.checked_add(n)?;
    let out = file.get(*at..end)?;
    *at = end;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> BackupInfo {
        BackupInfo {
            cluster: "prod".into(),
            node: 2,
            index: 1234,
            term: 3,
            taken_at_ms: 1_700_000_000_000,
            tasks: 10,
            queues: 2,
            version: "0.1.0".into(),
        }
    }

    fn file(blob: &[u8]) -> Vec<u8> {
        let mut w = BackupWriter::new(Vec::new(), &info(), blob.len() as u64).unwrap();
        for piece in blob.chunks(7) {
            w.blob(piece).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn a_backup_round_trips_in_pieces() {
        let blob: Vec<u8> = (0..100u8).collect();
        let f = file(&blob);
        let b = Backup::parse(&f).unwrap();
        assert_eq!(b.info, info());
        assert_eq!(b.blob, &blob[..]);
        let empty = file(&[]);
        assert_eq!(Backup::parse(&empty).unwrap().blob, b"");
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_refused() {
        let f = file(&(0..64u8).collect::<Vec<_>>());
        for n in 0..f.len() {
            let e = Backup::parse(&f[..n]).unwrap_err().to_string();
            assert!(
                e.contains("truncated") || e.contains("not a laneq backup"),
                "cut at {n}: {e}"
            );
        }
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x10;
            let e = Backup::parse(&bad).unwrap_err().to_string();
            assert!(
                ["corrupt", "truncated", "not a laneq backup"]
                    .iter()
                    .any(|w| e.contains(w)),
                "byte {i}: {e}"
            );
        }
        let mut longer = f.clone();
        longer.push(0);
        let e = Backup::parse(&longer).unwrap_err().to_string();
        assert!(e.contains("1 more than its header announces"), "{e}");
    }

    #[test]
    fn a_writer_refuses_a_blob_of_another_size() {
        let mut w = BackupWriter::new(Vec::new(), &info(), 4).unwrap();
        w.blob(b"abc").unwrap();
        assert!(w.blob(b"de").is_err());
        let e = w.finish().err().unwrap().to_string();
        assert!(e.contains("1 bytes short"), "{e}");
    }
}
