//! The simulated cluster: real `Store`s on temp dirs, real `LogStore`s,
//! `StateMachine`s and Rafts, over the simulated network. Nodes crash and
//! restart from their data dirs; at the end the cluster heals and must
//! converge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use laneq::model::State;
use laneq::raft::{Applied, LogStore, Raft, RaftTimings, SmShared, StateMachine};
use laneq::store::{Store, StoreOptions};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, ServerState};

use super::net::SimNetwork;
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

pub struct Cluster {
    pub world: Arc<World>,
    dir: tempfile::TempDir,
    config: Arc<openraft::Config>,
    /// The state machine of every node that is up.
    shared: BTreeMap<u64, Arc<SmShared>>,
}

impl Cluster {
    /// Starts every node and initialises the cluster with all of them as
    /// voters.
    pub async fn start(world: Arc<World>) -> Self {
        let config = timings()
            .to_config("sim")
            .expect("the simulation's timings are valid");
        let mut cluster = Self {
            world,
            dir: tempfile::tempdir().expect("temp dir"),
            config: Arc::new(config),
            shared: BTreeMap::new(),
        };
        for id in cluster.world.ids.clone() {
            cluster.start_node(id).await;
        }
        let members: BTreeMap<u64, BasicNode> = cluster
            .world
            .ids
            .iter()
            .map(|&id| (id, BasicNode::new(format!("sim-{id}"))))
            .collect();
        let first = cluster.world.raft(1).expect("node 1 is up");
        first.initialize(members).await.expect("initialize");
        cluster
    }

    /// Opens node `id`'s store and starts its Raft.
    pub async fn start_node(&mut self, id: u64) {
        let dir = self.dir.path().join(id.to_string());
        let store = Store::open_with(&dir, SIM_STORE).expect("open the store");
        let sm = StateMachine::open(store.clone()).expect("open the state machine");
        let shared = sm.shared();
        let network = SimNetwork {
            world: self.world.clone(),
            from: id,
        };
        let raft = Raft::new(id, self.config.clone(), network, LogStore::new(store), sm)
            .await
            .expect("start raft");
        self.world.set_up(id, raft);
        self.shared.insert(id, shared);
        self.world.record(format_args!("start {id}"));
    }

    /// Stops node `id` as a crash would: its Raft stops and every handle on
    /// its store is dropped, so that a restart reopens the store from disk.
    pub async fn crash(&mut self, id: u64) {
        let Some(raft) = self.world.take_down(id) else {
            return;
        };
        self.shared.remove(&id);
        raft.shutdown().await.expect("raft shutdown");
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

    /// Waits until every node has applied the same index, which is also the
    /// last index of every log; returns that index.
    pub async fn converge(&self) -> Result<u64, String> {
        let deadline = tokio::time::Instant::now() + CONVERGE_WITHIN;
        loop {
            let applied: BTreeMap<u64, u64> = self
                .shared
                .iter()
                .map(|(&id, s)| (id, s.applied().index))
                .collect();
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
        self.shared
            .iter()
            .map(|(&id, s)| (id, (s.applied(), s.state().clone())))
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
