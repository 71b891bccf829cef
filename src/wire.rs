//! What a client and a server of laneq's gRPC API must agree on beyond the
//! protobuf: the headers that carry a leader hint, the message size limits,
//! the transport settings of a channel (plaintext or TLS), and the shape of
//! idempotency keys.
//!
//! **Architecture Invariant:** a leaf. Nothing here imports another laneq
//! module, so that the client and the server can both depend on it without
//! depending on each other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Response metadata naming the leader's id, on a forwarded call's answer
/// or on UNAVAILABLE from a node that does not lead: the client sends its
/// next calls there directly.
pub const LEADER_ID_HEADER: &str = "laneq-leader-id";
/// Response metadata naming the leader's address (see [`LEADER_ID_HEADER`]).
pub const LEADER_ADDR_HEADER: &str = "laneq-leader-addr";
/// Request metadata naming a call in the node's log; the node makes one up
/// when a call has none, and returns it in the response's metadata.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Request metadata in which an admin names whom a call is for; the node
/// records it beside the admin's identity in timelines.
pub const ON_BEHALF_OF_HEADER: &str = "laneq-on-behalf-of";

/// Whether an HTTP request or response is gRPC (by its content type).
pub fn is_grpc(headers: &tonic::codegen::http::HeaderMap) -> bool {
    headers
        .get(tonic::codegen::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"))
}

/// A token `<name>.<secret>` split into its name and secret, both
/// non-empty; the secret is what follows the last dot.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    token
        .rsplit_once('.')
        .filter(|(name, secret)| !name.is_empty() && !secret.is_empty())
}

/// Largest client request or response (a submit carries at most 1 MiB of
/// payload; a batch of many, up to this).
pub const CLIENT_MESSAGE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// A call that the client's batcher fills stops growing past this many
/// bytes, as its estimate counts them: a margin under
/// [`CLIENT_MESSAGE_MAX_BYTES`] for what the estimate leaves out.
pub const CLIENT_BATCH_MAX_BYTES: usize = CLIENT_MESSAGE_MAX_BYTES - 1024 * 1024;

/// Time allowed to set up a TCP connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP/2 pings on an idle connection, and how long a ping may go
/// unanswered before the connection is dropped: a node that vanished
/// without closing its sockets is noticed within seconds.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A gRPC endpoint for a `host:port` address with laneq's transport
/// settings (Nagle off: small replies must not wait for a delayed ACK).
pub fn endpoint(addr: &str) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|_| Endpoint::from_static("http://invalid.address.invalid:1"))
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

/// A lazily connected channel to `addr`, for clients.
pub fn endpoint_channel(addr: &str) -> Channel {
    endpoint(addr).connect_lazy()
}

/// [`endpoint`] over TLS (`https://`): the node's certificate is checked
/// against `tls`'s CA and the address's host (or the configured server
/// name), and `tls`'s client certificate, if any, is presented.
pub fn tls_endpoint(addr: &str, tls: &ClientTlsConfig) -> Result<Endpoint, String> {
    let uri = format!("https://{addr}");
    let endpoint = Endpoint::from_shared(uri).map_err(|e| format!("{addr}: {e}"))?;
    let endpoint = endpoint
        .tls_config(tls.clone())
        .map_err(|e| format!("TLS for {addr}: {e}"))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// A lazily connected channel to `addr`: over TLS when `tls` is given.
/// An address that cannot be made into an endpoint gives a channel whose
/// calls fail as unreachable, like a node that is down.
pub fn channel(addr: &str, tls: Option<&ClientTlsConfig>) -> Channel {
    match tls {
        None => endpoint_channel(addr),
        Some(tls) => tls_endpoint(addr, tls)
            .unwrap_or_else(|_| Endpoint::from_static("http://invalid.address.invalid:1"))
            .connect_lazy(),
    }
}

/// What a client needs to reach nodes over TLS: the CA that signed the
/// nodes' certificates, and optionally a client certificate and its key
/// (an identity, when the nodes verify client certificates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificates that the nodes' certificates must chain to.
    pub ca: PathBuf,
    /// PEM client certificate to present.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// The name to check the node's certificate for, instead of the host
    /// of the address dialed (when nodes are reached through an address
    /// their certificates do not name).
    pub server_name: Option<String>,
}

impl TlsFiles {
    /// Reads the files; errors name the file and what is wrong with it.
    pub fn load(&self) -> Result<ClientTlsConfig, String> {
        let ca = read_pem(&self.ca, "CA")?;
        if CertificateDer::pem_slice_iter(&ca).next().is_none() {
            return Err(format!("CA {} holds no PEM certificate", self.ca.display()));
        }
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert = read_pem(cert, "client certificate")?;
                let key_pem = read_pem(key, "client key")?;
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    format!("client key {} is not a PEM private key: {e}", key.display())
                })?;
                config = config.identity(Identity::from_pem(cert, key_pem));
            }
            (Some(_), None) => return Err("a client certificate needs its key".into()),
            (None, Some(_)) => return Err("a client key needs its certificate".into()),
            (None, None) => {}
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        // Made once here so that a bad file fails now, not at each call.
        tls_endpoint("localhost:1", &config)?;
        Ok(config)
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// A fresh idempotency key for one logical write: a UUIDv7, whose leading
/// bits are the time, so that the keys one process makes sort in the order
/// it made them. Every node keeps the keys of the last day in an ordered
/// map, where keys that arrive in order insert at its right edge; random
/// keys (UUIDv4) cost a cache miss at every level of it.
pub fn new_idempotency_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The key of the n-th command that one request proposes (a clear in steps,
/// a lease poll that tries again): n = 0 is the request's own key; the
/// others are `key/n`, the key cut to leave room for the suffix within the
/// key limit. A retried request therefore replays the same commands in the
/// same order.
pub fn nth_key(key: &str, n: u64) -> String {
    if n == 0 {
        return key.to_string();
    }
    let mut cut = key.len().min(NTH_KEY_BASE_MAX_BYTES);
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}/{n}", &key[..cut])
}

/// The part of a request's key that an n-th key keeps (see [`nth_key`]).
const NTH_KEY_BASE_MAX_BYTES: usize = 100;

/// The role a node reports in its status (`NodeStatusResponse.role`,
/// spelled by [`Role::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Learner,
    Candidate,
    Shutdown,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Leader,
        Role::Follower,
        Role::Learner,
        Role::Candidate,
        Role::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
            Role::Candidate => "candidate",
            Role::Shutdown => "shutdown",
        }
    }

    /// The role a status names; `None` for a name this laneq does not know.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_made_in_order_sort_in_order() {
        let keys: Vec<String> = (0..64).map(|_| new_idempotency_key()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(
            keys.iter().collect::<std::collections::BTreeSet<_>>().len(),
            keys.len(),
            "keys are unique"
        );
    }

    #[test]
    fn nth_keys_derive_from_the_request_key() {
        assert_eq!(nth_key("abc", 0), "abc");
        assert_eq!(nth_key("abc", 7), "abc/7");
        let long = "é".repeat(80); // 160 bytes: cut at a char boundary
        let derived = nth_key(&long, 12);
        assert_eq!(derived, format!("{}/12", "é".repeat(50)));
    }

    #[test]
    fn tokens_split_at_their_last_dot() {
        assert_eq!(split_token("ci.abc"), Some(("ci", "abc")));
        assert_eq!(split_token("a.b.c"), Some(("a.b", "c")));
        for bad in ["ciabc", ".abc", "ci.", ""] {
            assert_eq!(split_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn roles_read_back_as_they_are_spelled() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("boss"), None);
    }

    #[test]
    fn the_batch_limit_leaves_room_under_the_message_limit() {
        const { assert!(CLIENT_BATCH_MAX_BYTES < CLIENT_MESSAGE_MAX_BYTES) };
        assert_eq!(
            endpoint("127.0.0.1:7101").uri().to_string(),
            "http://127.0.0.1:7101/"
        );
    }
}
