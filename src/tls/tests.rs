//! Loading `[tls]`: what a node refuses at start (naming the key), what it
//! accepts as a peer, and a reload that fails keeping the old material.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::NodeTls;
use crate::certs::{Authority, Issued, Usage};
use crate::config::NodeConfig;

const DAY: Duration = Duration::from_secs(24 * 3600);

struct Files {
    dir: tempfile::TempDir,
    cluster: Authority,
    clients: Authority,
}

impl Files {
    fn new() -> Self {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
            cluster: Authority::new("cluster").unwrap(),
            clients: Authority::new("clients").unwrap(),
        };
        f.write("cluster-ca.pem", f.cluster.cert_pem());
        f.write("client-ca.pem", f.clients.cert_pem());
        let node = f
            .cluster
            .issue_now("node-1", &hosts(), Usage::Node)
            .unwrap();
        f.put("node", &node);
        f
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn put(&self, name: &str, issued: &Issued) {
        self.write(&format!("{name}.pem"), &issued.cert);
        self.write(&format!("{name}.key"), &issued.key);
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A config whose [tls] is `extra` on top of the node's files.
    fn config(&self, extra: &str) -> NodeConfig {
        let text = format!(
            "id = 1\nlisten = \"127.0.0.1:7101\"\ndata_dir = \"d\"\n{extra}\n[tls]\n\
             cert = \"{}\"\nkey = \"{}\"\npeer_ca = \"{}\"\nclient_ca = \"{}\"\n",
            self.path("node.pem"),
            self.path("node.key"),
            self.path("cluster-ca.pem"),
            self.path("client-ca.pem"),
        );
        let c: NodeConfig = toml::from_str(&text).unwrap();
        c.validate().unwrap();
        c
    }

    fn load(&self) -> Result<std::sync::Arc<NodeTls>, String> {
        NodeTls::load(&self.config("")).map(|t| t.expect("a secure config"))
    }
}

fn hosts() -> Vec<String> {
    vec!["127.0.0.1".into(), "localhost".into()]
}

fn chain(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_whole_config_loads_and_tells_peers_from_clients() {
    let f = Files::new();
    let tls = f.load().unwrap();
    let node = chain(&f.dir.path().join("node.pem"));
    assert!(tls.is_peer(Some(&node[..])));
    assert!(tls.is_peer(Some(&node[..])), "a remembered verdict");
    let alice = f.clients.issue_now("alice", &[], Usage::Client).unwrap();
    f.put("alice", &alice);
    let alice = chain(&f.dir.path().join("alice.pem"));
    assert!(
        !tls.is_peer(Some(&alice[..])),
        "a client CA's certificate is no peer"
    );
    assert!(!tls.is_peer(None));
    assert!(!tls.is_peer(Some(&[][..])));
    assert_eq!(super::common_name(&alice[0]).as_deref(), Some("alice"));
    let config = tls.client_port();
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

/// What a case does to a good set of files.
type Spoil = Box<dyn Fn(&Files)>;

#[test]
fn bad_files_are_refused_naming_the_key() {
    let now = SystemTime::now();
    let cases: Vec<(&str, Spoil, &str)> = vec![
        (
            "expired",
            Box::new(move |f: &Files| {
                let old =
                    f.cluster
                        .issue("node-1", &hosts(), Usage::Node, (now - 3 * DAY, now - DAY));
                f.put("node", &old.unwrap());
            }),
            "tls.cert",
        ),
        (
            "not yet valid",
            Box::new(move |f: &Files| {
                let new =
                    f.cluster
                        .issue("node-1", &hosts(), Usage::Node, (now + DAY, now + 3 * DAY));
                f.put("node", &new.unwrap());
            }),
            "tls.cert",
        ),
        (
            "the wrong key",
            Box::new(|f: &Files| {
                let other = f
                    .cluster
                    .issue_now("node-1", &hosts(), Usage::Node)
                    .unwrap();
                f.write("node.key", &other.key);
            }),
            "tls.key",
        ),
        (
            "another CA",
            Box::new(|f: &Files| {
                let stranger = Authority::new("stranger").unwrap();
                f.put(
                    "node",
                    &stranger.issue_now("node-1", &hosts(), Usage::Node).unwrap(),
                );
            }),
            "tls.cert",
        ),
        (
            "another host",
            Box::new(|f: &Files| {
                let elsewhere = vec!["10.9.9.9".to_string()];
                f.put(
                    "node",
                    &f.cluster
                        .issue_now("node-1", &elsewhere, Usage::Node)
                        .unwrap(),
                );
            }),
            "tls.cert",
        ),
        (
            "a client certificate",
            Box::new(|f: &Files| {
                f.put(
                    "node",
                    &f.cluster
                        .issue_now("node-1", &hosts(), Usage::Client)
                        .unwrap(),
                );
            }),
            "tls.cert",
        ),
        (
            "no CA",
            Box::new(|f: &Files| f.write("cluster-ca.pem", "")),
            "tls.peer_ca",
        ),
        (
            "garbage",
            Box::new(|f: &Files| {
                f.write(
                    "client-ca.pem",
                    "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n",
                )
            }),
            "tls.client_ca",
        ),
    ];
    for (what, spoil, key) in cases {
        let f = Files::new();
        spoil(&f);
        let e = f.load().err().unwrap_or_else(|| panic!("{what}: loaded"));
        assert!(e.starts_with(&format!("{key}:")), "{what}: {e}");
    }
}

#[test]
fn a_failed_reload_keeps_the_old_material_and_a_good_one_moves_on() {
    let f = Files::new();
    let tls = f.load().unwrap();
    let before = tls.client_port();
    f.write("node.key", "not a key");
    let e = tls.reload().unwrap_err();
    assert!(e.starts_with("tls.key:"), "{e}");
    assert_eq!(tls.generation(), 0);
    assert!(std::sync::Arc::ptr_eq(&before, &tls.client_port()));
    let renewed = f
        .cluster
        .issue_now("node-1", &hosts(), Usage::Node)
        .unwrap();
    f.put("node", &renewed);
    tls.reload().unwrap();
    assert_eq!(tls.generation(), 1);
    assert!(!std::sync::Arc::ptr_eq(&before, &tls.client_port()));
}

#[test]
fn a_split_layout_checks_the_peer_certificate() {
    let f = Files::new();
    let stranger = Authority::new("stranger").unwrap();
    f.put(
        "peer",
        &stranger.issue_now("node-1", &hosts(), Usage::Node).unwrap(),
    );
    let mut config = f.config("peer_listen = \"127.0.0.1:7201\"\n");
    let tls = config.tls.as_mut().unwrap();
    tls.peer_cert = Some(f.dir.path().join("peer.pem"));
    tls.peer_key = Some(f.dir.path().join("peer.key"));
    let e = NodeTls::load(&config).err().unwrap();
    assert!(e.starts_with("tls.peer_cert:"), "{e}");
    // Its own client port may be served under any CA: clients trust it.
    f.put(
        "peer",
        &f.cluster
            .issue_now("node-1", &hosts(), Usage::Node)
            .unwrap(),
    );
    f.put(
        "node",
        &stranger.issue_now("node-1", &hosts(), Usage::Node).unwrap(),
    );
    assert!(NodeTls::load(&config).unwrap().is_some());
}
