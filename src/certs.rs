//! Throwaway certificates for a cluster (`laneq certs create`): a cluster
//! CA that signs every node's certificate (which nodes present to clients
//! and to each other, so it is both the nodes' `peer_ca` and the clients'
//! `--cacert`), a client CA that signs client certificates (the nodes'
//! `client_ca`; a client's common name is its identity), and the
//! certificates themselves. For a laptop, a test or a first deployment:
//! a real one keeps its CA keys somewhere safer than beside the nodes.
//!
//! Keys are ECDSA P-256, written 0600. Nothing here reads a config or
//! talks to a node.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How long what [`create`] writes stays valid.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start this long before they are made, so that a node whose
/// clock is a little behind accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A certificate authority held in memory: its certificate and key.
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A node: a server to clients and peers, and a client when it dials.
    Node,
    /// A client: only presented to nodes.
    Client,
}

/// A certificate and its key, both PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

fn rcgen_error(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("cannot make {what}: {e}")
}

impl Authority {
    /// A new self-signed CA named `name`, valid for [`VALIDITY`].
    pub fn new(name: &str) -> Result<Self, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error(name))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + VALIDITY).into();
        let key = KeyPair::generate().map_err(rcgen_error(name))?;
        let pem = params.self_signed(&key).map_err(rcgen_error(name))?.pem();
        Ok(Self { params, key, pem })
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// The CA's private key, PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for `name` (its common name) and `hosts` (its subject
    /// alternative names: DNS names or IP addresses), valid from `from`
    /// until `until`.
    pub fn issue(
        &self,
        name: &str,
        hosts: &[String],
        usage: Usage,
        (from, until): (SystemTime, SystemTime),
    ) -> Result<Issued, String> {
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(rcgen_error(name))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usage {
            Usage::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.not_before = from.into();
        params.not_after = until.into();
        let key = KeyPair::generate().map_err(rcgen_error(name))?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_error(name))?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// [`Authority::issue`], valid from now for [`VALIDITY`].
    pub fn issue_now(&self, name: &str, hosts: &[String], usage: Usage) -> Result<Issued, String> {
        let now = SystemTime::now();
        self.issue(name, hosts, usage, (now - BACKDATE, now + VALIDITY))
    }
}

/// A node to make a certificate for: its id and the host names or IP
/// addresses it is reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHosts {
    pub id: u64,
    pub hosts: Vec<String>,
}

impl std::str::FromStr for NodeHosts {
    type Err = String;

    /// `ID:HOST[,HOST...]`, e.g. `1:node1.example.com,10.0.0.11`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, hosts) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: write a node as ID:HOST[,HOST...]"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| format!("{s:?}: the node id {id:?} is not a number of 1 or more"))?;
        let hosts: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Self { id, hosts })
    }
}

/// The hosts a node's certificate names: the given ones, and loopback, so
/// that local tools and a local cluster reach it too.
fn node_hosts(hosts: &[String]) -> Vec<String> {
    let mut all = hosts.to_vec();
    for local in ["127.0.0.1", "localhost"] {
        if !all.iter().any(|h| h == local) {
            all.push(local.to_string());
        }
    }
    all
}

/// Writes, under `dir`: `cluster-ca.pem` and `.key`, `client-ca.pem` and
/// `.key`, `node-ID.pem` and `.key` for each node, and `client-NAME.pem`
/// and `.key` for each client. Returns the paths written.
pub fn create(dir: &Path, nodes: &[NodeHosts], clients: &[String]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cluster = Authority::new("laneq cluster CA")?;
    let client_ca = Authority::new("laneq client CA")?;
    let mut written = Vec::new();
    let mut put = |name: String, cert: &str, key: &str| -> Result<(), String> {
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        write_file(&cert_path, cert, 0o644)?;
        write_file(&key_path, key, 0o600)?;
        written.extend([cert_path, key_path]);
        Ok(())
    };
    put("cluster-ca".into(), cluster.cert_pem(), &cluster.key_pem())?;
    put(
        "client-ca".into(),
        client_ca.cert_pem(),
        &client_ca.key_pem(),
    )?;
    for node in nodes {
        let name = format!("node-{}", node.id);
        let issued = cluster.issue_now(&name, &node_hosts(&node.hosts), Usage::Node)?;
        put(name, &issued.cert, &issued.key)?;
    }
    for client in clients {
        if client.is_empty() || client.contains(['/', '\\']) || client.starts_with('.') {
            return Err(format!(
                "client {client:?}: a name must not be empty, a path or hidden"
            ));
        }
        let issued = client_ca.issue_now(client, &[], Usage::Client)?;
        put(format!("client-{client}"), &issued.cert, &issued.key)?;
    }
    Ok(written)
}

/// Writes `text` to `path` with `mode`, replacing what was there; the mode
/// is set before any byte is written, so a key is never readable by others.
pub fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    // An existing file keeps its mode through open(2): set it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {shown}: {e}"))
}
