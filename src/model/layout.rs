//! How [`Writes`] are laid out on the log and in forwarded writes. A
//! command was a stamp and one write before batches had a type of their
//! own, and a batch rode in a write whose `Op` was the variant after the
//! last real operation, under a made-up key. The layout stays: a batch is
//! written as such a write, with an empty key and actor and the writes
//! inside, so that every log laneq wrote reads back, and what a node writes
//! now reads on a node of the previous release.
//!
//! Serde's derives can't give a batch `Op`'s next index without making it
//! an operation. So this module writes the layout by hand, and reads it by
//! taking the variant index itself and handing every other index back to
//! `Op`'s own derive ([`ReplayVariant`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, IntoDeserializer, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Op, Write, Writes};

/// The index that stands for a batch where an `Op` is expected: one past
/// `Op`'s last variant (a test checks it; a new operation must not take it).
pub(crate) const BATCH_VARIANT: u32 = 25;
const OP_NAME: &str = "Op";
const BATCH_NAME: &str = "Batch";
const WRITE_FIELDS: &[&str] = &["idempotency_key", "actor", "op"];

impl Serialize for Writes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Writes::One(write) => write.serialize(serializer),
            Writes::Batch(writes) => BatchAsWrite(writes).serialize(serializer),
        }
    }
}

/// A batch in the layout of one write.
struct BatchAsWrite<'a>(&'a [Write]);

impl Serialize for BatchAsWrite<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Write", 3)?;
        s.serialize_field("idempotency_key", "")?;
        s.serialize_field("actor", "")?;
        s.serialize_field("op", &BatchAsOp(self.0))?;
        s.end()
    }
}

/// A batch in the place of an `Op`.
struct BatchAsOp<'a>(&'a [Write]);

impl Serialize for BatchAsOp<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_variant(OP_NAME, BATCH_VARIANT, BATCH_NAME, self.0)
    }
}

impl<'de> Deserialize<'de> for Writes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("Write", WRITE_FIELDS, WritesVisitor)
    }
}

struct WritesVisitor;

impl<'de> Visitor<'de> for WritesVisitor {
    type Value = Writes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a write, or a batch of writes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Writes, A::Error> {
        let idempotency_key: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let actor: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let op = seq
            .next_element_seed(OpOrBatchSeed)?
            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
        Ok(match op {
            OpOrBatch::Op(op) => Writes::One(Write {
                idempotency_key,
                actor,
                op,
            }),
            // The key and actor of a batch's frame (made up before batches
            // had a type: "coalesced", "each") mean nothing.
            OpOrBatch::Batch(writes) => Writes::Batch(writes),
        })
    }
}

enum OpOrBatch {
    Op(Op),
    Batch(Vec<Write>),
}

struct OpOrBatchSeed;

impl<'de> DeserializeSeed<'de> for OpOrBatchSeed {
    type Value = OpOrBatch;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<OpOrBatch, D::Error> {
        // The variant names are for self-describing formats; laneq's log
        // format goes by index.
        deserializer.deserialize_enum(OP_NAME, &[], OpOrBatchVisitor)
    }
}

struct OpOrBatchVisitor;

impl<'de> Visitor<'de> for OpOrBatchVisitor {
    type Value = OpOrBatch;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an operation, or a batch of writes")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<OpOrBatch, A::Error> {
        let (index, variant): (u32, A::Variant) = data.variant()?;
        if index == BATCH_VARIANT {
            return de::VariantAccess::newtype_variant(variant).map(OpOrBatch::Batch);
        }
        Op::deserialize(ReplayVariant { index, variant }).map(OpOrBatch::Op)
    }
}

/// An enum whose variant index was already read: it answers `Op`'s derived
/// `Deserialize` with that index and the rest of the input.
struct ReplayVariant<A> {
    index: u32,
    variant: A,
}

impl<'de, A: de::VariantAccess<'de>> Deserializer<'de> for ReplayVariant<A> {
    type Error = A::Error;

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_enum(self)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, A::Error> {
        Err(de::Error::custom("an operation is an enum"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de, A: de::VariantAccess<'de>> EnumAccess<'de> for ReplayVariant<A> {
    type Error = A::Error;
    type Variant = A;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, A), A::Error> {
        let index: de::value::U32Deserializer<A::Error> = self.index.into_deserializer();
        Ok((seed.deserialize(index)?, self.variant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};
    use crate::model::{Command, Stamp};

    fn drain(key: &str, queue: &str) -> Write {
        Write {
            idempotency_key: key.into(),
            actor: "a".into(),
            op: Op::DrainQueue { name: queue.into() },
        }
    }

    /// The bytes laneq wrote before batches had a type, by bincode's rules
    /// (varint integers, length-prefixed strings and lists, enum variants
    /// by index): a command of one write, and a batch in its frame (made-up
    /// key "coalesced", no actor, `Op` index 25). Format byte 1 first.
    #[test]
    fn commands_keep_the_layout_of_earlier_releases() {
        let stamp = Stamp { now_ms: 1, seed: 2 };
        // DrainQueue is `Op`'s variant 5.
        let write: &[u8] = &[1, b'k', 1, b'a', 5, 1, b'q'];
        let one = [&[1u8, 1, 2][..], write].concat();
        let command = Command {
            stamp,
            writes: Writes::One(drain("k", "q")),
        };
        assert_eq!(encode(&command), one);
        assert_eq!(decode::<Command>(&one).unwrap(), command);

        let mut old_batch = vec![1u8, 1, 2, 9];
        old_batch.extend_from_slice(b"coalesced");
        old_batch.extend_from_slice(&[0, 25, 2]);
        old_batch.extend_from_slice(write);
        old_batch.extend_from_slice(write);
        let batch = Command {
            stamp,
            writes: Writes::Batch(vec![drain("k", "q"), drain("k", "q")]),
        };
        assert_eq!(decode::<Command>(&old_batch).unwrap(), batch);
        // Written now: the same frame, with no made-up key.
        let new_batch = [&[1u8, 1, 2, 0, 0, 25, 2][..], write, write].concat();
        assert_eq!(encode(&batch), new_batch);
        assert_eq!(decode::<Command>(&new_batch).unwrap(), batch);
    }

    /// A batch's index is the one after `ExpireLeases` (24), held by
    /// `Op::BatchSlot`; the operations after it keep theirs.
    #[test]
    fn the_batch_index_follows_the_last_operation() {
        let last = Op::ExpireLeases {
            worker_timeout_ms: 1,
        };
        assert_eq!(encode(&last)[1], 24);
        assert_eq!(BATCH_VARIANT, 25);
        assert_eq!(encode(&Op::BatchSlot)[1], 25);
        let revoke = Op::RevokeToken { name: "a".into() };
        assert_eq!(encode(&revoke)[1], 27);
        let start = Op::StartTaskOn {
            id: 1,
            fencing_token: 1,
            gpus: Vec::new(),
        };
        assert_eq!(encode(&start)[1], 28);
        let remove = Op::RemoveWorker {
            name: "w".into(),
            force: false,
        };
        assert_eq!(encode(&remove)[1], 32);
        let unknown = [1u8, 1, 2, 0, 0, 33];
        let e = decode::<Command>(&unknown).unwrap_err().to_string();
        assert!(e.contains("33"), "{e}");
    }
}
