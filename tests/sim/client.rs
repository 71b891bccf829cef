//! A simulated client: it sends a write to the node it thinks leads, follows
//! the leader hint it gets back, and retries whatever outcome it did not
//! learn (a lost request or reply, a timeout, a leader change) with the same
//! idempotency key, as `laneq::client` does. The node that accepts the write
//! stamps it with its own clock and a seed from the run's random source,
//! which is what `RaftNode::write_as_leader` does on a real leader.

use std::sync::Arc;
use std::time::Duration;

use laneq::model::{Command, Op, Response, Stamp, Write};
use openraft::errors::{ClientWriteError, RaftError};
use rand::seq::IndexedRandom;
use rand::Rng;

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

    /// One try at one node; `None` when the outcome stays unknown.
    async fn attempt(&mut self, write: &Write) -> Option<(Response, u64)> {
        let world = self.world.clone();
        let target = match self.leader.take() {
            Some(id) => id,
            None => world.rand(|r| *world.ids.choose(r).expect("a node")),
        };
        tokio::time::sleep(world.delay()).await;
        let raft = match world.raft(target) {
            Some(raft) if world.passes(0, target) => raft,
            _ => return None,
        };
        let command = Command {
            stamp: Stamp {
                now_ms: world.wall_ms(target),
                seed: world.rand(|r| r.random()),
            },
            write: write.clone(),
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, raft.client_write(command.into())).await {
            Ok(Ok(resp)) => {
                tokio::time::sleep(world.delay()).await;
                if !world.passes(target, 0) {
                    return None;
                }
                self.leader = Some(target);
                Some((resp.data, resp.log_id.index()))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                self.leader = f.leader_id;
                None
            }
            Ok(Err(_)) | Err(_) => None,
        }
    }
}
