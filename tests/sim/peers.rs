//! A node's own calls to the leader (forwarded writes, read indexes) over
//! the simulated network: laneq's `Peers` by direct calls into the target's
//! `RaftNode`, with the faults, delays and losses that Raft's messages meet
//! in `net.rs`. Requests and replies go through laneq's codec, as on the
//! wire; a node that is down refuses, and a lost message shows as the
//! caller's deadline passing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use laneq::codec::{decode, encode};
use laneq::model::{Stamp, Writes};
use laneq::raft::{Forwarded, NodeError, Peers, RaftNode, Stamper};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::world::World;

/// Node `from`'s calls to its peers.
pub struct SimPeers {
    pub world: Arc<World>,
    pub from: u64,
}

/// A value after a trip over the wire.
fn wire<T: Serialize + DeserializeOwned>(value: &T) -> T {
    decode(&encode(value)).expect("a message decodes as it was encoded")
}

/// Carries one call from `from` to `to` and its answer back within
/// `timeout`; `deliver` runs on the target. `None` is a lost message.
async fn exchange<T, Fut>(
    world: Arc<World>,
    (kind, from, to): (&str, u64, u64),
    timeout: Duration,
    deliver: impl FnOnce(Arc<RaftNode>) -> Fut,
) -> Result<T, NodeError>
where
    Fut: Future<Output = T>,
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
            () = life.ended() => return Err(format!("node {to} crashed")),
            answer = deliver(node) => answer,
        };
        tokio::time::sleep(world.delay()).await;
        if !world.passes(to, from) {
            return std::future::pending().await;
        }
        Ok(answer)
    };
    let result = tokio::time::timeout(timeout, trip).await;
    let fate = match &result {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "refused",
        Err(_) => "lost",
    };
    world.record(format_args!("net {kind} {from}->{to} {fate}"));
    match result {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(why)) => Err(NodeError::Unavailable(why)),
        Err(_) => Err(NodeError::Unavailable(format!(
            "{kind} to node {to}: no answer within {timeout:?}"
        ))),
    }
}

impl Peers for SimPeers {
    fn forward(
        &self,
        leader: u64,
        _addr: &str,
        writes: Writes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Forwarded, NodeError>> {
        let (world, from) = (self.world.clone(), self.from);
        Box::pin(async move {
            let route = ("forward", from, leader);
            let answer = exchange(world, route, timeout, |node| async move {
                node.write_as_leader(wire(&writes)).await
            })
            .await?;
            // What the leader's `PeerService::forward` answers.
            match answer {
                Ok((response, index)) => Ok(Forwarded::Applied(wire(&response), index)),
                Err(NodeError::NotLeader { leader, .. }) => Ok(Forwarded::NotLeader(leader)),
                Err(e) => Err(NodeError::Unavailable(e.to_string())),
            }
        })
    }

    fn read_index(
        &self,
        leader: u64,
        _addr: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<u64, NodeError>> {
        let (world, from) = (self.world.clone(), self.from);
        Box::pin(async move {
            let route = ("read_index", from, leader);
            let answer = exchange(world, route, timeout, |node| async move {
                node.read_index().await
            })
            .await?;
            answer.map_err(|e| NodeError::Unavailable(e.to_string()))
        })
    }
}

/// Node `id`'s stamps: its own skewed clock and a seed from the run's
/// random source.
pub struct SimClock {
    pub world: Arc<World>,
    pub id: u64,
}

impl Stamper for SimClock {
    fn stamp(&self) -> Stamp {
        Stamp {
            now_ms: self.world.wall_ms(self.id),
            seed: self.world.rand(|r| r.random()),
        }
    }
}
