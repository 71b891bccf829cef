//! Real `laneq node` processes on ephemeral loopback ports, each with its
//! own config, data dir and log, and the client library and CLI pointed at
//! them. Nodes run `insecure = true` (plaintext, no authentication) unless
//! the cluster is made with [`Cluster::configure_secure`]: then every node
//! has certificates from `laneq::certs::create`, `init` makes the first
//! admin token, and the clients, the CLI and the status probes speak TLS
//! with it. Every process it starts is killed when the `Cluster` is
//! dropped, and a failing test prints the tail of each node's log.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use laneq::client::{Client, ClientOptions, Credentials, ReadConsistency, TlsFiles};
use laneq::proto::v1::NodeStatusResponse;

use super::eventually;

pub const BIN: &str = env!("CARGO_BIN_EXE_laneq");

/// Node settings for a test cluster: Raft's and the workers' timings, and
/// whether callers are authenticated.
#[derive(Clone, Debug)]
pub struct Timings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_logs_since_last: u64,
    pub max_in_snapshot_log_to_keep: u64,
    /// `[workers]`: lease TTL, worker timeout and heartbeat batch period.
    pub lease_ttl_ms: u64,
    pub worker_timeout_ms: u64,
    pub heartbeat_batch_ms: u64,
    /// How long a node drains after SIGTERM (`shutdown_drain_ms`).
    pub shutdown_drain_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 1000,
            lease_ttl_ms: 15_000,
            worker_timeout_ms: 15_000,
            heartbeat_batch_ms: 500,
            shutdown_drain_ms: 0,
        }
    }
}

pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, NodeProc>,
    pub timings: Timings,
    /// The certificates of a secure cluster (`laneq::certs::create`'s
    /// files); `None`: the nodes run insecure.
    pub certs: Option<PathBuf>,
    /// The first admin's token, once `init` made it (secure clusters).
    pub admin: std::sync::OnceLock<String>,
}

/// Node ids a secure cluster has certificates for (tests add nodes).
const CERTIFIED_NODES: u64 = 7;
/// The client certificates a secure cluster has (`client-NAME.pem`).
pub const CLIENT_NAMES: [&str; 2] = ["alice", "bob"];

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Writes configs for nodes `1..=n` (all of them peers) and starts them.
    pub fn start(n: u64, timings: Timings) -> Self {
        let mut c = Self::configure(n, timings);
        let ids: Vec<u64> = c.nodes.keys().copied().collect();
        for id in ids {
            c.start_node(id);
        }
        c
    }

    /// [`Cluster::start`] with TLS (see [`Cluster::configure_secure`]).
    pub fn start_secure(n: u64, timings: Timings) -> Self {
        let mut c = Self::configure_secure(n, timings);
        let ids: Vec<u64> = c.nodes.keys().copied().collect();
        for id in ids {
            c.start_node(id);
        }
        c
    }

    /// Writes configs for nodes `1..=n` without starting anything.
    pub fn configure(n: u64, timings: Timings) -> Self {
        Self::configure_with(n, timings, false)
    }

    /// [`Cluster::configure`] with TLS: certificates for the nodes (peers
    /// share the client port) and for [`CLIENT_NAMES`].
    pub fn configure_secure(n: u64, timings: Timings) -> Self {
        Self::configure_with(n, timings, true)
    }

    /// A new cluster directory; with certificates when `secure`.
    pub fn empty(timings: Timings, secure: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = secure.then(|| {
            let certs = dir.path().join("certs");
            let nodes: Vec<laneq::certs::NodeHosts> = (1..=CERTIFIED_NODES)
                .map(|id| laneq::certs::NodeHosts {
                    id,
                    hosts: (10..20).map(|i| format!("127.0.0.{i}")).collect(),
                })
                .collect();
            let clients: Vec<String> = CLIENT_NAMES.map(String::from).to_vec();
            laneq::certs::create(&certs, &nodes, &clients).unwrap();
            certs
        });
        Cluster {
            dir,
            nodes: BTreeMap::new(),
            timings,
            certs,
            admin: Default::default(),
        }
    }

    fn configure_with(n: u64, timings: Timings, secure: bool) -> Self {
        let mut c = Self::empty(timings, secure);
        let addrs: Vec<(u64, String)> = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        for (id, addr) in &addrs {
            c.add_config(*id, addr.clone(), &addrs);
        }
        c
    }

    /// Writes the config of one more node whose peer list is `peers`.
    pub fn add_config(&mut self, id: u64, addr: String, peers: &[(u64, String)]) {
        self.add_config_with(id, addr, peers, "");
    }

    /// [`Cluster::add_config`] with `top` (top-level TOML lines) added.
    pub fn add_config_with(&mut self, id: u64, addr: String, peers: &[(u64, String)], top: &str) {
        let t = &self.timings;
        let data_dir = self.dir.path().join(format!("node{id}"));
        let mut text = format!(
            "id = {id}\ncluster = \"test\"\nlisten = \"{addr}\"\ndata_dir = \"{}\"\n\
             shutdown_drain_ms = {}\n",
            data_dir.display(),
            t.shutdown_drain_ms
        );
        if self.certs.is_none() {
            text += "insecure = true\n";
        }
        text += top;
        for (pid, paddr) in peers {
            text += &format!("\n[[peers]]\nid = {pid}\naddr = \"{paddr}\"\n");
        }
        text += &format!(
            "\n[raft]\nheartbeat_interval_ms = {}\nelection_timeout_min_ms = {}\nelection_timeout_max_ms = {}\n\
             snapshot_logs_since_last = {}\nmax_in_snapshot_log_to_keep = {}\n",
            t.heartbeat_interval_ms,
            t.election_timeout_min_ms,
            t.election_timeout_max_ms,
            t.snapshot_logs_since_last,
            t.max_in_snapshot_log_to_keep
        );
        text += &format!(
            "\n[workers]\nlease_ttl_ms = {}\nworker_timeout_ms = {}\nheartbeat_batch_ms = {}\n",
            t.lease_ttl_ms, t.worker_timeout_ms, t.heartbeat_batch_ms
        );
        if let Some(certs) = &self.certs {
            let file = |name: &str| certs.join(name).display().to_string();
            text += &format!(
                "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\npeer_ca = \"{}\"\nclient_ca = \"{}\"\n",
                file(&format!("node-{id}.pem")),
                file(&format!("node-{id}.key")),
                file("cluster-ca.pem"),
                file("client-ca.pem"),
            );
        }
        let config = self.dir.path().join(format!("node{id}.toml"));
        fs::write(&config, text).unwrap();
        self.nodes.insert(
            id,
            NodeProc {
                id,
                addr,
                config,
                data_dir,
                log: self.dir.path().join(format!("node{id}.log")),
                child: None,
            },
        );
    }

    pub fn start_node(&mut self, id: u64) {
        self.start_node_with(id, &[]);
    }

    /// Starts a node with extra `laneq node` flags.
    pub fn start_node_with(&mut self, id: u64, flags: &[&str]) {
        let log = std::env::var("LANEQ_TEST_NODE_LOG").unwrap_or("info,openraft=warn".into());
        self.start_node_logging(id, flags, &log);
    }

    /// Starts a node with extra flags and `rust_log` as its `RUST_LOG`.
    pub fn start_node_logging(&mut self, id: u64, flags: &[&str], rust_log: &str) {
        self.start_node_env(id, flags, rust_log, &[]);
    }

    /// Starts a node with extra flags, `rust_log` and more `env`.
    pub fn start_node_env(
        &mut self,
        id: u64,
        flags: &[&str],
        rust_log: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(node.child.is_none(), "node {id} is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(&node.config)
            .args(flags)
            .env("RUST_LOG", rust_log)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// SIGKILL: the node gets no chance to flush anything.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(mut child) = node.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(&mut self, id: u64) -> ExitStatus {
        signal(self.pid(id).expect("node is running"), "TERM");
        self.wait_exit(id).await
    }

    /// Waits for a node that was told to stop to exit.
    pub async fn wait_exit(&mut self, id: u64) -> ExitStatus {
        let node = self.nodes.get_mut(&id).unwrap();
        let mut child = node.child.take().expect("node is running");
        let what = format!("node {id} to exit");
        eventually(Duration::from_secs(20), &what, async || {
            child.try_wait().unwrap().ok_or("running")
        })
        .await
    }

    /// Whether node `id`'s process is alive (the chaos suite's nemesis asks).
    #[allow(dead_code)]
    pub fn is_running(&mut self, id: u64) -> bool {
        let node = self.nodes.get_mut(&id).unwrap();
        match node.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// The process id of a running node.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes[&id].child.as_ref().map(Child::id)
    }

    pub fn addr(&self, id: u64) -> String {
        self.nodes[&id].addr.clone()
    }

    /// Every node but `leader`.
    pub fn followers(&self, leader: u64) -> Vec<u64> {
        self.nodes
            .keys()
            .copied()
            .filter(|&id| id != leader)
            .collect()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.addr.clone()).collect()
    }

    /// A client that knows every node (the admin's, on a secure cluster).
    pub fn client(&self) -> Client {
        self.client_on(&self.endpoints(), Duration::from_secs(20))
    }

    /// A client that talks to one node only.
    pub fn client_for(&self, id: u64) -> Client {
        self.client_on(&[self.addr(id)], Duration::from_secs(20))
    }

    /// A client of `endpoints` with `deadline`, over TLS with the admin's
    /// token when the cluster is secure.
    pub fn client_on(&self, endpoints: &[String], deadline: Duration) -> Client {
        self.client_with(endpoints, deadline, self.admin.get().map(String::as_str))
    }

    /// A client that knows every node and calls with `token`.
    pub fn client_as(&self, token: Option<&str>) -> Client {
        self.client_with(&self.endpoints(), Duration::from_secs(20), token)
    }

    /// A client of `endpoints` that calls with `token`.
    pub fn client_with(
        &self,
        endpoints: &[String],
        deadline: Duration,
        token: Option<&str>,
    ) -> Client {
        let options = ClientOptions {
            deadline,
            tls: self.client_tls(None),
            credentials: Credentials::new(token, None).unwrap(),
        };
        Client::connect(endpoints, options).unwrap()
    }

    /// What a client of a secure cluster needs: the cluster CA, and with
    /// `name` that client's certificate. `None` for an insecure cluster.
    pub fn client_tls(&self, name: Option<&str>) -> Option<TlsFiles> {
        let certs = self.certs.as_ref()?;
        Some(TlsFiles {
            ca: certs.join("cluster-ca.pem"),
            cert: name.map(|n| certs.join(format!("client-{n}.pem"))),
            key: name.map(|n| certs.join(format!("client-{n}.key"))),
            server_name: None,
        })
    }

    pub fn log_text(&self, id: u64) -> String {
        fs::read_to_string(&self.nodes[&id].log).unwrap_or_default()
    }

    pub async fn status(&self, id: u64) -> Option<NodeStatusResponse> {
        self.status_within(id, Duration::from_secs(2)).await.ok()
    }

    /// Node `id`'s own status, asked of it alone, within `timeout`.
    pub async fn status_within(
        &self,
        id: u64,
        timeout: Duration,
    ) -> Result<NodeStatusResponse, laneq::client::ClientError> {
        let addr = self.addr(id);
        self.client_on(std::slice::from_ref(&addr), timeout)
            .status_of(&addr, timeout)
            .await
    }

    /// Initialises through `via` and waits for a leader. A secure cluster
    /// gets its first admin token (kept in `admin`).
    pub async fn init(&self, via: u64) -> u64 {
        let what = format!("init through node {via} to succeed");
        let (token, digest) = laneq::client::new_token("admin");
        let digest = self.certs.is_some().then_some(digest);
        let r = eventually(Duration::from_secs(20), &what, async || {
            (self.client_for(via).init(digest.clone()).await).map_err(|e| e.to_string())
        })
        .await;
        if r.admin_token_created {
            self.admin.set(token).expect("one admin token per cluster");
        }
        self.wait_leader(&self.nodes.keys().copied().collect::<Vec<_>>())
            .await
    }

    /// Waits until one of `among` leads and all reachable ones agree on it.
    pub async fn wait_leader(&self, among: &[u64]) -> u64 {
        let what = format!("a single leader among {among:?} (the leaders seen)");
        eventually(Duration::from_secs(30), &what, async || {
            let mut leaders = vec![];
            for &id in among {
                if let Some(s) = self.status(id).await {
                    if s.role == "leader" {
                        leaders.push(s.id);
                    }
                }
            }
            match leaders[..] {
                [leader] => Ok(leader),
                _ => Err(leaders),
            }
        })
        .await
    }

    /// Waits until every node of `ids` reports the same applied index (at
    /// least `min_index`) and the same digest; returns them.
    pub async fn wait_converged(&self, ids: &[u64], min_index: u64) -> (u64, String) {
        let what = format!("nodes {ids:?} to converge at index {min_index} or later");
        eventually(Duration::from_secs(30), &what, async || {
            let mut seen = vec![];
            for &id in ids {
                seen.push(self.status(id).await.map(|s| (s.applied_index, s.digest)));
            }
            match seen.first() {
                Some(Some(first))
                    if first.0 >= min_index && seen.iter().all(|s| s.as_ref() == Some(first)) =>
                {
                    Ok(first.clone())
                }
                _ => Err(seen),
            }
        })
        .await
    }

    /// Submits `n` tasks to `queue` and returns their ids, in order.
    pub async fn submit_many(&self, client: &Client, queue: &str, n: usize) -> Vec<u64> {
        let mut ids = vec![];
        for i in 0..n {
            let r = client
                .submit_task(queue, vec!["echo".into(), i.to_string()], vec![], None)
                .await
                .unwrap();
            ids.push(r.id);
        }
        ids
    }

    /// Runs the `laneq` CLI against every node; returns the exit code,
    /// stdout and stderr.
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self.command().args(args).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (o.status.code(), out, err)
    }

    /// The `laneq` CLI pointed at every node, with the admin's token on a
    /// secure cluster, and a client config of the test's own: never the
    /// user's contexts or token.
    pub fn command(&self) -> Command {
        self.command_on(&self.endpoints())
    }

    /// [`Cluster::command`] pointed at `endpoints` only.
    pub fn command_on(&self, endpoints: &[String]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["--endpoints", &endpoints.join(",")])
            .env("LANEQ_CONFIG", self.dir.path().join("client.toml"));
        for v in [
            "LANEQ_TOKEN",
            "LANEQ_CONTEXT",
            "LANEQ_ENDPOINTS",
            "LANEQ_CACERT",
        ] {
            c.env_remove(v);
        }
        if let Some(certs) = &self.certs {
            c.env("LANEQ_CACERT", certs.join("cluster-ca.pem"));
        }
        if let Some(token) = self.admin.get() {
            c.env("LANEQ_TOKEN", token);
        }
        c
    }

    /// Checks through a stale read on `id` that every task in `ids` is
    /// there, with its command line (read from the node's own storage).
    pub async fn assert_has_tasks(&self, id: u64, ids: &[u64]) {
        let client = self.client_for(id);
        for &task in ids {
            let t = client.get_task(task, ReadConsistency::Stale).await;
            assert!(t.is_ok(), "node {id} lacks task {task}: {:?}", t.err());
            let t = t.unwrap();
            assert!(
                !t.command.is_empty(),
                "node {id} lacks the body of task {task}"
            );
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in self.nodes.values() {
                let text = fs::read_to_string(&node.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("--- last lines of node {} ---", node.id);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
