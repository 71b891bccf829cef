//! The calls a node makes to another node besides Raft's own messages:
//! forwarding a client write to the leader, and asking the leader for a
//! read index. [`Peers`] is the seam: [`TonicPeers`] carries them over the
//! peer protocol in production, and the simulation (`tests/sim`) carries
//! them over its simulated network, so that forwarding is exercised there
//! too, replayably from a seed.
//!
//! **Architecture Invariant:** this is transport only. Which node to ask,
//! what to do with a refusal and how long to wait in all are decided by
//! [`super::RaftNode`].

use std::time::Duration;

use futures::future::BoxFuture;

use super::{NodeError, PeerNetwork};
use crate::codec::{decode, encode};
use crate::model::{Response, Writes};
use crate::proto::raft::{ForwardRequest, ReadIndexRequest};

/// A leader's answer to a forwarded write.
#[derive(Debug)]
pub enum Forwarded {
    /// Applied: the outcome and the log index of the entry that carried it.
    Applied(Response, u64),
    /// The node asked does not lead; it names the leader it knows, if any.
    NotLeader(Option<(u64, String)>),
}

/// How a node reaches its peers outside Raft's own messages.
pub trait Peers: Send + Sync + 'static {
    /// Sends `writes` to the leader `leader` at `addr`, which proposes them
    /// as its own. An error is a failed transport (the outcome is unknown).
    fn forward(
        &self,
        leader: u64,
        addr: &str,
        writes: Writes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Forwarded, NodeError>>;

    /// Asks the leader at `addr` for the index a linearizable read must
    /// wait for (it confirms its leadership with a quorum first).
    fn read_index(
        &self,
        leader: u64,
        addr: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<u64, NodeError>>;
}

/// [`Peers`] over the peer protocol's `Forward` and `ReadIndex` calls, on
/// the node's shared channels.
pub struct TonicPeers {
    pub network: PeerNetwork,
}

impl Peers for TonicPeers {
    fn forward(
        &self,
        _leader: u64,
        addr: &str,
        writes: Writes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Forwarded, NodeError>> {
        let mut client = self.network.client(addr);
        let addr = addr.to_string();
        Box::pin(async move {
            let mut req = tonic::Request::new(ForwardRequest {
                write: encode(&writes),
            });
            req.set_timeout(timeout);
            let reply = client
                .forward(req)
                .await
                .map_err(|s| {
                    NodeError::Unavailable(format!(
                        "forwarding to the leader at {addr}: {}",
                        s.message()
                    ))
                })?
                .into_inner();
            if reply.not_leader {
                let leader = (reply.leader_id != 0).then_some((reply.leader_id, reply.leader_addr));
                return Ok(Forwarded::NotLeader(leader));
            }
            let response = decode(&reply.response)
                .map_err(|e| NodeError::Unavailable(format!("bad reply from the leader: {e}")))?;
            Ok(Forwarded::Applied(response, reply.index))
        })
    }

    fn read_index(
        &self,
        _leader: u64,
        addr: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<u64, NodeError>> {
        let mut client = self.network.client(addr);
        let addr = addr.to_string();
        Box::pin(async move {
            let mut req = tonic::Request::new(ReadIndexRequest {});
            req.set_timeout(timeout);
            let reply = client.read_index(req).await.map_err(|s| {
                NodeError::Unavailable(format!(
                    "read index from the leader at {addr}: {}",
                    s.message()
                ))
            })?;
            Ok(reply.into_inner().index)
        })
    }
}
