//! `laneq.v1.Tokens`: admin only (the auth layer sees to it).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{key_reused, propose, read_barrier};
use crate::model::token::{Role, Token};
use crate::model::{Op, Reply};
use crate::proto::v1 as pb;
use crate::proto::v1::tokens_server::Tokens;
use crate::raft::RaftNode;

pub struct TokensApi {
    pub(super) node: Arc<RaftNode>,
}

/// A token as listed: never its digest.
pub(super) fn token_info(t: &Token) -> pb::TokenInfo {
    pb::TokenInfo {
        name: t.name.clone(),
        role: t.role.as_str().to_string(),
        projects: t.projects.iter().cloned().collect(),
        pools: t.pools.iter().cloned().collect(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        created_by: t.created_by.clone(),
    }
}

/// The role a request names.
pub(super) fn role(name: &str) -> Result<Role, Status> {
    Role::parse(name).ok_or_else(|| {
        Status::invalid_argument(format!(
            "role: {name:?} is not a role; use admin, submitter, worker or viewer"
        ))
    })
}

#[tonic::async_trait]
impl Tokens for TokensApi {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let req = req.into_inner();
        let op = Op::CreateToken {
            name: req.name,
            role: role(&req.role)?,
            projects: req.projects.into_iter().collect(),
            pools: req.pools.into_iter().collect(),
            secret_sha256: req.secret_sha256,
            ttl_ms: req.ttl_ms,
            bootstrap: false,
        };
        let name = match propose(&self.node, req.meta, op).await?.0 {
            Reply::Token { name } => name,
            other => return Err(key_reused(other)),
        };
        let token = self.node.sm().state().token(&name).map(token_info);
        Ok(Response::new(pb::CreateTokenResponse { token }))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        read_barrier(&self.node, req.into_inner().consistency).await?;
        let tokens = self.node.sm().state().tokens().map(token_info).collect();
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let req = req.into_inner();
        let op = Op::RevokeToken { name: req.name };
        match propose(&self.node, req.meta, op).await?.0 {
            Reply::Token { .. } => Ok(Response::new(pb::RevokeTokenResponse {})),
            other => Err(key_reused(other)),
        }
    }
}
