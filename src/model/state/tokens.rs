//! Tokens: created with the digest of a secret the caller made, revoked by
//! name. Their expiry is stamped time; whether a token is still good when
//! presented is the node's check (`auth`), against the same records.

use super::{Key, State};
use crate::model::limits::TOKENS_MAX;
use crate::model::token::{Role, Token};
use crate::model::{ModelError, Op, Reply};

/// The creator recorded on the first admin token.
pub const BOOTSTRAP_CREATOR: &str = "bootstrap";

impl State {
    /// Applies a validated [`Op::CreateToken`] by `actor`.
    pub(super) fn create_token(
        &mut self,
        op: &Op,
        actor: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let Op::CreateToken {
            name,
            role,
            projects,
            pools,
            secret_sha256,
            ttl_ms,
            bootstrap,
        } = op
        else {
            unreachable!("create_token is given a CreateToken");
        };
        if *bootstrap && (!self.tokens.is_empty() || *role != Role::Admin) {
            return Err(ModelError::precondition(
                "bootstrap",
                "the cluster already has tokens: create more with an admin's token \
                 (`laneq token create`)",
            ));
        }
        if self.tokens.contains_key(name) {
            return Err(ModelError::exists(
                "name",
                format!("token {name:?} already exists; revoke it first to replace it"),
            ));
        }
        if self.tokens.len() >= TOKENS_MAX {
            return Err(ModelError::exhausted(
                "name",
                format!("the store holds {TOKENS_MAX} tokens, the limit"),
            ));
        }
        self.scope_exists(projects, pools)?;
        let token = Token {
            name: name.clone(),
            role: *role,
            projects: projects.clone(),
            pools: pools.clone(),
            secret_sha256: secret_sha256.clone(),
            created_ms: self.clock_ms,
            expires_ms: match ttl_ms {
                0 => 0,
                ttl => self.clock_ms.saturating_add(*ttl),
            },
            created_by: if *bootstrap {
                BOOTSTRAP_CREATOR.to_string()
            } else {
                actor.to_string()
            },
        };
        self.tokens.insert(name.clone(), token);
        changed.push(Key::Token(name.clone()));
        Ok(Reply::Token { name: name.clone() })
    }

    /// A token's projects and pools exist.
    fn scope_exists(
        &self,
        projects: &std::collections::BTreeSet<String>,
        pools: &std::collections::BTreeSet<String>,
    ) -> Result<(), ModelError> {
        if let Some(p) = projects.iter().find(|p| !self.projects.contains_key(*p)) {
            return Err(ModelError::not_found(
                "projects",
                format!("project {p:?} does not exist"),
            ));
        }
        if let Some(p) = pools.iter().find(|p| !self.pools.contains_key(*p)) {
            return Err(ModelError::not_found(
                "pools",
                format!("pool {p:?} does not exist"),
            ));
        }
        Ok(())
    }

    pub(super) fn revoke_token(
        &mut self,
        name: &str,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        if self.tokens.remove(name).is_none() {
            return Err(ModelError::not_found(
                "name",
                format!("token {name:?} does not exist"),
            ));
        }
        changed.push(Key::Token(name.to_string()));
        Ok(Reply::Token {
            name: name.to_string(),
        })
    }

    pub fn token(&self, name: &str) -> Option<&Token> {
        self.tokens.get(name)
    }

    pub fn tokens(&self) -> impl Iterator<Item = &Token> {
        self.tokens.values()
    }

    /// Whether any token exists: a cluster without one has not been given
    /// its first admin yet.
    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn load_token(&mut self, token: Token) {
        self.tokens.insert(token.name.clone(), token);
    }
}
