//! The two systems under test, each a 3-node cluster of real processes on
//! 127.0.0.1 with its own data dirs under one temp dir: laneq from the
//! release binary with its default settings, and etcd (Debian's
//! etcd-server). Every process started here is killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use laneq::client::{new_token, Client, ClientOptions, Credentials, TlsFiles};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The nodes' log filter: `LANEQ_BENCH_NODE_LOG` when set (say
/// `info`, to see snapshot builds), else warnings only.
fn node_log_filter() -> String {
    std::env::var("LANEQ_BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into())
}

/// A temp dir for one cluster's data and logs. With `LANEQ_BENCH_KEEP`
/// set it outlives the run (its path is printed), for reading the node
/// logs and RocksDB's own LOG files afterwards.
fn cluster_dir(name: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("laneq-bench-{name}-"))
        .tempdir()
        .expect("temp dir");
    if std::env::var_os("LANEQ_BENCH_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("{name} cluster data kept in {}", dir.path().display());
    }
    dir
}

/// Threads for each node of a 3-node cluster on this machine: a third of
/// the cores (at least one). laneq gets them as `--threads`, etcd as
/// `GOMAXPROCS`, so that neither system's three nodes fight over the cores
/// and the comparison stays even.
pub fn threads_per_node() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 3).max(1)
}

struct Proc {
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self, bin: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let child = Command::new(bin)
            .args(&self.args)
            .env("RUST_LOG", node_log_filter())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Which system a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Laneq,
    Etcd,
}

pub struct Cluster {
    pub kind: Kind,
    pub name: String,
    bin: PathBuf,
    /// Client endpoints, one per node (host:port).
    pub endpoints: Vec<String>,
    /// How a laneq client reaches it: plaintext, or TLS with a token.
    options: ClientOptions,
    procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

/// How a laneq cluster is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// `insecure = true`: plaintext, no tokens (the other scenarios).
    Off,
    /// What `scripts/cluster up` runs: TLS on the client port, mutual TLS
    /// between the nodes (certificates from `laneq certs create`), and
    /// every call checked against an admin token.
    On,
}

impl Cluster {
    /// A laneq cluster with its default settings (fsync on).
    pub async fn laneq(bin: &Path) -> Cluster {
        Cluster::laneq_with(bin, "laneq", "").await
    }

    /// A laneq cluster named `name`, with `extra` (TOML) appended to each
    /// node's config before its peers.
    pub async fn laneq_with(bin: &Path, name: &str, extra: &str) -> Cluster {
        Cluster::laneq_secured(bin, name, extra, Security::Off).await
    }

    /// A laneq cluster named `name`, secured or not, with `extra` (TOML)
    /// appended to each node's config before its peers.
    pub async fn laneq_secured(bin: &Path, name: &str, extra: &str, security: Security) -> Cluster {
        let (mut c, digest) = Cluster::laneq_configured(bin, name, extra, security);
        for i in 0..3 {
            c.start(i);
        }
        let digest = (security == Security::On).then_some(digest);
        (c.client(Duration::from_secs(30)).init(digest).await).expect("init the laneq cluster");
        c.wait_ready().await;
        c
    }

    /// A new plaintext laneq cluster whose members are each restored from
    /// `file` (`laneq node restore`) and then started, without init. Returns
    /// it and how long each member's restore took.
    pub async fn laneq_restored(bin: &Path, file: &Path) -> (Cluster, Vec<Duration>) {
        let (mut c, _) = Cluster::laneq_configured(bin, "laneq-restored", "", Security::Off);
        let mut took = Vec::new();
        for i in 0..3 {
            let config = c.procs[i].args[2].clone();
            let start = std::time::Instant::now();
            let o = Command::new(bin)
                .args(["node", "restore"])
                .arg(file)
                .args(["--config", &config])
                .output()
                .expect("run laneq node restore");
            assert!(
                o.status.success(),
                "laneq node restore: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            took.push(start.elapsed());
        }
        for i in 0..3 {
            c.start(i);
        }
        c.wait_ready().await;
        (c, took)
    }

    /// A laneq cluster's configs, nothing started, and the digest of the
    /// admin token that a secure one's init is to store.
    fn laneq_configured(
        bin: &Path,
        name: &str,
        extra: &str,
        security: Security,
    ) -> (Cluster, Vec<u8>) {
        let dir = cluster_dir("laneq");
        let certs = dir.path().join("certs");
        // A top-level key (before `extra`, whose tables would take it in)
        // or a table of its own (after it).
        let (top, tls) = match security {
            Security::Off => ("insecure = true\n", String::new()),
            Security::On => {
                make_certs(bin, &certs);
                let f = |n: &str| certs.join(n).display().to_string();
                let table = format!(
                    "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\npeer_ca = \"{}\"\nclient_ca = \"{}\"\n",
                    f("node-ID.pem"),
                    f("node-ID.key"),
                    f("cluster-ca.pem"),
                    f("client-ca.pem")
                );
                ("", table)
            }
        };
        let addrs: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let mut procs = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i + 1;
            let mut text = format!(
                "id = {id}\ncluster = \"bench\"\nlisten = \"{addr}\"\ndata_dir = \"{}\"\n",
                dir.path().join(format!("node{id}")).display()
            );
            text += top;
            text += extra;
            text += &tls.replace("node-ID", &format!("node-{id}"));
            for (j, peer) in addrs.iter().enumerate() {
                text += &format!("\n[[peers]]\nid = {}\naddr = \"{peer}\"\n", j + 1);
            }
            let config = dir.path().join(format!("node{id}.toml"));
            std::fs::write(&config, text).expect("write config");
            procs.push(Proc {
                args: vec![
                    "node".into(),
                    "--config".into(),
                    config.display().to_string(),
                    "--threads".into(),
                    threads_per_node().to_string(),
                ],
                env: Vec::new(),
                log: dir.path().join(format!("node{id}.log")),
                child: None,
            });
        }
        let (token, digest) = new_token("admin");
        let options = match security {
            Security::Off => ClientOptions::default(),
            Security::On => ClientOptions {
                tls: Some(TlsFiles {
                    ca: certs.join("cluster-ca.pem"),
                    ..Default::default()
                }),
                credentials: Credentials::new(Some(&token), None).expect("a token"),
                ..Default::default()
            },
        };
        let c = Cluster {
            kind: Kind::Laneq,
            name: name.into(),
            bin: bin.to_path_buf(),
            endpoints: addrs,
            options,
            procs,
            _dir: dir,
        };
        (c, digest)
    }

    /// A laneq client of this cluster (TLS and a token where it needs
    /// them); it connects at its first call.
    pub fn client(&self, deadline: Duration) -> Client {
        let options = ClientOptions {
            deadline,
            ..self.options.clone()
        };
        Client::connect(&self.endpoints, options).expect("the cluster's CA file")
    }

    /// One laneq node's own status, with this cluster's transport.
    async fn status(
        &self,
        ep: &str,
        timeout: Duration,
    ) -> Option<laneq::proto::v1::NodeStatusResponse> {
        self.client(timeout).status_of(ep, timeout).await.ok()
    }

    /// An etcd cluster; `fast` sets heartbeat 10 ms and election 100 ms
    /// (etcd's defaults are 100 ms and 1000 ms).
    pub async fn etcd(bin: &Path, fast: bool) -> Cluster {
        let dir = cluster_dir("etcd");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = (ports.iter().enumerate())
            .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
            .collect();
        let mut procs = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let mut args = vec![
                format!("--name=e{}", i + 1),
                format!(
                    "--data-dir={}",
                    dir.path().join(format!("e{}", i + 1)).display()
                ),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=laneq-bench".into(),
                "--log-level=warn".into(),
            ];
            if fast {
                args.push("--heartbeat-interval=10".into());
                args.push("--election-timeout=100".into());
            }
            procs.push(Proc {
                args,
                env: vec![("GOMAXPROCS", threads_per_node().to_string())],
                log: dir.path().join(format!("e{}.log", i + 1)),
                child: None,
            });
        }
        let mut c = Cluster {
            kind: Kind::Etcd,
            name: if fast { "etcd (10/100 ms)" } else { "etcd" }.into(),
            bin: bin.to_path_buf(),
            endpoints: ports
                .iter()
                .map(|(c, _)| format!("127.0.0.1:{c}"))
                .collect(),
            options: ClientOptions::default(),
            procs,
            _dir: dir,
        };
        for i in 0..3 {
            c.start(i);
        }
        c.wait_ready().await;
        c
    }

    pub fn start(&mut self, node: usize) {
        let bin = self.bin.clone();
        self.procs[node].start(&bin);
    }

    pub fn kill(&mut self, node: usize) {
        self.procs[node].kill();
    }

    pub fn pid(&self, node: usize) -> Option<u32> {
        self.procs[node].pid()
    }

    /// The index of the node that leads, asking each node in turn.
    pub async fn leader(&self) -> Option<usize> {
        match self.kind {
            Kind::Laneq => {
                for (i, ep) in self.endpoints.iter().enumerate() {
                    if let Some(s) = self.status(ep, Duration::from_millis(500)).await {
                        if s.role == "leader" {
                            return Some(i);
                        }
                    }
                }
                None
            }
            Kind::Etcd => {
                for (i, ep) in self.endpoints.iter().enumerate() {
                    let status = async {
                        let mut c = etcd_client::Client::connect([ep], None).await.ok()?;
                        c.status().await.ok()
                    };
                    let Ok(Some(s)) =
                        tokio::time::timeout(Duration::from_millis(500), status).await
                    else {
                        continue;
                    };
                    if s.header().map(|h| h.member_id()) == Some(s.leader()) {
                        return Some(i);
                    }
                }
                None
            }
        }
    }

    /// The highest Raft term a node reports (laneq only; 0 for etcd).
    pub async fn term(&self) -> u64 {
        let mut term = 0;
        if self.kind == Kind::Laneq {
            for ep in &self.endpoints {
                if let Some(s) = self.status(ep, Duration::from_secs(2)).await {
                    term = term.max(s.term);
                }
            }
        }
        term
    }

    /// Waits until every laneq node has applied what any node had committed
    /// when called (so that memory is measured on whole states).
    pub async fn wait_caught_up(&self) {
        let mut target = 0;
        for ep in &self.endpoints {
            if let Some(s) = self.status(ep, Duration::from_secs(2)).await {
                target = target.max(s.committed_index);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for ep in &self.endpoints {
            while Instant::now() < deadline {
                match self.status(ep, Duration::from_secs(2)).await {
                    Some(s) if s.applied_index >= target => break,
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }

    /// Waits until the cluster has a leader and takes a write.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = match self.kind {
                Kind::Laneq => {
                    let c = self.client(Duration::from_secs(2));
                    c.list_queues(laneq::client::ReadConsistency::Linearizable)
                        .await
                        .is_ok()
                }
                Kind::Etcd => {
                    let put = async {
                        let mut c = etcd_client::Client::connect(&self.endpoints, None).await?;
                        c.put("ready", "1", None).await
                    };
                    matches!(
                        tokio::time::timeout(Duration::from_secs(2), put).await,
                        Ok(Ok(_))
                    )
                }
            };
            if ok && self.leader().await.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready within 60 s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
    }
}

/// A CA, a certificate for each of three nodes on 127.0.0.1, in `dir`,
/// as `scripts/cluster up` makes them.
fn make_certs(bin: &Path, dir: &Path) {
    let out = Command::new(bin)
        .args(["certs", "create", "--dir"])
        .arg(dir)
        .args([
            "--node",
            "1:127.0.0.1",
            "--node",
            "2:127.0.0.1",
            "--node",
            "3:127.0.0.1",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} certs create: {e}", bin.display()));
    assert!(
        out.status.success(),
        "laneq certs create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Some(Duration::from_millis(ticks * 1000 / hz.max(1)))
}
