//! [`RaftNode`]: one laneq replica. It owns the openraft handle and gives the
//! rest of laneq laneq-typed operations: stamped writes on the leader (the
//! write path of every node is in `forward.rs`), linearizable read barriers,
//! and (in `membership.rs`) membership changes and status.
//!
//! A node is built from its storage and its [`Wiring`]: how it reaches its
//! peers and where its stamps come from. `RaftNode::start` wires a real node
//! (tonic, the wall clock); the simulation wires its own network and clock
//! through `RaftNode::start_with`, so that it runs this same code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::network::{NetSnapshot, RaftNetworkFactory};
use openraft::{ReadPolicy, ServerState, SnapshotPolicy};

use super::coalesce::{Coalescer, ProposeError, Stamper, WallClock};
use super::forward::{FORWARD_TIMEOUT, LEADER_POLL, READ_APPLY_TIMEOUT};
use super::peers::{Peers, TonicPeers};
use super::{
    LogStore, NodeError, PeerNetwork, Raft, SmShared, SnapshotData, StateMachine, TypeConfig,
};
use crate::config::NodeConfig;
use crate::model::{Response, Writes};
use crate::store::Store;

/// How often the node looks for a fatal Raft error.
const FATAL_POLL: Duration = Duration::from_millis(100);

/// How a node reaches its peers, and where its stamps come from.
pub struct Wiring<N> {
    /// openraft's network: Raft's own messages (append, vote, snapshot).
    pub network: N,
    /// Forwarded writes and read indexes.
    pub peers: Arc<dyn Peers>,
    /// The leader's time and seed for each command.
    pub stamper: Arc<dyn Stamper>,
}

pub struct RaftNode {
    pub id: u64,
    pub addr: String,
    pub cluster: String,
    pub(super) raft: Raft,
    /// Proposes this node's writes when it leads, many to an entry under load.
    coalescer: Coalescer,
    pub(super) sm: Arc<SmShared>,
    pub(super) peers: Arc<dyn Peers>,
    /// The peers from the config: the membership `init` creates.
    pub(super) configured: BTreeMap<u64, String>,
    /// A leader that has not heard from a majority for this long (twice the
    /// maximum election timeout, at least 1 s, so that a node slowed by load
    /// is not taken for one) is taken to be cut off: see
    /// [`RaftNode::cut_off_leader`].
    quorum_timeout: Duration,
}

impl RaftNode {
    /// Opens the state machine on `store` and starts Raft, over gRPC to the
    /// peers, stamping with the wall clock. The node does not campaign until
    /// it is part of an initialised membership.
    pub async fn start(
        config: &NodeConfig,
        store: Store,
        tls: Option<Arc<crate::tls::NodeTls>>,
    ) -> Result<Arc<Self>, String> {
        let from = config.peer_listen.as_deref().unwrap_or(&config.listen);
        let network = PeerNetwork::new(from, tls);
        let wiring = Wiring {
            peers: Arc::new(TonicPeers {
                network: network.clone(),
            }),
            network,
            stamper: Arc::new(WallClock),
        };
        Self::start_with(config, store, wiring).await
    }

    /// [`RaftNode::start`] with the given wiring.
    pub async fn start_with<N>(
        config: &NodeConfig,
        store: Store,
        wiring: Wiring<N>,
    ) -> Result<Arc<Self>, String>
    where
        N: RaftNetworkFactory<TypeConfig>,
        N::Network: NetSnapshot<TypeConfig, SnapshotData = SnapshotData>,
    {
        let timings = &config.raft;
        let mut raft_config = super::openraft_config(timings, &config.cluster)?;
        raft_config.snapshot_policy =
            SnapshotPolicy::LogsSinceLast(timings.snapshot_interval(config.id));
        let sm = StateMachine::open_with(store.clone(), config.history.clone())
            .map_err(|e| format!("open state machine: {e}"))?;
        let shared = sm.shared();
        let log = LogStore::of_node(store, config.id);
        let raft = Raft::new(config.id, Arc::new(raft_config), wiring.network, log, sm)
            .await
            .map_err(|e| format!("start raft: {e}"))?;
        Ok(Arc::new(Self {
            id: config.id,
            addr: config.advertised().to_string(),
            cluster: config.cluster.clone(),
            coalescer: Coalescer::start(raft.clone(), wiring.stamper),
            raft,
            sm: shared,
            peers: wiring.peers,
            configured: config.peer_map(),
            quorum_timeout: Duration::from_millis((timings.election_timeout_max_ms * 2).max(1000)),
        }))
    }

    pub fn sm(&self) -> &SmShared {
        &self.sm
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Whether this node leads, as it knows.
    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.id)
    }

    /// The current leader's id, as this node knows it (no address copied:
    /// this is on every write's path).
    pub(super) fn leader_id(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The current leader and its address, as this node knows them.
    pub fn leader(&self) -> Option<(u64, String)> {
        // Read under the borrow: cloning the whole metrics on every write
        // costs allocations for nothing.
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((id, addr))
    }

    pub(super) fn not_leader(&self) -> NodeError {
        NodeError::NotLeader {
            node: self.id,
            leader: self.leader().filter(|(id, _)| *id != self.id),
        }
    }

    /// Stamps and proposes a write if this node leads. Returns the outcome and
    /// the log index it was applied at. A write that waits on a leader that
    /// has lost its majority ends as `Unavailable` (outcome unknown) instead
    /// of waiting for the partition to heal.
    pub async fn write_as_leader(&self, writes: Writes) -> Result<(Response, u64), NodeError> {
        if self.leader_id().is_some_and(|id| id != self.id) {
            return Err(self.not_leader());
        }
        let propose = self.coalescer.propose(writes);
        let cut_off = async {
            loop {
                tokio::time::sleep(LEADER_POLL).await;
                if let Some(e) = self.cut_off_leader() {
                    return e;
                }
            }
        };
        // Biased: when both are ready, the outcome wins, and a run of the
        // simulation does not depend on tokio's random choice.
        tokio::select! {
            biased;
            result = propose => result.map_err(|e| self.write_error(e)),
            e = cut_off => Err(e),
        }
    }

    /// `Some(Unavailable)` when this node leads but has had no acknowledgement
    /// from a majority for longer than `quorum_timeout`: it is
    /// cut off from the others, which may well have elected another leader.
    /// openraft keeps such a leader until it hears a higher term, and a write
    /// sent to it would wait for the partition to heal.
    pub(super) fn cut_off_leader(&self) -> Option<NodeError> {
        use openraft::Instant as _;
        let rx = self.raft.metrics();
        let silent = {
            let m = rx.borrow_watched();
            if m.state != ServerState::Leader
                || m.membership_config.membership().voter_ids().count() < 2
            {
                return None;
            }
            // None: newly elected, no round acknowledged yet.
            m.last_quorum_acked.as_ref()?.elapsed()
        };
        (silent > self.quorum_timeout).then(|| {
            NodeError::Unavailable(format!(
                "node {} leads but has not heard from a majority for {} ms; it may be cut off: \
                 try another node (a write in flight has an unknown outcome: retry it with the \
                 same idempotency key)",
                self.id,
                silent.as_millis().min(u128::from(u64::MAX))
            ))
        })
    }

    pub(super) fn write_error(&self, e: ProposeError) -> NodeError {
        match e {
            ProposeError::NotLeader => self.not_leader(),
            ProposeError::Discarded => NodeError::Unavailable(
                "leadership changed while the write was in flight; its outcome is unknown: \
                 retry with the same idempotency key"
                    .into(),
            ),
            ProposeError::Refused(e) => NodeError::FailedPrecondition(e),
            ProposeError::Fatal(e) => NodeError::Fatal(e),
        }
    }

    /// Returns once this node's state machine reflects every write committed
    /// before the call (a linearizable read barrier). Returns the index it
    /// waited for.
    pub async fn linearize(&self) -> Result<u64, NodeError> {
        let index = if self.raft.is_leader() {
            self.read_index().await?
        } else {
            let Some((leader, addr)) = self.leader().filter(|(id, _)| *id != self.id) else {
                return Err(NodeError::Unavailable(
                    "no leader is known yet; retry shortly".into(),
                ));
            };
            self.peers
                .read_index(leader, &addr, FORWARD_TIMEOUT)
                .await?
        };
        self.sm
            .wait_applied(index, READ_APPLY_TIMEOUT)
            .await
            .map_err(|()| {
                NodeError::Unavailable(format!("this node has not applied up to {index} yet"))
            })?;
        Ok(index)
    }

    /// On the leader: the index a linearizable read must wait for, after
    /// confirming leadership with a quorum.
    pub async fn read_index(&self) -> Result<u64, NodeError> {
        let linearizer = self
            .raft
            .get_read_linearizer(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(_) => self.not_leader(),
                None => NodeError::Unavailable(e.to_string()),
            })?;
        Ok(linearizer.read_log_id().index())
    }

    /// Resolves when Raft has stopped on a fatal error (a storage failure, a
    /// panic in apply): the node must exit rather than serve half-working.
    ///
    /// The running state is polled, not watched: the full metrics change on
    /// every write, and the main thread, which awaits this, would be woken
    /// for each. Raft ending closes the server metrics, which wakes it at once.
    pub async fn fatal(&self) -> String {
        let mut server = self.raft.server_metrics();
        loop {
            if let Err(e) = &self.raft.metrics().borrow_watched().running_state {
                return e.to_string();
            }
            if let Ok(Err(_)) = tokio::time::timeout(FATAL_POLL, server.changed()).await {
                return "raft stopped".to_string();
            }
        }
    }

    /// Stops Raft: no more appends or applies after this returns.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
