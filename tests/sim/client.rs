//! A simulated client: it sends a write to the node it thinks leads, which
//! runs it through laneq's own write path (`RaftNode::write`: forwarding to
//! the leader, waiting out an election, giving up on a cut-off leader, the
//! leader's coalescer and stamps). It follows the leader its answer names,
//! and retries whatever outcome it did not learn (a lost request or reply,
//! a timeout, a leader change) with the same idempotency key, as
//! `laneq::client` does. It also makes linearizable reads.

use std::sync::Arc;
use std::time::Duration;

use laneq::model::{Op, Response, Write};
use laneq::raft::{noting_forwards, NodeError};
use rand::seq::IndexedRandom;
use rand::Rng;

use super::history::ReadView;
use super::net::wire;
use super::world::World;

/// How long a client waits for one attempt's answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client keeps retrying one write before it gives up, with the
/// outcome unknown. Short enough that some writes end unknown under chaos.
const WRITE_DEADLINE: Duration = Duration::from_secs(3);
/// How long the client that checks the healed cluster keeps trying.
const PATIENT_DEADLINE: Duration = Duration::from_secs(30);

pub struct Client {
    world: Arc<World>,
    name: String,
    writes: u64,
    /// The node this client sends to next: the last leader it heard of.
    leader: Option<u64>,
    deadline: Duration,
}

impl Client {
    pub fn new(world: Arc<World>, name: &str) -> Self {
        Self {
            world,
            name: name.to_string(),
            writes: 0,
            leader: None,
            deadline: WRITE_DEADLINE,
        }
    }

    /// A client that keeps trying for much longer: a healed cluster must
    /// take its write.
    pub fn patient(world: Arc<World>, name: &str) -> Self {
        Self {
            deadline: PATIENT_DEADLINE,
            ..Self::new(world, name)
        }
    }

    /// Applies `op` under a fresh idempotency key, retrying until the
    /// outcome is known or the deadline passes; records it in the history.
    pub async fn write(&mut self, op: Op) -> Option<(Response, u64)> {
        self.writes += 1;
        let write = Write {
            idempotency_key: format!("{}-{}", self.name, self.writes),
            actor: self.name.clone(),
            op,
        };
        let sent_ms = self.world.now_ms();
        let deadline = tokio::time::Instant::now() + self.deadline;
        let mut outcome = None;
        while outcome.is_none() && tokio::time::Instant::now() < deadline {
            outcome = self.attempt(&write).await;
            if outcome.is_none() {
                let pause = self.world.rand(|r| r.random_range(20..100));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
        (self.world).record_write(&self.name, &write, sent_ms, outcome.clone());
        outcome
    }

    /// One try at one node, through its real write path (`RaftNode::write`:
    /// validation, forwarding, leader waits, the coalescer, the wait for
    /// its own apply); `None` when the outcome stays unknown.
    async fn attempt(&mut self, write: &Write) -> Option<(Response, u64)> {
        let world = self.world.clone();
        let target = self.target();
        tokio::time::sleep(world.delay()).await;
        let (node, life) = match world.node(target) {
            Some(up) if world.passes(0, target) => up,
            _ => return None,
        };
        let call = noting_forwards(node.write(wire(write)));
        let answer = tokio::select! {
            biased;
            () = life.ended() => return None,
            answer = tokio::time::timeout(ATTEMPT_TIMEOUT, call) => answer.ok()?,
        };
        drop(node);
        match answer {
            (Ok((response, index)), forwarded) => {
                tokio::time::sleep(world.delay()).await;
                if !world.passes(target, 0) {
                    return None;
                }
                // A forwarded write's answer names the leader, as the
                // server's `LeaderHint` does.
                self.leader = Some(forwarded.map_or(target, |(id, _)| id));
                Some((wire(&response), index))
            }
            (Err(NodeError::NotLeader { leader, .. }), _) => {
                self.leader = leader.map(|(id, _)| id);
                None
            }
            (Err(NodeError::InvalidArgument(why)), _) => {
                panic!("the simulation wrote a malformed write {write:?}: {why}")
            }
            (Err(_), _) => None,
        }
    }

    /// A linearizable read of the applied index at a node of the seed's
    /// choosing (`RaftNode::linearize`: the leader's read index, asked for
    /// from a follower), recorded in the history.
    pub async fn read(&mut self) {
        let world = self.world.clone();
        let sent_ms = world.now_ms();
        let target = world.rand(|r| *world.ids.choose(r).expect("a node"));
        let answer = async {
            tokio::time::sleep(world.delay()).await;
            let (node, life) = match world.node(target) {
                Some(up) if world.passes(0, target) => up,
                _ => return Err(format!("node {target} unreachable")),
            };
            let barrier = tokio::select! {
                biased;
                () = life.ended() => return Err(format!("node {target} crashed")),
                barrier = tokio::time::timeout(ATTEMPT_TIMEOUT, node.linearize()) => barrier,
            };
            match barrier {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("no answer in time".to_string()),
            }
            let view = ReadView {
                node: target,
                applied: node.sm().applied().index,
                tasks: Vec::new(),
            };
            drop(node);
            tokio::time::sleep(world.delay()).await;
            match world.passes(target, 0) {
                true => Ok(view),
                false => Err("the answer was lost".to_string()),
            }
        };
        let answer = answer.await;
        world.record_read(&self.name, sent_ms, answer);
    }

    /// The node to try next: the last leader heard of, else one at random.
    fn target(&mut self) -> u64 {
        match self.leader.take() {
            Some(id) => id,
            None => (self.world).rand(|r| *self.world.ids.choose(r).expect("a node")),
        }
    }
}
