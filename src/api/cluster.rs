//! `laneq.v1.Cluster`: init, membership changes, leader transfer, status,
//! and snapshots for backup (in `backup`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::node_status;
use crate::duties::WorkerHub;
use crate::model::token::Role;
use crate::model::{Op, Reply};
use crate::proto::v1 as pb;
use crate::proto::v1::cluster_server::Cluster;
use crate::raft::RaftNode;

pub struct ClusterApi {
    pub(super) node: Arc<RaftNode>,
    /// For the lease polls waiting in the node's status.
    pub(super) hub: Arc<WorkerHub>,
    /// One snapshot save at a time (see `backup`).
    pub(super) saving: Arc<tokio::sync::Semaphore>,
}

fn members(node: &RaftNode) -> Vec<pb::Member> {
    node.status()
        .members
        .into_iter()
        .map(|(id, addr, voter)| pb::Member {
            id,
            addr,
            kind: if voter { "voter" } else { "learner" }.to_string(),
        })
        .collect()
}

/// The name of the first admin token, which `Init` stores.
const BOOTSTRAP_ADMIN: &str = "admin";

impl ClusterApi {
    /// Stores the first admin token, unless the cluster has tokens already
    /// (then returns false: the model refuses a second bootstrap).
    async fn bootstrap_admin(
        &self,
        meta: Option<pb::WriteMeta>,
        secret_sha256: Vec<u8>,
    ) -> Result<bool, Status> {
        let op = Op::CreateToken {
            name: BOOTSTRAP_ADMIN.to_string(),
            role: Role::Admin,
            projects: Default::default(),
            pools: Default::default(),
            secret_sha256,
            ttl_ms: 0,
            bootstrap: true,
        };
        match super::propose(&self.node, meta, op).await {
            Ok((Reply::Token { .. }, _)) => Ok(true),
            Ok((other, _)) => Err(super::key_reused(other)),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Ok(false),
            Err(s) => Err(s),
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn init(
        &self,
        req: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let req = req.into_inner();
        let initialized_now = self.node.init().await.map_err(node_status)?;
        let admin_token_created = match req.admin_token_sha256.is_empty() {
            true => false,
            false => {
                self.bootstrap_admin(req.meta, req.admin_token_sha256)
                    .await?
            }
        };
        let members = if initialized_now {
            let peers = self.node.configured_peers().iter();
            peers
                .map(|(id, addr)| pb::Member {
                    id: *id,
                    addr: addr.clone(),
                    kind: "voter".into(),
                })
                .collect()
        } else {
            members(&self.node)
        };
        Ok(Response::new(pb::InitResponse {
            initialized_now,
            members,
            admin_token_created,
            admin_token_name: match admin_token_created {
                true => BOOTSTRAP_ADMIN.to_string(),
                false => String::new(),
            },
        }))
    }

    async fn add_node(
        &self,
        req: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        let req = req.into_inner();
        if req.id == 0 {
            return Err(Status::invalid_argument("id: must be 1 or more"));
        }
        if let Err(e) = crate::config::host_port(&req.addr) {
            return Err(Status::invalid_argument(format!(
                "addr: {:?} is not a host:port address: {e}",
                req.addr
            )));
        }
        // A retried add-node (the first attempt may outlast the client's
        // patience while the learner catches up) finishes the job instead of
        // failing; the same id at another address is refused.
        let status = self.node.status();
        if let Some((_, addr, voter)) = status.members.iter().find(|(id, _, _)| *id == req.id) {
            if *addr != req.addr {
                return Err(Status::already_exists(format!(
                    "id: node {} is already a member, at {addr}; node ids are never reused",
                    req.id
                )));
            }
            if *voter {
                return Ok(Response::new(pb::AddNodeResponse {
                    members: members(&self.node),
                }));
            }
        }
        self.node
            .add_node(req.id, req.addr)
            .await
            .map_err(node_status)?;
        Ok(Response::new(pb::AddNodeResponse {
            members: members(&self.node),
        }))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        self.node
            .remove_node(req.into_inner().id)
            .await
            .map_err(node_status)?;
        Ok(Response::new(pb::RemoveNodeResponse {
            members: members(&self.node),
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let to = req.into_inner().id;
        self.node.transfer_leader(to).await.map_err(node_status)?;
        Ok(Response::new(pb::TransferLeaderResponse { leader_id: to }))
    }

    async fn membership(
        &self,
        _req: Request<pb::MembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        Ok(Response::new(pb::MembershipResponse {
            leader_id: self.node.status().leader_id,
            members: members(&self.node),
        }))
    }

    async fn node_status(
        &self,
        _req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let s = self.node.status();
        Ok(Response::new(pb::NodeStatusResponse {
            id: s.id,
            addr: s.addr,
            role: s.role.as_str().to_string(),
            term: s.term,
            leader_id: s.leader_id,
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
            committed_index: s.committed_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            digest: s.digest,
            members: members(&self.node),
            cluster: self.node.cluster.clone(),
            lease_polls_waiting: self.hub.reservations.polls_waiting(),
        }))
    }

    type SaveSnapshotStream = super::backup::SnapshotStream;

    async fn save_snapshot(
        &self,
        _req: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<Self::SaveSnapshotStream>, Status> {
        super::backup::save_snapshot(self.node.clone(), self.saving.clone())
            .await
            .map(Response::new)
    }
}
