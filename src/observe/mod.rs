//! What a node tells the world about itself: health, metrics and traces.
//!
//! - `health`: the `grpc.health.v1.Health` statuses and `/readyz`, one
//!   readiness behind both;
//! - `http`: `/healthz`, `/readyz` and `/metrics`, served on the gRPC port;
//! - `replicated`: the queue and worker figures of the replicated state;
//! - `node`: this node's Raft figures and size on disk;
//! - `process`: CPU, memory and open files, from `/proc/self`;
//! - `rpc`: the tower layer that gives each gRPC call a span, a request id,
//!   a log line and its samples;
//! - `otel` (cargo feature `otel`): the OpenTelemetry exporter of spans;
//! - `systemd`: READY=1, STATUS= and STOPPING=1 for a `Type=notify` unit.
//!
//! The histograms and counters that storage and Raft record as they work
//! are statics of the leaf `crate::meter`; this module registers them.
//!
//! **Architecture Invariant:** observe only reads: the state through
//! `SmShared`, Raft through `RaftNode::status`, and never writes through
//! the log; a scrape holds the state's lock only to copy figures out.

mod health;
mod http;
mod node;
#[cfg(feature = "otel")]
pub mod otel;
mod process;
mod replicated;
mod rpc;
pub mod systemd;

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

pub use health::{readiness, Health, Readiness, HEALTH_POLL};
pub use rpc::{RpcLayer, RpcMetrics};

use crate::meter;
use crate::raft::RaftNode;

/// The prefix of every laneq metric (the process's own are `process_*`,
/// as every Prometheus client names them).
const PREFIX: &str = "laneq";

/// A node's health, metrics registry and RPC instruments.
pub struct Observer {
    health: Arc<Health>,
    rpc: Arc<RpcMetrics>,
    registry: Registry,
}

impl Observer {
    /// Builds the registry over `node` and starts watching its readiness
    /// and its leader.
    pub async fn start(node: Arc<RaftNode>, data_dir: PathBuf) -> Arc<Self> {
        let health = Health::new().await;
        health.spawn_watch(node.clone());
        let mut known: Vec<&'static str> = crate::proto::v1::SERVICES.to_vec();
        known.extend(OTHER_SERVICES);
        let rpc = Arc::new(RpcMetrics::new(known));
        let leader_changes = Counter::default();
        spawn_leader_count(node.clone(), leader_changes.clone());
        let registry = registry(node, data_dir, &rpc, leader_changes);
        Arc::new(Observer {
            health,
            rpc,
            registry,
        })
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The layer that traces and counts every gRPC call.
    pub fn rpc_layer(&self) -> RpcLayer {
        RpcLayer {
            metrics: self.rpc.clone(),
        }
    }

    /// The HTTP routes to serve beside the gRPC services.
    pub fn http_routes(self: &Arc<Self>) -> axum::Router {
        http::routes(self.clone())
    }

    /// Every metric, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The services served beside `laneq.v1` whose methods are labels of the
/// RPC metrics.
const OTHER_SERVICES: [&str; 4] = [
    "laneq.raft.RaftPeer",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Counts each time this node comes to know a new leader (an election it
/// saw end, or its first leader after a start), as etcd's
/// `leader_changes_seen` does.
fn spawn_leader_count(node: Arc<RaftNode>, changes: Counter) {
    tokio::spawn(async move {
        let mut seen = None;
        while let Ok(now) = node.leader_changed(seen).await {
            if now.is_some() {
                changes.inc();
            }
            seen = now;
        }
    });
}

fn registry(
    node: Arc<RaftNode>,
    data_dir: PathBuf,
    rpc: &RpcMetrics,
    leader_changes: Counter,
) -> Registry {
    let mut root = Registry::default();
    root.register_collector(Box::new(process::ProcessCollector));
    let r = root.sub_registry_with_prefix(PREFIX);
    r.register(
        "grpc_requests",
        "gRPC calls this node served, by service, method and status code",
        rpc.requests.clone(),
    );
    r.register(
        "grpc_request_duration_seconds",
        "gRPC call latency by service and method, to the end of the response (a stream's whole life)",
        rpc.latency.clone(),
    );
    r.register(
        "raft_leader_changes",
        "Times this node came to know a new leader",
        leader_changes,
    );
    register_meters(r);
    r.register_collector(Box::new(node::NodeCollector {
        node: node.clone(),
        data_dir,
    }));
    r.register_collector(Box::new(replicated::ReplicatedCollector { node }));
    root
}

/// Registers the statics of `crate::meter`.
fn register_meters(r: &mut Registry) {
    r.register(
        "store_wal_fsync_duration_seconds",
        "Each sync of the write-ahead log, which acknowledged appends wait for",
        meter::WAL_FSYNC_SECONDS.clone(),
    );
    r.register(
        "raft_apply_duration_seconds",
        "Each apply of a run of committed entries: model, digest and the RocksDB batch",
        meter::APPLY_SECONDS.clone(),
    );
    r.register(
        "raft_applied_entries",
        "Log entries this node has applied since it started",
        meter::APPLIED_ENTRIES.clone(),
    );
    r.register(
        "raft_snapshot_build_duration_seconds",
        "Each snapshot this node built",
        meter::SNAPSHOT_BUILD_SECONDS.clone(),
    );
    r.register(
        "raft_snapshot_install_duration_seconds",
        "Each snapshot this node installed from the leader",
        meter::SNAPSHOT_INSTALL_SECONDS.clone(),
    );
    r.register(
        "raft_snapshot_size_bytes",
        "The size of the snapshot this node last built or installed",
        meter::SNAPSHOT_BYTES.clone(),
    );
    r.register(
        "raft_proposals_pending",
        "Writes this node has proposed as leader and not yet seen applied",
        meter::PROPOSALS_PENDING.clone(),
    );
    meter::init_proposal_failures(&crate::raft::ProposeError::REASONS);
    r.register(
        "raft_proposals_failed",
        "Proposals that failed, by reason (a domain refusal is an answer, not a failure)",
        meter::PROPOSALS_FAILED.clone(),
    );
}
