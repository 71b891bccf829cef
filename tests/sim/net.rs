//! The simulated network: openraft's `RaftNetworkV2` over direct calls into
//! the target node's `Raft`, with the faults of [`World::faults`]. Every
//! message waits a random delay each way (so messages overtake each other),
//! may be lost on the way there or back, and finds a cut link or a crashed
//! node as a real one would: a loss shows as the RPC's deadline passing, a
//! crashed node as a refused connection. Requests and replies go through
//! laneq's codec, like on the wire.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use laneq::codec::{decode, encode};
use laneq::raft::{Raft, RaftNode, SnapshotData, TypeConfig};
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::world::World;

/// Extra time a snapshot may take over the RPC deadline (as the real
/// network allows per MiB).
const SNAPSHOT_EXTRA: Duration = Duration::from_millis(200);

/// Node `from`'s view of the network.
#[derive(Clone)]
pub struct SimNetwork {
    pub world: Arc<World>,
    pub from: u64,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimPeer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> SimPeer {
        SimPeer {
            world: self.world.clone(),
            from: self.from,
            to: target,
        }
    }
}

/// The link from one node to another.
pub struct SimPeer {
    world: Arc<World>,
    from: u64,
    to: u64,
}

/// A value after a trip over the wire.
pub fn wire<T: Serialize + DeserializeOwned>(value: &T) -> T {
    decode(&encode(value)).expect("a peer message decodes as it was encoded")
}

fn unreachable(why: &str) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&openraft::AnyError::error(why)))
}

/// Carries one call from node `from` (0: a client) to node `to` and its
/// answer back, within `ttl`, under the world's faults: each way waits a
/// random delay and may be lost (then the caller's deadline passes); a node
/// that is down refuses, and a crash of the target mid-call ends the call.
/// `deliver` runs the call on the target; its `Err` is a refusal. Every
/// call's fate goes into the trace. Raft's messages (here) and a node's own
/// calls to the leader (`peers.rs`) both travel this way.
pub async fn carry<T, Fut>(
    world: &World,
    (kind, from, to): (&str, u64, u64),
    ttl: Duration,
    deliver: impl FnOnce(Arc<RaftNode>) -> Fut,
) -> Result<T, String>
where
    Fut: Future<Output = Result<T, String>>,
{
    let trip = async {
        tokio::time::sleep(world.delay()).await;
        if !world.passes(from, to) {
            return std::future::pending().await;
        }
        let Some((node, life)) = world.node(to) else {
            return Err(format!("node {to} is down"));
        };
        // A crash of the target ends the call, as it would close the
        // connection.
        let answer = tokio::select! {
            biased;
            () = life.ended() => Err(format!("node {to} crashed")),
            answer = deliver(node) => answer,
        }?;
        tokio::time::sleep(world.delay()).await;
        if !world.passes(to, from) {
            return std::future::pending().await;
        }
        Ok(answer)
    };
    let result = tokio::time::timeout(ttl, trip).await;
    let fate = match &result {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "refused",
        Err(_) => "lost",
    };
    world.record(format_args!("net {kind} {from}->{to} {fate}"));
    result.unwrap_or_else(|_| Err(format!("{kind} to node {to}: no answer within {ttl:?}")))
}

impl SimPeer {
    /// Carries one Raft request to the target's `Raft` and its reply back.
    async fn call<Req, Resp, E, Fut>(
        &self,
        kind: &str,
        req: Req,
        ttl: Duration,
        deliver: impl FnOnce(Raft, Req) -> Fut,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        E: std::fmt::Display,
        Fut: Future<Output = Result<Resp, E>>,
    {
        let route = (kind, self.from, self.to);
        carry(&self.world, route, ttl, |node| async move {
            let raft = node.raft().clone();
            drop(node);
            deliver(raft, req).await.map_err(|e| e.to_string())
        })
        .await
        .map_err(|why| unreachable(&why))
    }
}

impl RaftNetworkV2<TypeConfig> for SimPeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("append", rpc, option.hard_ttl(), |raft, rpc| async move {
            raft.append_entries(wire(&rpc)).await.map(|r| wire(&r))
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("vote", rpc, option.hard_ttl(), |raft, rpc| async move {
            raft.vote(wire(&rpc)).await.map(|r| wire(&r))
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("pre_vote", rpc, option.hard_ttl(), |raft, rpc| async move {
            raft.pre_vote(wire(&rpc)).await.map(|r| wire(&r))
        })
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("transfer", req, option.hard_ttl(), |raft, req| async move {
            raft.handle_transfer_leader(wire(&req))
                .await
                .map(|r| wire(&r))
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let ttl = option.hard_ttl() + SNAPSHOT_EXTRA;
        let send = self.call(
            "snapshot",
            (vote, snapshot),
            ttl,
            |raft, (vote, s)| async move {
                let s = openraft::storage::Snapshot {
                    meta: wire(&s.meta),
                    snapshot: s.snapshot,
                };
                raft.install_full_snapshot(wire(&vote), s)
                    .await
                    .map(|r| wire(&r))
            },
        );
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = send => res.map_err(StreamingError::from),
        }
    }
}
