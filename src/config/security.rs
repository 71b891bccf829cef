//! The node config's transport security: `insecure`, the `[tls]` section,
//! and the addresses that certificates are checked against (`advertise`,
//! `peer_listen`, host-name peers). Only the config's shape is checked
//! here; the files themselves (readable, matching, in their validity
//! period) are checked when the node loads them (`crate::tls`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::NodeConfig;

/// `[tls]`: the files a secure node serves and dials with. Paths are
/// relative to the node's working directory, like `data_dir`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate (PEM, leaf first, then intermediates) the client
    /// port presents. Optional in the type only so that a missing one is
    /// refused with this key's name rather than serde's.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates whose client certificates the client port accepts
    /// (an identity for authentication). Without it, the client port asks
    /// for no client certificate but a peer's.
    pub client_ca: Option<PathBuf>,
    /// The cluster's peer CA: the peer service answers only callers whose
    /// certificate chains to it, and a node trusts only peers whose server
    /// certificate chains to it. Required: peers always use mutual TLS.
    pub peer_ca: Option<PathBuf>,
    /// The certificate a node presents to peers (when it dials, and on
    /// `peer_listen`); `cert` when unset.
    pub peer_cert: Option<PathBuf>,
    /// The key of `peer_cert`; `key` when unset.
    pub peer_key: Option<PathBuf>,
}

impl TlsSettings {
    /// The certificate and key a node presents to peers.
    pub fn peer_identity(&self) -> (Option<&PathBuf>, Option<&PathBuf>) {
        match (&self.peer_cert, &self.peer_key) {
            (None, None) => (self.cert.as_ref(), self.key.as_ref()),
            (cert, key) => (cert.as_ref(), key.as_ref()),
        }
    }

    /// Every file is named, in pairs: a half-made section is refused with
    /// the key that is missing.
    fn validate(&self) -> Result<(), String> {
        let pairs = [
            ("tls.cert", &self.cert, "tls.key", &self.key),
            (
                "tls.peer_cert",
                &self.peer_cert,
                "tls.peer_key",
                &self.peer_key,
            ),
        ];
        for (a, a_path, b, b_path) in pairs {
            match (a_path, b_path) {
                (Some(_), None) => return Err(format!("{b}: missing: {a} is set without its key")),
                (None, Some(_)) => {
                    return Err(format!("{a}: missing: {b} is set without its certificate"))
                }
                _ => {}
            }
        }
        if self.cert.is_none() {
            return Err(
                "tls.cert: missing: a secure node needs the certificate and key \
                        (tls.cert, tls.key) its client port presents"
                    .into(),
            );
        }
        if self.peer_ca.is_none() {
            return Err(
                "tls.peer_ca: missing: peers speak mutual TLS, so a secure node needs \
                        the cluster's peer CA"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Checks that `addr` is `host:port` (a host name, an IPv4 address or a
/// bracketed IPv6 one, and a port from 1 to 65535).
pub fn host_port(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("no port: write it as host:port".into());
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("port {port:?} is not 1 to 65535"));
    }
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !name_ok {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    Ok(())
}

/// The host part of a `host:port` address, without IPv6 brackets.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl NodeConfig {
    /// Whether the node speaks TLS (and, once authentication exists,
    /// authenticates callers): false only with `insecure = true`.
    pub fn secure(&self) -> bool {
        !self.insecure
    }

    /// The address peers and clients are told this node is at: `advertise`,
    /// else `listen`.
    pub fn advertised(&self) -> &str {
        self.advertise.as_deref().unwrap_or(&self.listen)
    }

    /// Either `insecure = true` or a complete `[tls]`, never both, and
    /// addresses others can reach.
    pub(super) fn validate_security(&self) -> Result<(), String> {
        match (&self.tls, self.insecure) {
            (Some(_), true) => {
                return Err(
                    "insecure: `insecure = true` (or --insecure) and a [tls] section \
                     contradict each other; remove one"
                        .into(),
                )
            }
            (None, false) => {
                return Err("tls: a node needs a [tls] section (cert, key, peer_ca) or \
                     `insecure = true` (plaintext, no authentication)"
                    .into())
            }
            (Some(tls), false) => tls.validate()?,
            (None, true) => {}
        }
        if let Some(a) = &self.advertise {
            host_port(a).map_err(|e| format!("advertise: {a:?}: {e}"))?;
        }
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|e| format!("listen: {:?} is not an IP:port address: {e}", self.listen))?;
        if listen.ip().is_unspecified() && self.advertise.is_none() {
            return Err(format!(
                "advertise: required when listen ({}) is a wildcard address: name the \
                 host:port that clients and peers reach this node at",
                self.listen
            ));
        }
        self.validate_peer_listen(listen)
    }

    /// `peer_listen`, when set, is an IP:port other than the client port's.
    fn validate_peer_listen(&self, listen: SocketAddr) -> Result<(), String> {
        let Some(p) = &self.peer_listen else {
            return Ok(());
        };
        let peer: SocketAddr = p
            .parse()
            .map_err(|e| format!("peer_listen: {p:?} is not an IP:port address: {e}"))?;
        let same_ip = peer.ip() == listen.ip() || listen.ip().is_unspecified();
        if peer.port() == listen.port() && (same_ip || peer.ip().is_unspecified()) {
            return Err(format!(
                "peer_listen: {p} is the client port's own address; give peers another \
                 port, or leave peer_listen out to share it"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "id = 1\nlisten = \"127.0.0.1:7101\"\ndata_dir = \"d\"\n";
    const TLS: &str = "[tls]\ncert = \"n.pem\"\nkey = \"n.key\"\npeer_ca = \"ca.pem\"\n";

    fn check(text: &str) -> Result<NodeConfig, String> {
        let c: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn a_node_is_insecure_or_has_a_whole_tls_section() {
        let c = check(&format!("{BASE}insecure = true\n")).unwrap();
        assert!(!c.secure());
        let c = check(&format!("{BASE}{TLS}")).unwrap();
        assert!(c.secure());
        assert_eq!(
            c.tls.as_ref().unwrap().peer_identity().0,
            c.tls.as_ref().unwrap().cert.as_ref()
        );
        for (text, key) in [
            (BASE.to_string(), "tls"),
            (format!("{BASE}insecure = true\n{TLS}"), "insecure"),
            (
                format!("{BASE}{}", TLS.replace("key = \"n.key\"\n", "")),
                "tls.key",
            ),
            (
                format!("{BASE}{}", TLS.replace("cert = \"n.pem\"\n", "")),
                "tls.cert",
            ),
            (
                format!("{BASE}{}", TLS.replace("peer_ca = \"ca.pem\"\n", "")),
                "tls.peer_ca",
            ),
            (
                format!("{BASE}{TLS}peer_cert = \"p.pem\"\n"),
                "tls.peer_key",
            ),
            (
                format!("{BASE}{TLS}peer_key = \"p.key\"\n"),
                "tls.peer_cert",
            ),
            (format!("{BASE}{TLS}colour = \"red\"\n"), "colour"),
        ] {
            let e = check(&text).unwrap_err();
            assert!(e.starts_with(key) || e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn addresses_may_be_host_names_and_wildcards_need_an_advertised_one() {
        let text = "id = 1\ninsecure = true\nlisten = \"0.0.0.0:7101\"\ndata_dir = \"d\"\n";
        let e = check(text).unwrap_err();
        assert!(e.starts_with("advertise"), "{e}");
        let c = check(&format!(
            "advertise = \"node1.example.com:7101\"\n{text}\n[[peers]]\nid = 1\n\
             addr = \"node1.example.com:7201\"\n[[peers]]\nid = 2\naddr = \"node2:7201\"\n"
        ))
        .unwrap();
        assert_eq!(c.advertised(), "node1.example.com:7101");
        assert_eq!(c.peer_map()[&2], "node2:7201");
        for bad in ["node2", "node2:0", "node 2:7201", ":7201", "node2:port"] {
            assert!(host_port(bad).is_err(), "{bad} passed");
        }
        for good in ["node2:7201", "10.0.0.2:7201", "[::1]:7201", "a-b.c:1"] {
            assert_eq!(host_port(good), Ok(()), "{good}");
        }
        assert_eq!(host_of("[::1]:7201"), "::1");
        assert_eq!(host_of("node2:7201"), "node2");
    }

    #[test]
    fn a_peer_port_must_differ_from_the_client_port() {
        let e = check(&format!(
            "{BASE}insecure = true\npeer_listen = \"127.0.0.1:7101\"\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("peer_listen"), "{e}");
        let e = check(&format!("{BASE}insecure = true\npeer_listen = \"nope\"\n")).unwrap_err();
        assert!(e.starts_with("peer_listen"), "{e}");
        let c = check(&format!(
            "{BASE}insecure = true\npeer_listen = \"127.0.0.1:7201\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.peer_map()[&1],
            "127.0.0.1:7201",
            "its own peer address is peer_listen"
        );
    }
}
