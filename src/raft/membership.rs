//! A node's cluster membership and its own view of itself: initialising
//! the cluster from the configured peers, adding, removing and promoting
//! nodes, handing leadership over, and [`NodeStatus`].

use std::collections::{BTreeMap, BTreeSet};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};

use super::coalesce::propose_error;
use super::{NodeError, RaftNode};
use crate::wire::Role;

/// This node's own view of itself.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub id: u64,
    pub addr: String,
    pub role: Role,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub committed_index: u64,
    /// The highest index this node knows a quorum has committed (the
    /// leader's word on a follower); at least `committed_index`.
    pub cluster_committed_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub digest: String,
    /// (id, addr, voter?)
    pub members: Vec<(u64, String, bool)>,
    /// On the leader: each other member and the last index it has matched
    /// (None before its first match). Empty on other nodes.
    pub replication: Vec<(u64, Option<u64>)>,
}

impl RaftNode {
    /// Creates the cluster from the configured peers. Returns false when it
    /// was already initialised (nothing changes: initialising twice with the
    /// same peers cannot split the cluster).
    pub async fn init(&self) -> Result<bool, NodeError> {
        let members: BTreeMap<u64, BasicNode> = self
            .configured
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
        &self.configured
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
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Learner => Role::Learner,
            ServerState::Candidate => Role::Candidate,
            ServerState::Shutdown => Role::Shutdown,
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
            cluster_committed_index: index(&m.cluster_committed).max(index(&m.local_committed)),
            snapshot_index: index(&m.snapshot),
            purged_index: index(&m.purged),
            digest: applied.digest_hex(),
            members,
            replication: m
                .replication
                .iter()
                .flatten()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, matched)| (*id, matched.as_ref().map(|l| l.index())))
                .collect(),
        }
    }

    /// Waits until this node's view of the leader differs from `seen` and
    /// returns it; `Err` once Raft has stopped. It watches the server
    /// metrics, which change on elections and membership changes, not on
    /// every write as the full metrics do.
    pub async fn leader_changed(&self, seen: Option<u64>) -> Result<Option<u64>, ()> {
        let mut rx = self.raft.server_metrics();
        loop {
            let now = rx.borrow_watched().current_leader;
            if now != seen {
                return Ok(now);
            }
            rx.changed().await.map_err(|_| ())?;
        }
    }
}
