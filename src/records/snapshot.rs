//! The snapshot blob: a header chosen by the caller, then every state machine
//! record, then a checksum over all of it.
//!
//! ```text
//! "LANEQSN1" | u32 header_len | header | { u8 table | u32 klen | key | u32 vlen | value }* | 0xFF | blake3(all before)
//! ```

use std::io;

use super::Table;
use crate::codec::invalid;

const MAGIC: &[u8; 8] = b"LANEQSN1";
const END: u8 = 0xFF;
const CHECKSUM_LEN: usize = 32;

pub struct SnapshotWriter {
    buf: Vec<u8>,
}

impl SnapshotWriter {
    pub fn new(header: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(MAGIC);
        put_bytes(&mut buf, header);
        Self { buf }
    }

    pub fn record(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.buf.push(table.tag());
        put_bytes(&mut self.buf, key);
        put_bytes(&mut self.buf, value);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(END);
        let sum = blake3::hash(&self.buf);
        self.buf.extend_from_slice(sum.as_bytes());
        self.buf
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("a record is below 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// The header of a snapshot blob, or of the first bytes of one, without
/// checking the checksum (which needs the whole blob).
pub fn header_of(prefix: &[u8]) -> io::Result<&[u8]> {
    if prefix.len() < MAGIC.len() || &prefix[..MAGIC.len()] != MAGIC {
        return Err(invalid("not a laneq snapshot"));
    }
    Cursor {
        rest: &prefix[MAGIC.len()..],
    }
    .bytes()
}

/// The header of the snapshot file at `path`, reading only its first bytes;
/// `None` when there is no file.
pub fn read_file_header(path: &std::path::Path) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut head = [0u8; MAGIC.len() + 4];
    f.read_exact(&mut head)?;
    let len = u32::from_le_bytes(head[MAGIC.len()..].try_into().expect("4 bytes")) as usize;
    let mut prefix = head.to_vec();
    prefix.resize(head.len() + len, 0);
    f.read_exact(&mut prefix[head.len()..])?;
    header_of(&prefix).map(|h| Some(h.to_vec()))
}

/// A parsed, checksum-verified snapshot blob.
pub struct SnapshotReader<'a> {
    header: &'a [u8],
    body: &'a [u8],
}

impl<'a> SnapshotReader<'a> {
    pub fn parse(blob: &'a [u8]) -> io::Result<Self> {
        if blob.len() < MAGIC.len() + 4 + 1 + CHECKSUM_LEN || &blob[..MAGIC.len()] != MAGIC {
            return Err(invalid("not a laneq snapshot"));
        }
        let (content, sum) = blob.split_at(blob.len() - CHECKSUM_LEN);
        if blake3::hash(content).as_bytes() != sum {
            return Err(invalid(
                "snapshot checksum mismatch: the snapshot is corrupt",
            ));
        }
        let mut cur = Cursor {
            rest: &content[MAGIC.len()..],
        };
        let header = cur.bytes()?;
        Ok(Self {
            header,
            body: cur.rest,
        })
    }

    pub fn header(&self) -> &'a [u8] {
        self.header
    }

    pub fn records(&self) -> impl Iterator<Item = io::Result<(Table, &'a [u8], &'a [u8])>> + 'a {
        let mut cur = Cursor { rest: self.body };
        std::iter::from_fn(move || {
            let (&tag, rest) = cur.rest.split_first()?;
            if tag == END {
                return None;
            }
            cur.rest = rest;
            let record = (|| Ok((Table::from_tag(tag)?, cur.bytes()?, cur.bytes()?)))();
            if record.is_err() {
                cur.rest = &[];
            }
            Some(record)
        })
    }
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        if self.rest.len() < 4 {
            return Err(invalid("truncated snapshot"));
        }
        let (len, rest) = self.rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if rest.len() < len {
            return Err(invalid("truncated snapshot"));
        }
        let (out, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detect_corruption() {
        let mut w = SnapshotWriter::new(b"hdr");
        w.record(Table::Tasks, b"k1", b"v1");
        w.record(Table::Queues, b"", b"v2");
        let blob = w.finish();
        let r = SnapshotReader::parse(&blob).unwrap();
        assert_eq!(r.header(), b"hdr");
        let records: Vec<_> = r.records().collect::<io::Result<_>>().unwrap();
        assert_eq!(
            records,
            vec![
                (Table::Tasks, &b"k1"[..], &b"v1"[..]),
                (Table::Queues, &b""[..], &b"v2"[..])
            ]
        );
        let mut bad = blob.clone();
        bad[14] ^= 1;
        assert!(SnapshotReader::parse(&bad).is_err());
        assert!(SnapshotReader::parse(b"nope").is_err());
    }

    #[test]
    fn the_header_is_read_from_the_first_bytes_alone() {
        let mut w = SnapshotWriter::new(b"the header");
        w.record(Table::Tasks, b"k", &[7; 4096]);
        let blob = w.finish();
        assert_eq!(header_of(&blob).unwrap(), b"the header");
        assert_eq!(header_of(&blob[..30]).unwrap(), b"the header");
        assert!(header_of(&blob[..15]).is_err(), "a cut header is an error");
        assert!(header_of(b"LANEQSN0....").is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current");
        assert_eq!(read_file_header(&path).unwrap(), None);
        std::fs::write(&path, &blob).unwrap();
        assert_eq!(read_file_header(&path).unwrap().unwrap(), b"the header");
    }
}
