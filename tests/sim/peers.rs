//! A node's own calls to the leader (forwarded writes, read indexes) over
//! the simulated network: laneq's `Peers` by direct calls into the target's
//! `RaftNode`, carried as Raft's messages are (`net::carry`: delays, losses,
//! cut links, crashes). Requests and replies go through laneq's codec, as
//! on the wire. And a node's stamps, from its own skewed clock.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use laneq::model::{Stamp, Writes};
use laneq::raft::{Forwarded, NodeError, Peers, Stamper};
use rand::Rng;

use super::net::{carry, wire};
use super::world::World;

/// Node `from`'s calls to its peers.
pub struct SimPeers {
    pub world: Arc<World>,
    pub from: u64,
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
            let answer = carry(&world, route, timeout, |node| async move {
                Ok(node.write_as_leader(wire(&writes)).await)
            })
            .await
            .map_err(NodeError::Unavailable)?;
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
            let answer = carry(&world, route, timeout, |node| async move {
                Ok(node.read_index().await)
            })
            .await
            .map_err(NodeError::Unavailable)?;
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
