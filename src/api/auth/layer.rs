//! The tower layer that identifies the caller of every request and checks
//! the permission its path needs ([`super::permission_of`]), before any
//! handler runs.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tonic::codegen::http;
use tonic::Status;

use super::ON_BEHALF_OF_MAX_BYTES;
use super::{permission_of, with_caller, Access, Caller, ON_BEHALF_OF_HEADER};
use crate::model::token::Role;
use crate::raft::RaftNode;
use crate::tls::NodeTls;

/// Identifies callers on a secure node (one with TLS), and lets every call
/// through unidentified on an insecure one (`tls` is `None`).
#[derive(Clone)]
pub struct AuthLayer {
    node: Arc<RaftNode>,
    tls: Option<Arc<NodeTls>>,
}

impl AuthLayer {
    pub fn new(node: Arc<RaftNode>, tls: Option<Arc<NodeTls>>) -> Self {
        Self { node, tls }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let caller = match &self.layer.tls {
            None => Ok(None),
            Some(tls) => self.layer.identify(tls, &req),
        };
        match caller {
            Ok(caller) => Box::pin(with_caller(caller, self.inner.call(req))),
            Err(status) => {
                let grpc = crate::wire::is_grpc(req.headers());
                Box::pin(futures::future::ready(Ok(refusal(status, grpc))))
            }
        }
    }
}

impl AuthLayer {
    /// The caller of `req`, checked against the permission its path needs.
    fn identify<B>(
        &self,
        tls: &NodeTls,
        req: &http::Request<B>,
    ) -> Result<Option<Arc<Caller>>, Status> {
        let path = req.uri().path();
        let permission = match permission_of(path) {
            Access::Open | Access::Peer => return Ok(None),
            Access::Needs(p) => p,
        };
        let mut caller = self.authenticate(tls, req)?;
        if !caller.role.allows(permission) {
            return Err(Status::permission_denied(format!(
                "token {:?} (role {}) lacks permission {:?}, which {path} needs",
                caller.name,
                caller.role.as_str(),
                permission.as_str()
            )));
        }
        caller.on_behalf_of = on_behalf_of(req.headers(), &caller)?;
        Ok(Some(Arc::new(caller)))
    }

    /// The identity `req` presents: a bearer token, else a client
    /// certificate whose common name names a token.
    fn authenticate<B>(&self, tls: &NodeTls, req: &http::Request<B>) -> Result<Caller, Status> {
        let (name, secret) = match req.headers().get(http::header::AUTHORIZATION) {
            Some(value) => {
                let (name, secret) = bearer(value)?;
                (name.to_string(), Some(secret.to_string()))
            }
            None => match super::certificate_name(tls, req.extensions()) {
                Some(cn) => (cn, None),
                None => {
                    return Err(Status::unauthenticated(
                        "no credentials: pass a token (--token or LANEQ_TOKEN, sent as \
                         `authorization: Bearer <token>`) or a client certificate",
                    ))
                }
            },
        };
        let state = self.node.sm().state();
        let token = state.token(&name).ok_or_else(|| {
            Status::unauthenticated(format!("token {name:?} is unknown or was revoked"))
        })?;
        if let Some(secret) = secret {
            let digest = Sha256::digest(secret.as_bytes());
            if !same(&digest, &token.secret_sha256) {
                return Err(Status::unauthenticated(format!(
                    "token {name:?}: the secret does not match"
                )));
            }
        }
        if token.expired_at(crate::clock::now_ms()) {
            return Err(Status::unauthenticated(format!(
                "token {name:?} expired at {} ms since the epoch",
                token.expires_ms
            )));
        }
        Ok(Caller {
            name,
            role: token.role,
            projects: token.projects.clone(),
            pools: token.pools.clone(),
            on_behalf_of: None,
        })
    }
}

/// `Bearer <name>.<secret>`, split into the token's name and its secret.
fn bearer(value: &http::HeaderValue) -> Result<(&str, &str), Status> {
    let malformed = || {
        Status::unauthenticated("malformed authorization header: expected `Bearer <name>.<secret>`")
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed());
    }
    crate::wire::split_token(token.trim()).ok_or_else(malformed)
}

/// Compares a digest in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `on behalf of` note of a request: an admin's only.
fn on_behalf_of(headers: &http::HeaderMap, caller: &Caller) -> Result<Option<String>, Status> {
    let Some(value) = headers.get(ON_BEHALF_OF_HEADER) else {
        return Ok(None);
    };
    if caller.role != Role::Admin {
        return Err(Status::permission_denied(format!(
            "{ON_BEHALF_OF_HEADER}: only an admin may act on behalf of someone; token {:?} \
             has role {}",
            caller.name,
            caller.role.as_str()
        )));
    }
    let note = value
        .to_str()
        .ok()
        .filter(|n| !n.is_empty() && n.len() <= ON_BEHALF_OF_MAX_BYTES)
        .filter(|n| !n.chars().any(char::is_control))
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "{ON_BEHALF_OF_HEADER}: 1 to {ON_BEHALF_OF_MAX_BYTES} bytes of printable text"
            ))
        })?;
    Ok(Some(note.to_string()))
}

/// The answer to a refused request: a gRPC status, or for plain HTTP (the
/// metrics route) 401 or 403 with the message as text.
fn refusal(status: Status, grpc: bool) -> http::Response<tonic::body::Body> {
    if grpc {
        return status.into_http();
    }
    let code = match status.code() {
        tonic::Code::Unauthenticated => http::StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => http::StatusCode::FORBIDDEN,
        _ => http::StatusCode::BAD_REQUEST,
    };
    let mut response =
        http::Response::new(tonic::body::Body::new(format!("{}\n", status.message())));
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_split_into_name_and_secret() {
        let v = |s: &'static str| http::HeaderValue::from_static(s);
        assert_eq!(bearer(&v("Bearer ci.abc")).unwrap(), ("ci", "abc"));
        assert_eq!(bearer(&v("bearer a.b.c")).unwrap(), ("a.b", "c"));
        for bad in [
            "ci.abc",
            "Basic ci.abc",
            "Bearer ciabc",
            "Bearer .abc",
            "Bearer ci.",
        ] {
            let e = bearer(&v(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
