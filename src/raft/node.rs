//! [`RaftNode`]: one laneq replica. It owns the openraft handle and gives the
//! API layer laneq-typed operations: stamped writes (forwarded to the leader
//! when this node follows), linearizable read barriers, status and membership
//! changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, ReadPolicy, ServerState, SnapshotPolicy};

use super::coalesce::{propose_error, Coalescer, ProposeError};
use super::{LogStore, PeerNetwork, Raft, SmShared, StateMachine};
use crate::model::{Response, Write};
use crate::proto::raft::ForwardRequest;
use crate::store::codec::{decode, encode};
use crate::store::Store;

/// How long a forwarded write or a read barrier may take before the caller is
/// told to retry.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the node looks for a fatal Raft error.
const FATAL_POLL: Duration = Duration::from_millis(100);
/// How long a write waits for a reachable leader during an election.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// How often a waiting write tries again when the leader does not change.
const LEADER_POLL: Duration = Duration::from_millis(50);
/// How long a follower waits for its apply to reach a read index.
const READ_APPLY_TIMEOUT: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The leader that the writes of the request being served were forwarded
    /// to, if they were (see [`noting_forwards`]).
    static FORWARDED_TO: std::cell::RefCell<Option<(u64, String)>>;
}

/// Runs `serve` (the handling of one request) and tells which leader, if
/// any, its writes were forwarded to. The server passes that on to the
/// client, which sends its next writes there directly instead of through
/// this node: a forward costs a hop, and this node's work, on every write.
pub async fn noting_forwards<T>(
    serve: impl std::future::Future<Output = T>,
) -> (T, Option<(u64, String)>) {
    FORWARDED_TO
        .scope(std::cell::RefCell::new(None), async move {
            let out = serve.await;
            (out, FORWARDED_TO.with(|f| f.borrow_mut().take()))
        })
        .await
}

/// Raft timings, from the node's config file.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag a little.
    pub max_in_snapshot_log_to_keep: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 25,
            election_timeout_min_ms: 100,
            election_timeout_max_ms: 200,
            snapshot_logs_since_last: 50_000,
            max_in_snapshot_log_to_keep: 1000,
        }
    }
}

impl RaftTimings {
    /// The entries between two snapshots on node `id`: the configured
    /// number, plus a quarter of it on one node of three and half of it on
    /// another. Nodes apply the same entries, so with one number for all
    /// they built their snapshots at the same moment: in the end-to-end
    /// benchmark three builds of a 59 MB snapshot held every write back for
    /// 0.7 s (submit-to-lease p99 15 ms instead of 7). Spread out, a build
    /// slows one node at a time, and while that is a follower the other two
    /// still make a quorum (8 ms).
    pub fn snapshot_interval(&self, id: u64) -> u64 {
        let n = self.snapshot_logs_since_last;
        n + n / 4 * (id % 3)
    }

    /// The openraft config these timings make (public for the simulation,
    /// which builds its Rafts with the same config as a node).
    pub fn to_config(&self, cluster: &str) -> Result<Config, String> {
        let config = Config {
            cluster_name: cluster.to_string(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            replication_lag_threshold: self.snapshot_logs_since_last.max(1) * 2,
            purge_batch_size: self.snapshot_logs_since_last.clamp(1, 256),
            max_payload_entries: super::network::MAX_PAYLOAD_ENTRIES,
            enable_pre_vote: Some(true),
            ..Default::default()
        };
        config.validate().map_err(|e| e.to_string())
    }
}

/// Why a node could not carry out a request. Domain refusals are not here:
/// they are inside [`Response`].
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// This node does not lead; the hint says who does, when known.
    #[error("node {node} is not the leader{}", leader_hint(.leader))]
    NotLeader {
        node: u64,
        leader: Option<(u64, String)>,
    },
    /// The request cannot be served now (no leader, leader lost, timeout).
    /// A write in this state may or may not have been applied: retry it with
    /// the same idempotency key.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The node is shutting down or its storage failed.
    #[error("node stopped: {0}")]
    Fatal(String),
}

fn leader_hint(leader: &Option<(u64, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("; the leader is node {id} at {addr}"),
        None => "; no leader is known yet".to_string(),
    }
}

/// This node's own view of itself.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub id: u64,
    pub addr: String,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub committed_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub digest: String,
    /// (id, addr, voter?)
    pub members: Vec<(u64, String, bool)>,
}

pub struct RaftNode {
    pub id: u64,
    pub addr: String,
    pub cluster: String,
    raft: Raft,
    /// Proposes this node's writes when it leads, many to an entry under load.
    coalescer: Coalescer,
    sm: Arc<SmShared>,
    network: PeerNetwork,
    /// The peers from the config: the membership `init` creates.
    peers: BTreeMap<u64, String>,
    /// A leader that has not heard from a majority for this long (twice the
    /// maximum election timeout, at least 1 s, so that a node slowed by load
    /// is not taken for one) is taken to be cut off: see
    /// [`RaftNode::cut_off_leader`].
    quorum_timeout: Duration,
}

impl RaftNode {
    /// Opens storage and starts Raft. The node does not campaign until it is
    /// part of an initialised membership.
    pub async fn start(
        id: u64,
        addr: String,
        cluster: String,
        store: Store,
        peers: BTreeMap<u64, String>,
        timings: &RaftTimings,
    ) -> Result<Arc<Self>, String> {
        let mut config = timings.to_config(&cluster)?;
        config.snapshot_policy = SnapshotPolicy::LogsSinceLast(timings.snapshot_interval(id));
        let config = Arc::new(config);
        let sm =
            StateMachine::open(store.clone()).map_err(|e| format!("open state machine: {e}"))?;
        let shared = sm.shared();
        let network = PeerNetwork::new(&addr);
        let log = LogStore::of_node(store, id);
        let raft = Raft::new(id, config, network.clone(), log, sm)
            .await
            .map_err(|e| format!("start raft: {e}"))?;
        Ok(Arc::new(Self {
            id,
            addr,
            cluster,
            coalescer: Coalescer::start(raft.clone()),
            raft,
            sm: shared,
            network,
            peers,
            quorum_timeout: Duration::from_millis((timings.election_timeout_max_ms * 2).max(1000)),
        }))
    }

    pub fn sm(&self) -> &SmShared {
        &self.sm
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn network(&self) -> &PeerNetwork {
        &self.network
    }

    /// The current leader's id, as this node knows it (no address copied:
    /// this is on every write's path).
    fn leader_id(&self) -> Option<u64> {
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

    fn not_leader(&self) -> NodeError {
        NodeError::NotLeader {
            node: self.id,
            leader: self.leader().filter(|(id, _)| *id != self.id),
        }
    }

    /// Applies a client write through Raft. On a follower it is forwarded to
    /// the leader. While no leader is reachable (an election is under way) it
    /// waits for the next leader, up to [`LEADER_WAIT`]; the caller retries
    /// after that. Retrying is safe: the idempotency key applies a write once.
    pub async fn write(&self, write: Write) -> Result<Response, NodeError> {
        crate::model::validate_write(&write)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let (response, index) = loop {
            if let Some(e) = self.cut_off_leader() {
                // Waiting here would not help: let the client try another node.
                return Err(e);
            }
            let known = self.leader_id();
            let result = match self.write_as_leader(write.clone()).await {
                Err(NodeError::NotLeader {
                    leader: Some((leader, addr)),
                    ..
                }) if !addr.is_empty() => {
                    let result = self.forward_to(leader, &addr, write.clone()).await;
                    if result.is_ok() {
                        // Outside `noting_forwards` (a write of the node's
                        // own, not a request's) there is nobody to tell.
                        let _ = FORWARDED_TO.try_with(|f| *f.borrow_mut() = Some((leader, addr)));
                    }
                    result
                }
                other => other,
            };
            let retry = matches!(
                &result,
                Err(NodeError::NotLeader { .. }) | Err(NodeError::Unavailable(_))
            );
            if !retry || tokio::time::Instant::now() >= deadline {
                break result?;
            }
            self.wait_leader_change(known, deadline).await;
        };
        // Read-your-writes: whoever answers this write also reads it locally.
        self.sm
            .wait_applied(index, READ_APPLY_TIMEOUT)
            .await
            .map_err(|()| {
                NodeError::Unavailable(format!(
                    "the write was applied at index {index} but this node has not caught up \
                     yet; retry with the same idempotency key"
                ))
            })?;
        Ok(response)
    }

    /// Waits until this node sees a leader other than `old`, or a short poll
    /// interval (a leader we could not reach may be back), or `deadline`.
    async fn wait_leader_change(&self, old: Option<u64>, deadline: tokio::time::Instant) {
        // The server metrics change only with the leader, the vote, the
        // state or the membership; the full metrics change on every write.
        let mut rx = self.raft.server_metrics();
        let changed = async {
            loop {
                let now = rx.borrow_watched().current_leader;
                if now.is_some() && now != old {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let poll = deadline.min(tokio::time::Instant::now() + LEADER_POLL);
        let _ = tokio::time::timeout_at(poll, changed).await;
    }

    /// Stamps and proposes a write if this node leads. Returns the outcome and
    /// the log index it was applied at. A write that waits on a leader that
    /// has lost its majority ends as `Unavailable` (outcome unknown) instead
    /// of waiting for the partition to heal.
    pub async fn write_as_leader(&self, write: Write) -> Result<(Response, u64), NodeError> {
        if self.leader_id().is_some_and(|id| id != self.id) {
            return Err(self.not_leader());
        }
        let propose = self.coalescer.propose(write);
        let cut_off = async {
            loop {
                tokio::time::sleep(LEADER_POLL).await;
                if let Some(e) = self.cut_off_leader() {
                    return e;
                }
            }
        };
        tokio::select! {
            result = propose => result.map_err(|e| self.write_error(e)),
            e = cut_off => Err(e),
        }
    }

    /// `Some(Unavailable)` when this node leads but has had no acknowledgement
    /// from a majority for longer than `quorum_timeout`: it is
    /// cut off from the others, which may well have elected another leader.
    /// openraft keeps such a leader until it hears a higher term, and a write
    /// sent to it would wait for the partition to heal.
    fn cut_off_leader(&self) -> Option<NodeError> {
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

    fn write_error(&self, e: ProposeError) -> NodeError {
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

    /// Forwards to `leader`, giving up as soon as this node learns of another
    /// leader: a leader that froze or was cut off would otherwise hold the
    /// write until the forward times out. The caller then retries with the new
    /// leader, under the same idempotency key.
    async fn forward_to(
        &self,
        leader: u64,
        addr: &str,
        write: Write,
    ) -> Result<(Response, u64), NodeError> {
        // The server metrics, not the full ones: those change on every write
        // and would wake every forward in flight each time.
        let mut rx = self.raft.server_metrics();
        let replaced = async {
            loop {
                let now = rx.borrow_watched().current_leader;
                if now.is_some_and(|l| l != leader) || rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            result = self.forward(addr, write) => result,
            () = replaced => Err(NodeError::Unavailable(format!(
                "node {leader} stopped leading while the write was forwarded to it; its outcome \
                 is unknown: retry with the same idempotency key"
            ))),
        }
    }

    async fn forward(&self, leader_addr: &str, write: Write) -> Result<(Response, u64), NodeError> {
        let mut req = tonic::Request::new(ForwardRequest {
            write: encode(&write),
        });
        req.set_timeout(FORWARD_TIMEOUT);
        let reply = self
            .network
            .client(leader_addr)
            .forward(req)
            .await
            .map_err(|s| {
                NodeError::Unavailable(format!(
                    "forwarding to the leader at {leader_addr}: {}",
                    s.message()
                ))
            })?
            .into_inner();
        if reply.not_leader {
            let leader = (reply.leader_id != 0).then_some((reply.leader_id, reply.leader_addr));
            return Err(NodeError::NotLeader {
                node: self.id,
                leader,
            });
        }
        let response = decode(&reply.response)
            .map_err(|e| NodeError::Unavailable(format!("bad reply from the leader: {e}")))?;
        Ok((response, reply.index))
    }

    /// Returns once this node's state machine reflects every write committed
    /// before the call (a linearizable read barrier).
    pub async fn linearize(&self) -> Result<(), NodeError> {
        let index = if self.raft.is_leader() {
            self.read_index().await?
        } else {
            let Some((_, addr)) = self.leader().filter(|(id, _)| *id != self.id) else {
                return Err(NodeError::Unavailable(
                    "no leader is known yet; retry shortly".into(),
                ));
            };
            let mut req = tonic::Request::new(crate::proto::raft::ReadIndexRequest {});
            req.set_timeout(FORWARD_TIMEOUT);
            let reply = self
                .network
                .client(&addr)
                .read_index(req)
                .await
                .map_err(|s| {
                    NodeError::Unavailable(format!(
                        "read index from the leader at {addr}: {}",
                        s.message()
                    ))
                })?;
            reply.into_inner().index
        };
        self.sm
            .wait_applied(index, READ_APPLY_TIMEOUT)
            .await
            .map_err(|()| {
                NodeError::Unavailable(format!("this node has not applied up to {index} yet"))
            })
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

    /// Creates the cluster from the configured peers. Returns false when it
    /// was already initialised (nothing changes: initialising twice with the
    /// same peers cannot split the cluster).
    pub async fn init(&self) -> Result<bool, NodeError> {
        let members: BTreeMap<u64, BasicNode> = self
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        if !members.contains_key(&self.id) {
            return Err(NodeError::InvalidArgument(format!(
                "node {} is not in its own peer list; fix `peers` in its config",
                self.id
            )));
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(RaftError::APIError(e)) => Err(NodeError::InvalidArgument(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(NodeError::Fatal(e.to_string())),
        }
    }

    /// The peers of the config: the voters that `init` creates.
    pub fn configured_peers(&self) -> &BTreeMap<u64, String> {
        &self.peers
    }

    /// Adds a node as a learner, waits for it to catch up, then makes it a voter.
    pub async fn add_node(&self, id: u64, addr: String) -> Result<(), NodeError> {
        if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        self.raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(|e| self.write_error(propose_error(e)))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.write_error(propose_error(e)))?;
        Ok(())
    }

    pub async fn remove_node(&self, id: u64) -> Result<(), NodeError> {
        if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        let status = self.status();
        if !status.members.iter().any(|(m, _, _)| *m == id) {
            return Err(NodeError::InvalidArgument(format!(
                "node {id} is not a member"
            )));
        }
        let voter = status.members.iter().any(|(m, _, v)| *m == id && *v);
        let change = if voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.write_error(propose_error(e)))?;
        Ok(())
    }

    pub async fn transfer_leader(&self, to: u64) -> Result<(), NodeError> {
        if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        if !self
            .status()
            .members
            .iter()
            .any(|(m, _, voter)| *m == to && *voter)
        {
            return Err(NodeError::InvalidArgument(format!(
                "node {to} is not a voter"
            )));
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| NodeError::Fatal(e.to_string()))
    }

    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Learner => "learner",
            ServerState::Candidate => "candidate",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone(), voters.contains(id)))
            .collect();
        let applied = self.sm.applied();
        let index = |l: &Option<super::LogId>| l.as_ref().map_or(0, |l| l.index());
        NodeStatus {
            id: self.id,
            addr: self.addr.clone(),
            role,
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: applied.index,
            committed_index: index(&m.local_committed),
            snapshot_index: index(&m.snapshot),
            purged_index: index(&m.purged),
            digest: applied.digest_hex(),
            members,
        }
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
