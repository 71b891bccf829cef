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
use laneq::raft::{Raft, SnapshotData, TypeConfig};
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
fn wire<T: Serialize + DeserializeOwned>(value: &T) -> T {
    decode(&encode(value)).expect("a peer message decodes as it was encoded")
}

fn unreachable(why: &str) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&openraft::AnyError::error(why)))
}

impl SimPeer {
    /// Carries one request to the target and its reply back, within `ttl`.
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
        let (world, from, to) = (&self.world, self.from, self.to);
        let exchange = async {
            tokio::time::sleep(world.delay()).await;
            if !world.passes(from, to) {
                return std::future::pending().await;
            }
            let Some(raft) = world.raft(to) else {
                return Err(format!("node {to} is down"));
            };
            let resp = deliver(raft, req).await.map_err(|e| e.to_string())?;
            tokio::time::sleep(world.delay()).await;
            if !world.passes(to, from) {
                return std::future::pending().await;
            }
            Ok(resp)
        };
        let result = tokio::time::timeout(ttl, exchange).await;
        let fate = match &result {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "refused",
            Err(_) => "lost",
        };
        world.record(format_args!("net {kind} {from}->{to} {fate}"));
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(why)) => Err(unreachable(&why)),
            Err(_) => Err(unreachable("deadline passed")),
        }
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
