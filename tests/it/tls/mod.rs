//! TLS on real nodes: clients over TLS, mutual TLS between peers, the peer
//! service refusing callers without a peer certificate, handshakes with a
//! stranger's certificate failing, half-made configs refused at start, and
//! certificates reloaded on SIGHUP (`configs`: what a node refuses to
//! start with, an insecure node's warning, peers on a port of their own).

mod configs;

use std::path::Path;
use std::time::Duration;

use laneq::certs::{Authority, Usage};
use laneq::client::{Client, ClientOptions, Credentials, TlsFiles};
use laneq::proto::raft::raft_peer_client::RaftPeerClient;
use laneq::proto::raft::RaftBlob;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::support::{eventually, signal, tls_connect, Cluster, Timings};

const WAIT: Duration = Duration::from_secs(30);

/// A secure cluster of `n` nodes, started; node 1 answering over TLS
/// (before `init` makes a token, with UNAUTHENTICATED: it has none yet).
async fn secure(n: u64) -> Cluster {
    let c = Cluster::start_secure(n, Timings::default());
    eventually(WAIT, "node 1 to answer over TLS", async || {
        match c.status_within(1, Duration::from_secs(2)).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Code::Unauthenticated => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    c
}

fn certs(c: &Cluster) -> &Path {
    c.certs.as_deref().expect("a secure cluster")
}

/// Files for a client of `c` presenting `name.pem`/`.key` from its certs.
fn as_holder(c: &Cluster, name: Option<&str>) -> TlsFiles {
    let dir = certs(c);
    TlsFiles {
        ca: dir.join("cluster-ca.pem"),
        cert: name.map(|n| dir.join(format!("{n}.pem"))),
        key: name.map(|n| dir.join(format!("{n}.key"))),
        server_name: None,
    }
}

fn client_with(c: &Cluster, id: u64, tls: TlsFiles) -> Client {
    let options = ClientOptions {
        deadline: Duration::from_secs(3),
        tls: Some(tls),
        credentials: Credentials::new(c.admin.get().map(String::as_str), None).unwrap(),
    };
    Client::connect(&[c.addr(id)], options).unwrap()
}

/// A peer RPC (a vote with an empty body) to node `id` over TLS with `tls`.
async fn peer_vote(c: &Cluster, id: u64, tls: &TlsFiles) -> tonic::Status {
    let endpoint = laneq::wire::tls_endpoint(&c.addr(id), &tls.load().unwrap()).unwrap();
    let mut peer = RaftPeerClient::new(endpoint.connect_lazy());
    match peer.vote(RaftBlob { data: vec![] }).await {
        Ok(_) => tonic::Status::ok("answered"),
        Err(s) => s,
    }
}

/// `GET /healthz` over HTTP/1.1 over TLS (see [`tls_connect`]): the ALPN
/// agreed and the certificate the node presented, if it answered 200. (TLS
/// 1.3 reports a refused client certificate only once the client's side is
/// done: the round trip makes it show.)
async fn healthz(
    addr: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> std::io::Result<(Vec<u8>, CertificateDer<'static>)> {
    let mut tls = tls_connect(addr, ca, identity, b"http/1.1").await?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n")
        .await?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await?;
    if !reply.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&reply).into_owned(),
        ));
    }
    let session = tls.get_ref().1;
    let alpn = session.alpn_protocol().unwrap_or_default().to_vec();
    let served = session.peer_certificates().unwrap()[0].clone().into_owned();
    Ok((alpn, served))
}

fn first_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_cluster_serves_clients_and_its_peers_over_tls() {
    let c = secure(3).await;
    // An election and a commit need the peers' mutual TLS to work.
    c.init(1).await;
    let client = c.client();
    client.create_queue("gpu").await.unwrap();
    let task = client
        .submit_task("gpu", vec!["echo".into()], vec![], None)
        .await
        .unwrap();
    c.wait_converged(&[1, 2, 3], 1).await;
    for id in 1..=3 {
        c.assert_has_tasks(id, &[task.id]).await;
    }
    let (code, out, err) = c.cli(&["queue", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("gpu"), "{out}");

    let plain = Client::with_deadline(&[c.addr(1)], Duration::from_secs(2));
    let plaintext = plain.list_queues(Default::default()).await;
    assert!(plaintext.is_err(), "plaintext to a TLS port was answered");
    let ca = certs(&c).join("cluster-ca.pem");
    let (_, served) = healthz(&c.addr(2), &ca, None).await.unwrap();
    assert_eq!(served, first_cert(&certs(&c).join("node-2.pem")));
    assert!(!c.log_text(1).contains("insecure"), "{}", c.log_text(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_rpcs_need_a_peer_certificate() {
    let c = secure(1).await;
    for (who, tls) in [
        ("no certificate", as_holder(&c, None)),
        ("a client certificate", as_holder(&c, Some("client-alice"))),
    ] {
        let s = peer_vote(&c, 1, &tls).await;
        assert_eq!(s.code(), Code::Unauthenticated, "{who}: {s:?}");
        assert!(s.message().contains("peer certificate"), "{who}: {s:?}");
    }
    let s = peer_vote(&c, 1, &as_holder(&c, Some("node-2"))).await;
    assert_eq!(
        s.code(),
        Code::InvalidArgument,
        "a peer's empty vote is read: {s:?}"
    );
    assert!(s.message().contains("undecodable"), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_with_a_certificate_of_another_ca_fails() {
    let c = secure(1).await;
    let stranger = Authority::new("stranger").unwrap();
    let mallory = stranger.issue_now("mallory", &[], Usage::Client).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key) = (put("m.pem", &mallory.cert), put("m.key", &mallory.key));
    let ca = certs(&c).join("cluster-ca.pem");
    let addr = c.addr(1);
    let refused = healthz(&addr, &ca, Some((&cert, &key))).await;
    assert!(
        refused.is_err(),
        "a stranger's client certificate was accepted"
    );
    let alice = (
        certs(&c).join("client-alice.pem"),
        certs(&c).join("client-alice.key"),
    );
    healthz(&addr, &ca, Some((&alice.0, &alice.1)))
        .await
        .expect("the client CA's certificate passes");
    let stranger_ca = put("stranger.pem", stranger.cert_pem());
    let tls = TlsFiles {
        ca: stranger_ca.clone(),
        ..Default::default()
    };
    let e = client_with(&c, 1, tls)
        .list_queues(Default::default())
        .await;
    assert!(e.is_err(), "a node was trusted under another CA");
    assert!(tls_connect(&addr, &stranger_ca, None, b"h2").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_are_served_over_tls_beside_grpc() {
    let c = secure(1).await;
    let ca = certs(&c).join("cluster-ca.pem");
    // Connections that never start their handshake hold up no one else's.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(c.addr(1)).await.unwrap());
    }
    // Well within the handshake timeout (10 s) that would free the loop.
    let quick = Duration::from_secs(3);
    let answer = tokio::time::timeout(quick, healthz(&c.addr(1), &ca, None)).await;
    let (alpn, _) = answer.expect("not held up by idle connections").unwrap();
    assert_eq!(alpn, b"http/1.1");
    let h2 = tls_connect(&c.addr(1), &ca, None, b"h2").await.unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    c.init(1).await;
    let status = client_with(&c, 1, as_holder(&c, None))
        .status_of(&c.addr(1), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(status.id, 1);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificates_and_a_bad_reload_keeps_them() {
    let c = secure(1).await;
    let dir = certs(&c).to_path_buf();
    let addr = c.addr(1);
    let old_ca = dir.join("old-ca.pem");
    std::fs::copy(dir.join("cluster-ca.pem"), &old_ca).unwrap();
    // A new CA and a new certificate, written over the node's files.
    let renewed = Authority::new("renewed").unwrap();
    let node = renewed
        .issue_now("node-1", &["127.0.0.1".into()], Usage::Node)
        .unwrap();
    std::fs::write(dir.join("cluster-ca.pem"), renewed.cert_pem()).unwrap();
    std::fs::write(dir.join("node-1.pem"), &node.cert).unwrap();
    std::fs::write(dir.join("node-1.key"), &node.key).unwrap();
    let new_cert = first_cert(&dir.join("node-1.pem"));
    let pid = c.pid(1).unwrap();
    signal(pid, "HUP");
    let ca = dir.join("cluster-ca.pem");
    eventually(WAIT, "a handshake to see the new certificate", async || {
        let (_, served) = healthz(&addr, &ca, None).await.map_err(|e| e.to_string())?;
        (served == new_cert)
            .then_some(())
            .ok_or("the old one".to_string())
    })
    .await;
    assert!(tls_connect(&addr, &old_ca, None, b"h2").await.is_err());

    std::fs::write(dir.join("node-1.key"), "not a key").unwrap();
    signal(pid, "HUP");
    eventually(WAIT, "the failed reload in the log", async || {
        let log = c.log_text(1);
        log.contains("reload failed").then_some(()).ok_or(log)
    })
    .await;
    assert!(c.log_text(1).contains("tls.key"), "{}", c.log_text(1));
    let (_, served) = healthz(&addr, &ca, None).await.unwrap();
    assert_eq!(served, new_cert, "a failed reload keeps what the node had");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_agent_and_its_tasks_reach_the_nodes_over_tls() {
    let c = secure(1).await;
    c.init(1).await;
    let dir = tempfile::tempdir().unwrap();
    let _agent = crate::support::Agent::start(&c, dir.path(), "w1", 1);
    let seen = dir.path().join("cacert.txt");
    // The task calls laneq itself: it needs the agent's CA to get through.
    let script = format!(
        "'{}' task progress --iteration 3 || exit 9; echo \"$LANEQ_CACERT\" > '{}'",
        crate::support::BIN,
        seen.display()
    );
    let client = c.client();
    let task = client
        .submit_task(
            "default",
            vec!["sh".into(), "-c".into(), script],
            vec![],
            None,
        )
        .await
        .unwrap();
    let done = eventually(WAIT, "the task to succeed", async || {
        let t = client.get_task(task.id, Default::default()).await;
        let t = t.map_err(|e| e.to_string())?;
        match t.state.as_str() {
            "succeeded" | "failed" => Ok(t),
            other => Err(other.to_string()),
        }
    })
    .await;
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert_eq!(done.iteration, Some(3), "the task's own call got through");
    let ca = certs(&c).join("cluster-ca.pem");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap().trim(),
        ca.display().to_string()
    );
}
