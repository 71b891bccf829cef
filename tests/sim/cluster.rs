//! The simulated cluster: real `RaftNode`s (the real `Store` on temp dirs,
//! `LogStore`, `StateMachine`, Raft, coalescer and write path), wired to the
//! simulated network for Raft's messages (`net.rs`) and for their own calls
//! to the leader (`peers.rs`), and stamping with their own skewed clocks.
//! Nodes crash and restart from their data dirs; at the end the cluster
//! heals and must converge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use laneq::config::{NodeConfig, Peer, RaftTimings};
use laneq::model::State;
use laneq::raft::{Applied, RaftNode, StateMachine, Wiring};
use laneq::store::{Store, StoreOptions};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;

use super::net::SimNetwork;
use super::peers::{SimClock, SimPeers};
use super::world::{Faults, World};

/// Small snapshot thresholds, so that a node that was down or cut off for
/// a while catches up by snapshot rather than by log.
pub fn timings() -> RaftTimings {
    RaftTimings {
        snapshot_logs_since_last: 50,
        max_in_snapshot_log_to_keep: 10,
        ..RaftTimings::default()
    }
}

/// A simulated crash ends the node's process, not the machine: nothing the
/// node wrote is lost, so fsync buys nothing here.
const SIM_STORE: StoreOptions = StoreOptions {
    fsync: false,
    inline_io: true,
};

/// How long the healed cluster may take to agree on one applied index.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// How many turns a crash gives the calls in flight on the node to end
/// (each ends at its next poll, once the node's life has ended).
const CRASH_TURNS_MAX: usize = 10_000;

pub struct Cluster {
    pub world: Arc<World>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts every node and initialises the cluster with all of them as
    /// voters.
    pub async fn start(world: Arc<World>) -> Self {
        let mut cluster = Self {
            world,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for id in cluster.world.ids.clone() {
            cluster.start_node(id).await;
        }
        let (first, _) = cluster.world.node(1).expect("node 1 is up");
        assert!(first.init().await.expect("initialize"), "a new cluster");
        cluster
    }

    /// Node `id`'s config: every node a peer, addressed by name.
    fn config(&self, id: u64) -> NodeConfig {
        let addr = |id: u64| format!("sim-{id}");
        NodeConfig {
            id,
            cluster: "sim".into(),
            listen: addr(id),
            advertise: None,
            peer_listen: None,
            // The simulation's network is in memory: no TLS to speak.
            insecure: true,
            tls: None,
            data_dir: self.dir.path().join(id.to_string()),
            peers: (self.world.ids.iter())
                .map(|&id| Peer { id, addr: addr(id) })
                .collect(),
            raft: timings(),
            workers: Default::default(),
            shutdown_drain_ms: 0,
            history: Default::default(),
            watch: Default::default(),
            max_concurrent_requests: 0,
        }
    }

    /// Opens node `id`'s store and starts it.
    pub async fn start_node(&mut self, id: u64) {
        let config = self.config(id);
        let store = Store::open_with(&config.data_dir, SIM_STORE).expect("open the store");
        let world = self.world.clone();
        let wiring = Wiring {
            network: SimNetwork {
                world: world.clone(),
                from: id,
            },
            peers: Arc::new(SimPeers {
                world: world.clone(),
                from: id,
            }),
            stamper: Arc::new(SimClock { world, id }),
        };
        let node = RaftNode::start_with(&config, store, wiring)
            .await
            .expect("start the node");
        self.world.set_up(id, node);
        self.world.record(format_args!("start {id}"));
    }

    /// Stops node `id` as a crash would: its Raft stops, the calls in
    /// flight on it end, and every handle on its store is dropped, so that
    /// a restart reopens the store from disk.
    pub async fn crash(&mut self, id: u64) {
        let Some(node) = self.world.take_down(id) else {
            return;
        };
        node.shutdown().await;
        let mut turns = 0;
        while Arc::strong_count(&node) > 1 {
            assert!(
                turns < CRASH_TURNS_MAX,
                "node {id}: {} handles still held {turns} turns after its crash",
                Arc::strong_count(&node) - 1
            );
            tokio::task::yield_now().await;
            turns += 1;
        }
        self.world.record(format_args!("crash {id}"));
    }

    pub fn down(&self) -> Vec<u64> {
        let up = self.world.up_ids();
        self.world
            .ids
            .iter()
            .copied()
            .filter(|id| !up.contains(id))
            .collect()
    }

    /// The node that leads, as every node that is up and knows a leader
    /// agrees.
    pub fn leader(&self) -> Option<u64> {
        let up = self.world.up_ids();
        up.iter()
            .find(|&&id| {
                let m = self
                    .world
                    .raft(id)
                    .map(|r| r.metrics().borrow_watched().clone());
                m.is_some_and(|m| m.state == ServerState::Leader && m.current_leader == Some(id))
            })
            .copied()
    }

    /// Why nodes stopped on their own (a storage error, a panic in apply),
    /// if any did.
    pub fn stopped(&self) -> Vec<String> {
        self.world
            .up_ids()
            .into_iter()
            .filter_map(|id| {
                let raft = self.world.raft(id)?;
                let m = raft.metrics().borrow_watched().clone();
                m.running_state
                    .err()
                    .map(|e| format!("node {id} stopped: {e}"))
            })
            .collect()
    }

    /// Mends every link and restarts every crashed node.
    pub async fn heal(&mut self) {
        *self.world.faults.lock().unwrap() = Faults::default();
        self.world.record(format_args!("heal"));
        for id in self.down() {
            self.start_node(id).await;
        }
    }

    /// Every node's applied position, by id.
    fn applied(&self) -> BTreeMap<u64, u64> {
        (self.world.ids.iter())
            .map(|&id| {
                let (node, _) = self.world.node(id).expect("all nodes are up");
                (id, node.sm().applied().index)
            })
            .collect()
    }

    /// Waits until every node has applied the same index, which is also the
    /// last index of every log; returns that index.
    pub async fn converge(&self) -> Result<u64, String> {
        let deadline = tokio::time::Instant::now() + CONVERGE_WITHIN;
        loop {
            let applied = self.applied();
            let last: BTreeMap<u64, Option<u64>> = self
                .world
                .ids
                .iter()
                .map(|&id| {
                    let raft = self.world.raft(id).expect("all nodes are up");
                    let last = raft.metrics().borrow_watched().last_log_index;
                    (id, last)
                })
                .collect();
            let first = applied[&1];
            let agreed = applied.values().all(|&a| a == first)
                && last.values().all(|&l| l == Some(first))
                && self.leader().is_some();
            if agreed {
                return Ok(first);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the healed cluster did not converge within {CONVERGE_WITHIN:?}: applied \
                     {applied:?}, last log {last:?}, leader {:?} {:?}",
                    self.leader(),
                    self.stopped()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every node's applied position and state.
    pub fn states(&self) -> BTreeMap<u64, (Applied, State)> {
        (self.world.ids.iter())
            .filter_map(|&id| {
                let (node, _) = self.world.node(id)?;
                let sm = node.sm();
                let state = sm.state().clone();
                Some((id, (sm.applied(), state)))
            })
            .collect()
    }

    /// Stops every node and loads its state machine again from disk.
    pub async fn reload(mut self) -> BTreeMap<u64, (Applied, State)> {
        for id in self.world.ids.clone() {
            self.crash(id).await;
        }
        self.world
            .ids
            .iter()
            .map(|&id| {
                let dir = self.dir.path().join(id.to_string());
                let store = Store::open_with(&dir, SIM_STORE).expect("reopen the store");
                let sm = StateMachine::open(store).expect("reload the state machine");
                let shared = sm.shared();
                let loaded = (shared.applied(), shared.state().clone());
                (id, loaded)
            })
            .collect()
    }
}
