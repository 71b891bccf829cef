//! The node's config file (TOML) and its checks. Flags override the file.

mod security;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use security::{host_of, host_port, TlsSettings};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id: unique in the cluster, never reused.
    pub id: u64,
    /// The cluster's name; a data dir remembers it and refuses another.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// gRPC address (IP:port) for clients, and for peers unless
    /// `peer_listen` is set.
    pub listen: String,
    /// The `host:port` clients and peers are told this node is at (its
    /// status, the peer list's default entry for itself): needed when
    /// `listen` is a wildcard such as 0.0.0.0, and the name its
    /// certificate is checked against.
    #[serde(default)]
    pub advertise: Option<String>,
    /// A second address (IP:port) that serves only the peer protocol,
    /// with a peer certificate required; then the client port does not
    /// serve it, and `peers` lists these addresses.
    #[serde(default)]
    pub peer_listen: Option<String>,
    /// Plaintext, and no authentication: for a trusted network or a
    /// laptop only. The node logs a warning at start. A node needs this
    /// or a complete `[tls]`, never both.
    #[serde(default)]
    pub insecure: bool,
    /// Certificates for TLS on the client port and mutual TLS between
    /// peers (see `TlsSettings`). Reloaded on SIGHUP.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Where the node keeps its RocksDB and snapshots.
    pub data_dir: PathBuf,
    /// Every voter of the initial cluster, this node included.
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub raft: RaftTimings,
    #[serde(default)]
    pub workers: WorkerSettings,
    /// After the first SIGTERM, how long the node reports NOT_SERVING (gRPC
    /// health, `/readyz`) while it still serves, so that load balancers
    /// stop sending it calls before it stops taking them. 0: stop at once.
    #[serde(default)]
    pub shutdown_drain_ms: u64,
    /// The metrics history (`[history]`): every node of a cluster must use
    /// the same values, since they decide what apply writes.
    #[serde(default)]
    pub history: crate::model::history::Settings,
    #[serde(default)]
    pub watch: WatchSettings,
    /// Most calls of the public API (`laneq.v1`) this node serves at once;
    /// one more is refused with RESOURCE_EXHAUSTED rather than queued, so
    /// that one client's flood cannot starve the rest. Peer calls, health
    /// and HTTP are not counted. A lease poll holds its slot while it
    /// waits, so leave room for every worker's. 0: no limit.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

/// The default of `max_concurrent_requests`: a lease poll for each of
/// thousands of workers, and room for every other call besides.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16_384;
/// The most `max_concurrent_requests` may be.
pub const MAX_CONCURRENT_REQUESTS_MAX: usize = 1_000_000;

fn default_max_concurrent_requests() -> usize {
    DEFAULT_MAX_CONCURRENT_REQUESTS
}

/// Live watches (`laneq.v1.Watch`) this node serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSettings {
    /// Most watch streams open on this node at once; one more is refused
    /// with RESOURCE_EXHAUSTED. Each costs a task and a look at the state
    /// at most every 200 ms while the state changes. 0 turns watches off.
    pub max_watchers: usize,
}

/// The most `[watch] max_watchers` may be: far past what one node can
/// follow at 5 looks a second each, and within what a semaphore counts.
pub const WATCHERS_MAX: usize = 100_000;

impl Default for WatchSettings {
    fn default() -> Self {
        Self { max_watchers: 1024 }
    }
}

impl WatchSettings {
    fn validate(&self) -> Result<(), String> {
        if self.max_watchers > WATCHERS_MAX {
            return Err(format!(
                "watch: max_watchers = {} is out of range; use 0 to {WATCHERS_MAX}",
                self.max_watchers
            ));
        }
        Ok(())
    }
}

/// The longest drain a node may be given: past it, a supervisor's own
/// timeout (systemd's 90 s, Kubernetes' grace period) would kill it first.
pub const SHUTDOWN_DRAIN_MAX_MS: u64 = 60_000;

/// Leases and heartbeats. Every node of a cluster should use the same values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// A lease not renewed (by a heartbeat or a call about its task) for
    /// this long expires; its task goes back to its queue.
    pub lease_ttl_ms: u64,
    /// A worker silent this long is marked lost and its leases expire.
    pub worker_timeout_ms: u64,
    /// How often a node passes the heartbeats it gathered on, in one write.
    pub heartbeat_batch_ms: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 15_000,
            worker_timeout_ms: 15_000,
            heartbeat_batch_ms: 500,
        }
    }
}

/// Raft timings, from the node's config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag a little.
    pub max_in_snapshot_log_to_keep: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 25,
            election_timeout_min_ms: 100,
            election_timeout_max_ms: 200,
            snapshot_logs_since_last: 50_000,
            max_in_snapshot_log_to_keep: 1000,
        }
    }
}

impl RaftTimings {
    /// The entries between two snapshots on node `id`: the configured
    /// number, plus a quarter of it on one node of three and half of it on
    /// another, so that the nodes never build at once. Nodes apply the same
    /// entries, and builds on all three at the same moment held every write
    /// back; one follower building still leaves a quorum (see
    /// bench/RESULTS.md, "Snapshots spread over the nodes").
    pub fn snapshot_interval(&self, id: u64) -> u64 {
        let n = self.snapshot_logs_since_last;
        n + n / 4 * (id % 3)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: u64,
    pub addr: String,
}

fn default_cluster() -> String {
    "laneq".to_string()
}

impl WorkerSettings {
    fn validate(&self) -> Result<(), String> {
        let w = self;
        let range = crate::model::limits::TTL_MIN_MS..=crate::model::limits::TTL_MAX_MS;
        for (field, ms) in [
            ("lease_ttl_ms", w.lease_ttl_ms),
            ("worker_timeout_ms", w.worker_timeout_ms),
        ] {
            if !range.contains(&ms) {
                return Err(format!(
                    "workers: {field} = {ms} is out of range; use {} to {} ms",
                    range.start(),
                    range.end()
                ));
            }
        }
        if !(10..=w.lease_ttl_ms / 2).contains(&w.heartbeat_batch_ms) {
            return Err(format!(
                "workers: heartbeat_batch_ms = {} must be 10 ms or more and at most half of \
                 lease_ttl_ms",
                w.heartbeat_batch_ms
            ));
        }
        Ok(())
    }
}

impl NodeConfig {
    /// Reads and parses a config file; errors name the file and the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {} is not valid: {e}", path.display()))
    }

    /// Checks the settings that parsing cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("id: must be 1 or more".into());
        }
        crate::model::validate::name("cluster", &self.cluster).map_err(|e| e.to_string())?;
        self.listen
            .parse::<SocketAddr>()
            .map_err(|e| format!("listen: {:?} is not a host:port address: {e}", self.listen))?;
        self.validate_peers()?;
        let t = &self.raft;
        if t.heartbeat_interval_ms == 0 || t.election_timeout_min_ms <= t.heartbeat_interval_ms {
            return Err(
                "raft: election_timeout_min_ms must be above heartbeat_interval_ms (> 0)".into(),
            );
        }
        if t.election_timeout_max_ms <= t.election_timeout_min_ms {
            return Err(
                "raft: election_timeout_max_ms must be above election_timeout_min_ms".into(),
            );
        }
        if t.snapshot_logs_since_last == 0 {
            return Err("raft: snapshot_logs_since_last must be 1 or more".into());
        }
        if self.shutdown_drain_ms > SHUTDOWN_DRAIN_MAX_MS {
            return Err(format!(
                "shutdown_drain_ms = {} is over the limit of {SHUTDOWN_DRAIN_MAX_MS} ms",
                self.shutdown_drain_ms
            ));
        }
        if self.max_concurrent_requests > MAX_CONCURRENT_REQUESTS_MAX {
            return Err(format!(
                "max_concurrent_requests = {} is over the limit of \
                 {MAX_CONCURRENT_REQUESTS_MAX}; 0 means no limit",
                self.max_concurrent_requests
            ));
        }
        self.workers.validate()?;
        self.watch.validate()?;
        self.history.validate()?;
        self.validate_security()
    }

    /// Each peer has a usable address and a unique id, and this node is one.
    fn validate_peers(&self) -> Result<(), String> {
        let mut seen = BTreeMap::new();
        for p in &self.peers {
            host_port(&p.addr).map_err(|e| {
                format!(
                    "peers: address {:?} of node {} is not host:port: {e}",
                    p.addr, p.id
                )
            })?;
            if p.id == 0 {
                return Err("peers: node ids must be 1 or more".into());
            }
            if seen.insert(p.id, &p.addr).is_some() {
                return Err(format!("peers: node {} is listed twice", p.id));
            }
        }
        if !self.peers.is_empty() && !seen.contains_key(&self.id) {
            return Err(format!(
                "peers: this node ({}) must be in its own peer list",
                self.id
            ));
        }
        Ok(())
    }

    /// Every peer's address, this node's own included: its `peers` entry,
    /// else `peer_listen`, else the advertised address.
    pub fn peer_map(&self) -> BTreeMap<u64, String> {
        let mut peers: BTreeMap<u64, String> =
            self.peers.iter().map(|p| (p.id, p.addr.clone())).collect();
        let own = self.peer_listen.as_deref().unwrap_or(self.advertised());
        peers.entry(self.id).or_insert_with(|| own.to_string());
        peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        let c: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    const OK: &str = r#"
id = 1
insecure = true
listen = "127.0.0.1:7101"
data_dir = "d"
[[peers]]
id = 1
addr = "127.0.0.1:7101"
[[peers]]
id = 2
addr = "127.0.0.1:7102"
"#;

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = parse(OK).unwrap();
        assert_eq!(c.cluster, "laneq");
        assert_eq!(c.raft.heartbeat_interval_ms, 25);
        assert_eq!(c.peer_map().len(), 2);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let e = parse("id = 1\nlisten = \"nope\"\ndata_dir = \"d\"").unwrap_err();
        assert!(e.contains("listen"), "{e}");
        let e = parse(&OK.replace("id = 1\ninsecure", "id = 3\ninsecure")).unwrap_err();
        assert!(e.contains("own peer list"), "{e}");
        let e = parse(&format!("{OK}\nbogus = 1")).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("listen = \"127.0.0.1:1\"\ndata_dir = \"d\"").unwrap_err();
        assert!(e.contains("id"), "{e}");
        let e = parse(&format!("{OK}\n[raft]\nelection_timeout_min_ms = 20")).unwrap_err();
        assert!(e.contains("election_timeout_min_ms"), "{e}");
        let e = parse(&OK.replace("data_dir", "shutdown_drain_ms = 60001\ndata_dir")).unwrap_err();
        assert!(e.contains("shutdown_drain_ms"), "{e}");
        let c = parse(&OK.replace("data_dir", "shutdown_drain_ms = 5000\ndata_dir")).unwrap();
        assert_eq!(c.shutdown_drain_ms, 5000);
        let e = parse(&format!(
            "{OK}\n[[history.resolutions]]\nstep_ms = 10000\nretention_ms = 60000\n\
             [[history.resolutions]]\nstep_ms = 15000\nretention_ms = 60000"
        ))
        .unwrap_err();
        assert!(e.contains("history.resolutions[1].step_ms"), "{e}");
    }

    #[test]
    fn the_history_section_parses() {
        let c = parse(&format!(
            "{OK}\n[history]\nenabled = false\n[[history.resolutions]]\nstep_ms = 5000\n\
             retention_ms = 3600000"
        ))
        .unwrap();
        assert!(!c.history.enabled);
        assert_eq!(c.history.resolutions.len(), 1);
        assert_eq!(c.history.retention_ms(5000), 3_600_000);
        assert_eq!(parse(OK).unwrap().history, Default::default());
        let e = parse(&format!("{OK}\n[watch]\nmax_watchers = 100001")).unwrap_err();
        assert!(e.contains("max_watchers"), "{e}");
        let c = parse(&format!("{OK}\n[watch]\nmax_watchers = 0")).unwrap();
        assert_eq!(c.watch.max_watchers, 0);
    }
}
