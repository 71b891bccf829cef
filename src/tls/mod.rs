//! A node's TLS: the client port's certificate, mutual TLS between peers,
//! and reloading both on SIGHUP without a restart.
//!
//! The node accepts TCP itself and handshakes with the config current at
//! that moment ([`incoming`]), rather than through tonic's fixed
//! `ServerTlsConfig`: a reload swaps the config that the next handshake
//! uses, and connections already open keep theirs. Dialing peers takes the
//! current [`NodeTls::dial`] config the same way (`raft::network` drops its
//! cached channels when [`NodeTls::generation`] moves).
//!
//! Handlers read who called from the request: [`peer_identity`] is the
//! common name of the client certificate that the handshake verified. The
//! peer service admits only callers whose chain leads to the peer CA
//! ([`NodeTls::is_peer`], applied by [`PeerGate`]).
//!
//! This module must never accept a certificate it did not verify, nor
//! replace a working config with a half-loaded one.

mod accept;
mod load;
mod material;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::ServerConfig;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::ClientTlsConfig;

pub use accept::{incoming, HANDSHAKE_TIMEOUT};
pub use load::{common_name, provider};

use crate::config::{host_of, NodeConfig, TlsSettings};
use material::{Layout, Material};

/// How long the peer gate trusts a certificate it verified before it
/// verifies it again (a signature check per peer RPC otherwise; forwarded
/// writes are many).
const PEER_VERDICT_TTL: Duration = Duration::from_secs(60);
/// Most peer certificates the gate remembers: a cluster has a few nodes;
/// past this the memory is cleared, not grown.
const PEER_VERDICTS_MAX: usize = 64;

/// A secure node's TLS state: the files it was configured with and the
/// configs made from them, swapped whole by [`NodeTls::reload`].
pub struct NodeTls {
    settings: TlsSettings,
    /// Peers have their own listener (`peer_listen`): the client port then
    /// serves no peer and trusts only the client CA.
    split: bool,
    /// The host peers dial this node at; what it presents them is checked
    /// against it at every load.
    peer_host: String,
    current: RwLock<Arc<Material>>,
    /// Bumped by every successful reload, so that dialers drop channels
    /// made with the old files.
    generation: AtomicU64,
    /// Leaf certificates the peer gate verified lately, and when.
    peers_seen: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl NodeTls {
    /// Loads `[tls]` of a validated config; `None` for an insecure node.
    /// Errors name the config key at fault.
    pub fn load(config: &NodeConfig) -> Result<Option<Arc<NodeTls>>, String> {
        let Some(settings) = config.tls.clone().filter(|_| config.secure()) else {
            return Ok(None);
        };
        let peers = config.peer_map();
        let peer_host = host_of(&peers[&config.id]).to_string();
        let split = config.peer_listen.is_some();
        let layout = Layout {
            split,
            peer_host: &peer_host,
        };
        let material = material::build(&settings, &layout)?;
        Ok(Some(Arc::new(NodeTls {
            settings,
            split,
            peer_host,
            current: RwLock::new(Arc::new(material)),
            generation: AtomicU64::new(0),
            peers_seen: Mutex::default(),
        })))
    }

    /// Reads every file again and swaps the configs in; on an error the
    /// old ones stay and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let layout = Layout {
            split: self.split,
            peer_host: &self.peer_host,
        };
        let material = material::build(&self.settings, &layout)?;
        *self.current.write().expect("tls material poisoned") = Arc::new(material);
        self.peers_seen
            .lock()
            .expect("peer verdicts poisoned")
            .clear();
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn material(&self) -> Arc<Material> {
        self.current.read().expect("tls material poisoned").clone()
    }

    /// What the client port's next handshake uses.
    pub fn client_port(&self) -> Arc<ServerConfig> {
        self.material().client_port.clone()
    }

    /// What `peer_listen`'s next handshake uses: a peer certificate required.
    pub fn peer_port(&self) -> Arc<ServerConfig> {
        self.material().peer_port.clone()
    }

    /// How to dial a peer now: its certificate must chain to the peer CA,
    /// and this node presents its peer certificate.
    pub fn dial(&self) -> ClientTlsConfig {
        self.material().dial.clone()
    }

    /// Moves on every reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a connection's verified chain (leaf first) leads to the
    /// peer CA. A client CA's certificate, or none, is not a peer.
    pub fn is_peer(&self, chain: Option<&[CertificateDer<'static>]>) -> bool {
        let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return false;
        };
        let mut seen = self.peers_seen.lock().expect("peer verdicts poisoned");
        if seen
            .get(leaf.as_ref())
            .is_some_and(|at| at.elapsed() < PEER_VERDICT_TTL)
        {
            return true;
        }
        let verifier = self.material().peer_verifier.clone();
        if verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_err()
        {
            return false;
        }
        if seen.len() >= PEER_VERDICTS_MAX {
            seen.clear();
        }
        seen.insert(leaf.as_ref().to_vec(), Instant::now());
        true
    }
}

/// The identity of a TLS caller: the subject common name (CN) of the
/// client certificate its handshake presented and the node verified, from
/// an HTTP request's extensions (in a tower layer). `None` over plaintext,
/// or when the caller sent no certificate, or one without a CN. In a gRPC
/// handler, [`request_identity`] reads the same from a `tonic::Request`.
///
/// The client port accepts certificates of the client CA and, when peers
/// share it, of the peer CA: use [`NodeTls::is_peer`] on [`peer_chain`] to
/// tell a node from a client.
pub fn peer_identity(extensions: &http::Extensions) -> Option<String> {
    common_name(peer_chain(extensions)?.first()?)
}

/// [`peer_identity`] of a gRPC request.
pub fn request_identity<T>(request: &tonic::Request<T>) -> Option<String> {
    common_name(request.peer_certs()?.first()?)
}

/// The verified certificate chain a TLS caller presented, leaf first.
pub fn peer_chain(extensions: &http::Extensions) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()
}

/// The interceptor of the peer service: a call whose connection did not
/// present a peer CA's certificate is refused with UNAUTHENTICATED. Without
/// TLS (an insecure node) it admits every call.
#[derive(Clone)]
pub struct PeerGate {
    pub tls: Option<Arc<NodeTls>>,
}

impl tonic::service::Interceptor for PeerGate {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(tls) = &self.tls else {
            return Ok(request);
        };
        let chain = request.peer_certs();
        if tls.is_peer(chain.as_ref().map(|c| c.as_slice())) {
            return Ok(request);
        }
        Err(tonic::Status::unauthenticated(
            "the peer protocol needs a peer certificate (one signed by the cluster's peer CA)",
        ))
    }
}

#[cfg(test)]
mod tests;
