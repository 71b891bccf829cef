//! The TLS configs one load of `[tls]` makes: what the client port and the
//! peer port serve, how the node dials peers, and the verifier that tells a
//! peer's certificate from a client's. Built whole or not at all, so a
//! reload that fails leaves the previous material in place.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::load::{identity, provider, roots};
use crate::config::TlsSettings;

/// ALPN of the client port: gRPC over HTTP/2, and HTTP/1.1 for `/metrics`
/// and the probes served on the same port.
const CLIENT_PORT_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN of the peer port: the peer protocol is gRPC alone.
const PEER_PORT_ALPN: [&[u8]; 1] = [b"h2"];

pub(super) struct Material {
    pub client_port: Arc<ServerConfig>,
    pub peer_port: Arc<ServerConfig>,
    pub dial: ClientTlsConfig,
    /// Accepts only certificates that chain to the peer CA.
    pub peer_verifier: Arc<dyn ClientCertVerifier>,
}

/// Where a node's peers reach it, which decides what it must present.
pub(super) struct Layout<'a> {
    /// Peers have their own listener (`peer_listen`).
    pub split: bool,
    /// The host peers dial this node at (its entry in the peer list).
    pub peer_host: &'a str,
}

fn required<'a>(key: &str, path: &'a Option<std::path::PathBuf>) -> Result<&'a Path, String> {
    path.as_deref()
        .ok_or_else(|| format!("{key}: missing (checked at start; the config changed?)"))
}

pub(super) fn build(s: &TlsSettings, layout: &Layout<'_>) -> Result<Material, String> {
    let cert = required("tls.cert", &s.cert)?;
    let served = identity(
        ("tls.cert", cert),
        ("tls.key", required("tls.key", &s.key)?),
    )?;
    let (peer_cert_key, peer_key_key) = match s.peer_cert {
        Some(_) => ("tls.peer_cert", "tls.peer_key"),
        None => ("tls.cert", "tls.key"),
    };
    let (peer_cert, peer_key) = s.peer_identity();
    let peer_cert = required(peer_cert_key, &peer_cert.cloned())?.to_path_buf();
    let peer_key = required(peer_key_key, &peer_key.cloned())?.to_path_buf();
    let peer_id = identity((peer_cert_key, &peer_cert), (peer_key_key, &peer_key))?;
    let peer_ca = required("tls.peer_ca", &s.peer_ca)?;
    let mut peer_roots = RootCertStore::empty();
    roots("tls.peer_ca", peer_ca, &mut peer_roots)?;
    let peer_roots = Arc::new(peer_roots);
    let peer_verifier = WebPkiClientVerifier::builder_with_provider(peer_roots.clone(), provider())
        .build()
        .map_err(|e| format!("tls.peer_ca: {e}"))?;
    peer_verifier
        .verify_client_cert(&peer_id.cert[0], &peer_id.cert[1..], UnixTime::now())
        .map_err(|e| {
            format!(
                "{peer_cert_key}: not a client certificate of tls.peer_ca for dialing peers: {e}"
            )
        })?;
    let (presented, presented_key) = match layout.split {
        true => (&peer_id, peer_cert_key),
        false => (&served, "tls.cert"),
    };
    valid_for_peers(presented, peer_roots.clone(), layout.peer_host)
        .map_err(|e| format!("{presented_key}: {e}"))?;
    let client_verifier = client_port_verifier(s, layout.split, &peer_roots)?;
    let read = |key: &str, p: &Path| {
        std::fs::read(p).map_err(|e| format!("{key}: cannot read {}: {e}", p.display()))
    };
    let dial = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("tls.peer_ca", peer_ca)?))
        .identity(Identity::from_pem(
            read(peer_cert_key, &peer_cert)?,
            read(peer_key_key, &peer_key)?,
        ));
    Ok(Material {
        client_port: server_config(served, client_verifier, &CLIENT_PORT_ALPN),
        peer_port: server_config(peer_id, peer_verifier.clone(), &PEER_PORT_ALPN),
        dial,
        peer_verifier,
    })
}

/// Peers dial this node at `host` and trust only the peer CA: the
/// certificate it presents them must chain to it and name that host.
fn valid_for_peers(
    presented: &CertifiedKey,
    peer_roots: Arc<RootCertStore>,
    host: &str,
) -> Result<(), String> {
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(peer_roots, provider())
            .build()
            .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("peers dial this node at {host:?}, not a TLS server name: {e}"))?;
    verifier
        .verify_server_cert(
            &presented.cert[0],
            &presented.cert[1..],
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| {
            format!(
                "peers dial this node at {host} and trust tls.peer_ca, but the certificate it \
                 presents them does not pass: {e}"
            )
        })
}

/// The client port asks for a client certificate but does not require one:
/// a client CA's certificate is an identity, a peer CA's is a peer (when
/// peers share the port); a certificate from any other CA fails the
/// handshake.
fn client_port_verifier(
    s: &TlsSettings,
    split: bool,
    peer_roots: &RootCertStore,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut accepted = RootCertStore::empty();
    if !split {
        accepted.roots.extend(peer_roots.roots.iter().cloned());
    }
    if let Some(ca) = &s.client_ca {
        roots("tls.client_ca", ca, &mut accepted)?;
    }
    if accepted.is_empty() {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(accepted), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("tls.client_ca: {e}"))
}

fn server_config(
    key: CertifiedKey,
    verifier: Arc<dyn ClientCertVerifier>,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
