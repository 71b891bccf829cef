//! A node's security config: what it refuses to start with (naming the
//! key), the warning of an insecure node, and peers on their own port.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use laneq::certs::{Authority, NodeHosts, Usage};
use tokio::io::AsyncReadExt;
use tonic::Code;

use super::{as_holder, client_with, peer_vote, tls_connect, WAIT};
use crate::support::{eventually, free_port, Cluster, Timings, BIN};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn start(config: &Path, flags: &[&str]) -> Output {
    Command::new(BIN)
        .args(["node", "--config"])
        .arg(config)
        .args(flags)
        .output()
        .unwrap()
}

#[test]
fn a_half_made_security_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let nodes = [
        NodeHosts {
            id: 1,
            hosts: vec![],
        },
        NodeHosts {
            id: 2,
            hosts: vec![],
        },
    ];
    laneq::certs::create(&certs, &nodes, &[]).unwrap();
    let old = Authority::new("old").unwrap();
    let now = SystemTime::now();
    let expired = old
        .issue(
            "node-1",
            &["127.0.0.1".into()],
            Usage::Node,
            (now - 3 * DAY, now - DAY),
        )
        .unwrap();
    std::fs::write(certs.join("expired.pem"), &expired.cert).unwrap();
    std::fs::write(certs.join("expired.key"), &expired.key).unwrap();
    let f = |name: &str| certs.join(name).display().to_string();
    let tls = |cert: &str, key: &str, ca: &str| {
        let mut t = String::from("\n[tls]\n");
        for (k, v) in [("cert", cert), ("key", key), ("peer_ca", ca)] {
            if !v.is_empty() {
                t += &format!("{k} = \"{}\"\n", f(v));
            }
        }
        t
    };
    let data = dir.path().join("data");
    let base = format!(
        "id = 1\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n",
        free_port(),
        data.display()
    );
    let good = tls("node-1.pem", "node-1.key", "cluster-ca.pem");
    let cases: Vec<(String, &[&str], &str)> = vec![
        (base.clone(), &[], "tls"),
        (
            format!("{base}{}", tls("node-1.pem", "", "cluster-ca.pem")),
            &[],
            "tls.key",
        ),
        (
            format!("{base}{}", tls("", "node-1.key", "cluster-ca.pem")),
            &[],
            "tls.cert",
        ),
        (
            format!("{base}{}", tls("node-1.pem", "node-1.key", "")),
            &[],
            "tls.peer_ca",
        ),
        (format!("{base}insecure = true\n{good}"), &[], "insecure"),
        (format!("{base}{good}"), &["--insecure"], "insecure"),
        (
            format!(
                "{base}{}",
                tls("node-1.pem", "node-2.key", "cluster-ca.pem")
            ),
            &[],
            "tls.key",
        ),
        (
            format!(
                "{base}{}",
                tls("expired.pem", "expired.key", "cluster-ca.pem")
            ),
            &[],
            "tls.cert",
        ),
        (
            format!("{base}{}", tls("node-1.pem", "node-1.key", "missing.pem")),
            &[],
            "tls.peer_ca",
        ),
    ];
    for (i, (text, flags, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let o = start(&path, flags);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "case {i} started: {text}");
        assert!(
            err.contains(&format!("error: {key}")),
            "case {i} ({key}): {err}"
        );
        assert!(!data.exists(), "case {i} wrote a data dir");
    }
    let e = &String::from_utf8_lossy(&start(&dir.path().join("c8.toml"), &[]).stderr).into_owned();
    assert!(e.contains("missing.pem"), "the file is named: {e}");
    let e = &String::from_utf8_lossy(&start(&dir.path().join("c7.toml"), &[]).stderr).into_owned();
    assert!(e.contains("expired"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_node_warns_at_start() {
    let c = Cluster::start(1, Timings::default());
    eventually(WAIT, "the insecure warning", async || {
        let log = c.log_text(1);
        let warned = log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("insecure"));
        warned.then_some(()).ok_or(log)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_can_have_a_port_of_their_own() {
    let mut c = Cluster::empty(Timings::default(), true);
    let ids = [1, 2, 3];
    let peer_addrs: Vec<(u64, String)> = ids
        .iter()
        .map(|&id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    for (id, peer) in &peer_addrs {
        let top = format!("peer_listen = \"{peer}\"\n");
        c.add_config_with(*id, format!("127.0.0.1:{}", free_port()), &peer_addrs, &top);
        c.start_node(*id);
    }
    c.init(1).await;
    let client = c.client();
    client.create_queue("gpu").await.unwrap();
    c.wait_converged(&ids, 1).await;

    // The client port no longer serves the peer protocol, and no longer
    // trusts the peer CA (a node's certificate fails its handshake).
    for holder in [None, Some("client-alice")] {
        let s = peer_vote(&c, 1, &as_holder(&c, holder)).await;
        assert_eq!(s.code(), Code::Unimplemented, "{holder:?}: {s:?}");
    }
    let s = peer_vote(&c, 1, &as_holder(&c, Some("node-2"))).await;
    assert!(!matches!(s.code(), Code::Unimplemented | Code::Ok), "{s:?}");
    // The peer port wants a peer CA's certificate in the handshake: a peer
    // is sent the server's HTTP/2 settings, anyone else an alert.
    let ca = c.certs.as_ref().unwrap().join("cluster-ca.pem");
    let peer_port = &peer_addrs[0].1;
    for (who, holder) in [
        ("no certificate", None),
        ("a client's", Some("client-alice")),
        ("a peer's", Some("node-2")),
    ] {
        let files = as_holder(&c, holder);
        let identity = files.cert.as_deref().zip(files.key.as_deref());
        let first = async {
            let mut tls = tls_connect(peer_port, &ca, identity, b"h2").await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await
        };
        let read = tokio::time::timeout(WAIT, first).await.expect("an answer");
        assert_eq!(read.is_ok(), holder == Some("node-2"), "{who}: {read:?}");
    }
    // Clients still reach every node on its client port.
    for id in ids {
        let queues = client_with(&c, id, as_holder(&c, None))
            .list_queues(Default::default())
            .await
            .unwrap();
        assert!(
            queues.iter().any(|q| q.name == "gpu"),
            "node {id}: {queues:?}"
        );
    }
}

#[test]
fn certs_create_writes_cas_node_and_client_certificates_with_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::extensions::GeneralName;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["certs", "create", "--dir"])
        .arg(dir.path())
        .args([
            "--node",
            "1:node1.example.com,10.0.0.11",
            "--node",
            "2:node2",
        ])
        .args(["--client", "alice"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "cluster-ca",
        "client-ca",
        "node-1",
        "node-2",
        "client-alice",
    ] {
        let mode = |ext: &str| {
            let meta = std::fs::metadata(dir.path().join(format!("{name}.{ext}"))).unwrap();
            meta.permissions().mode() & 0o777
        };
        assert_eq!(mode("key"), 0o600, "{name}.key");
        assert_eq!(mode("pem"), 0o644, "{name}.pem");
    }
    let pem = std::fs::read(dir.path().join("node-1.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = (sans.value.general_names.iter())
        .map(|n| match n {
            GeneralName::IPAddress(&[a, b, c, d]) => {
                std::net::Ipv4Addr::new(a, b, c, d).to_string()
            }
            other => other.to_string(),
        })
        .collect();
    for host in ["node1.example.com", "10.0.0.11", "127.0.0.1", "localhost"] {
        assert!(
            names.iter().any(|n| n.contains(host)),
            "{host} not in {names:?}"
        );
    }
    let alice = std::fs::read(dir.path().join("client-alice.pem")).unwrap();
    let alice = rustls::pki_types::CertificateDer::from(
        x509_parser::pem::parse_x509_pem(&alice).unwrap().1.contents,
    );
    assert_eq!(laneq::tls::common_name(&alice).as_deref(), Some("alice"));
    let bad = Command::new(BIN)
        .args(["certs", "create", "--dir"])
        .arg(dir.path())
        .args(["--node", "x:host"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad --node is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_tls_with_or_without_a_client_certificate() {
    let c = super::secure(1).await;
    c.init(1).await;
    let certs = c.certs.clone().unwrap();
    let admin = c.admin.get().expect("the admin's token").clone();
    let run_as = |token: Option<&str>, extra: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(["--endpoints", &c.addr(1), "--timeout", "5"])
            .env("LANEQ_CONFIG", c.dir.path().join("no-client.toml"))
            .env_remove("LANEQ_CACERT")
            .env_remove("LANEQ_TOKEN");
        if let Some(t) = token {
            command.env("LANEQ_TOKEN", t);
        }
        let o = command
            .args(extra)
            .args(["queue", "list"])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let run = |extra: &[&str]| run_as(Some(&admin), extra);
    let ca = certs.join("cluster-ca.pem").display().to_string();
    let cert = certs.join("client-alice.pem").display().to_string();
    let key = certs.join("client-alice.key").display().to_string();
    assert_eq!(run(&["--cacert", &ca]).0, Some(0));
    assert_eq!(
        run(&["--cacert", &ca, "--cert", &cert, "--key", &key]).0,
        Some(0)
    );
    let (code, err) = run(&["--cacert", &ca, "--cert", &cert]);
    assert_eq!(code, Some(2), "a certificate without its key: {err}");
    let (code, err) = run(&["--cacert", "/nonexistent/ca.pem"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let (code, err) = run(&[]);
    assert_eq!(
        code,
        Some(5),
        "plaintext to a TLS node is unavailable: {err}"
    );

    // A client certificate names its holder: with a token of that name, it
    // is an identity of its own, no bearer token needed.
    let with_cert = ["--cacert", ca.as_str(), "--cert", &cert, "--key", &key];
    let (code, err) = run_as(None, &with_cert);
    assert_eq!(code, Some(10), "alice has no token yet: {err}");
    let (_, digest) = laneq::client::new_token("alice");
    let admin_client = c.client();
    let made = admin_client.create_token("alice", "viewer", &[], &[], digest, Default::default());
    made.await.unwrap();
    let (code, err) = run_as(None, &with_cert);
    assert_eq!(code, Some(0), "alice's certificate is her identity: {err}");
    let (code, err) = run_as(None, &["--cacert", &ca]);
    assert_eq!(code, Some(10), "and without it, nobody: {err}");
}
