//! [`Proposal`], the application data of laneq's log entries: a client
//! command together with its encoding, both shared.
//!
//! An entry is written to the leader's log, read back for each follower and
//! for apply, sent to both followers, decoded there, written to their logs
//! and read back for their apply, and hashed into the digest on all three.
//! Carrying the command as its own encoded bytes makes every one of those
//! writes a copy of bytes made once, on the leader; and the log store's
//! cache of recent entries hands out clones that share the command instead
//! of decoding it again. Only a follower decodes a command, once, when the
//! append message arrives.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::codec::{decode, encode};
use crate::model::Command;

/// A command and its format-1 encoding; cloning shares both. It serializes
/// as that encoding, a byte string.
#[derive(Clone)]
pub struct Proposal {
    command: Arc<Command>,
    bytes: Arc<[u8]>,
}

impl Proposal {
    pub fn new(command: Command) -> Self {
        let bytes = encode(&command).into();
        Self {
            command: Arc::new(command),
            bytes,
        }
    }

    pub fn command(&self) -> &Command {
        &self.command
    }

    /// The command's encoding: `codec::encode(self.command())`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl From<Command> for Proposal {
    fn from(command: Command) -> Self {
        Self::new(command)
    }
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.command.fmt(f)
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.command.fmt(f)
    }
}

impl PartialEq for Proposal {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Proposal {}

impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(ProposalVisitor)
    }
}

struct ProposalVisitor;

impl<'de> Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an encoded command")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Proposal, E> {
        let command: Command = decode(bytes).map_err(E::custom)?;
        Ok(Proposal {
            command: Arc::new(command),
            bytes: bytes.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode as decode_v1, encode as encode_v1};
    use crate::model::{Op, Stamp, Write};

    fn command() -> Command {
        Command {
            stamp: Stamp {
                now_ms: 17,
                seed: 99,
            },
            writes: crate::model::Writes::One(Write {
                idempotency_key: "k".into(),
                actor: "alice".into(),
                op: Op::DrainQueue { name: "q".into() },
            }),
        }
    }

    #[test]
    fn a_proposal_carries_the_commands_own_encoding() {
        let p = Proposal::new(command());
        assert_eq!(p.bytes(), encode_v1(&command()).as_slice());
        let back: Proposal = decode_v1(&encode_v1(&p)).unwrap();
        assert_eq!(back.command(), &command());
        assert_eq!(back, p);
    }

    #[test]
    fn bytes_that_are_no_command_are_refused() {
        let not_a_command = encode_v1(&serde_bytes::ByteBuf::from(vec![1u8, 0xff, 0xff]));
        assert!(decode_v1::<Proposal>(&not_a_command).is_err());
    }
}
