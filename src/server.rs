//! The `laneq node` process: checks the config and the data dir, opens
//! storage, starts Raft and the node's duties, serves gRPC for peers and
//! clients on one port, and shuts down gracefully on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::codegen::http;
use tonic::transport::Server;

use crate::api;
use crate::config::NodeConfig;
use crate::duties::{self, WorkerHub};
use crate::proto::raft::raft_peer_server::RaftPeerServer;
use crate::proto::v1::watch_server::WatchServer;
use crate::raft::{PeerService, RaftNode};
use crate::store::{Identity, Store};

/// Most concurrent gRPC streams per connection.
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Runs a node until SIGTERM/SIGINT. `init` initialises the cluster from the
/// peer list once the node serves (a no-op on an initialised cluster).
pub async fn run(config: NodeConfig, init: bool) -> Result<(), String> {
    config.validate()?;
    let listen: SocketAddr = config.listen.parse().map_err(|e| format!("listen: {e}"))?;
    Identity::new(config.id, &config.cluster)
        .claim(&config.data_dir)
        .map_err(|e| e.to_string())?;
    let store = Store::open(&config.data_dir).map_err(|e| {
        format!(
            "cannot open the store in {}: {e}",
            config.data_dir.display()
        )
    })?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let node = RaftNode::start(&config, store.clone()).await?;
    tracing::info!(id = config.id, %listen, data_dir = %config.data_dir.display(), "node started");

    let hub = WorkerHub::new(config.workers.clone());
    duties::spawn(&node, &hub);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let watch = api::watch_server(node.clone(), &config.watch, stop_rx.clone());
    let server = serve(node.clone(), hub, watch, listener, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(server);
    if init {
        tokio::spawn(init_when_ready(node.clone()));
    }

    let fatal = tokio::select! {
        () = wait_for_signal() => None,
        e = node.fatal() => Some(e),
    };
    match &fatal {
        None => tracing::info!("shutting down: no new requests, finishing those in flight"),
        Some(e) => tracing::error!(error = %e, "raft stopped on a fatal error; the node exits"),
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("in-flight requests did not finish within 10 s"),
    }
    node.shutdown().await;
    if let Some(e) = fatal {
        return Err(format!("raft stopped on a fatal error: {e}"));
    }
    store.sync().map_err(|e| format!("final flush: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves the peer protocol and the public API on one listener.
pub async fn serve(
    node: Arc<RaftNode>,
    hub: Arc<WorkerHub>,
    watch: WatchServer<api::WatchApi>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // Nagle's algorithm off on every accepted connection: a small reply (a
    // heartbeat's ack, a read's answer) must not wait for the peer's delayed
    // ACK. `Server::tcp_nodelay` applies only to listeners tonic binds itself.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let limit = crate::raft::PEER_MESSAGE_MAX_BYTES;
    Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .layer(tower::layer::layer_fn(|inner| LeaderHint { inner }))
        .add_service(
            RaftPeerServer::new(PeerService::new(node.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(api::cluster_server(node.clone(), hub.clone()))
        .add_service(api::pools_server(node.clone()))
        .add_service(api::queues_server(node.clone()))
        .add_service(api::projects_server(node.clone()))
        .add_service(api::config_server(node.clone()))
        .add_service(api::workers_server(node.clone(), hub))
        .add_service(api::tasks_server(node))
        .add_service(watch)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Adds the leader's id and address to the response of a request whose
/// writes this node forwarded to it (see `raft::noting_forwards`): the
/// client sends its next writes there directly.
#[derive(Clone)]
struct LeaderHint<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for LeaderHint<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let serve = self.inner.call(req);
        Box::pin(async move {
            let (result, leader) = crate::raft::noting_forwards(serve).await;
            let mut response = result?;
            let Some((id, addr)) = leader else {
                return Ok(response);
            };
            let headers = response.headers_mut();
            if let (Ok(id), Ok(addr)) = (id.to_string().parse(), addr.parse()) {
                headers.insert(crate::wire::LEADER_ID_HEADER, id);
                headers.insert(crate::wire::LEADER_ADDR_HEADER, addr);
            }
            Ok(response)
        })
    }
}

async fn init_when_ready(node: Arc<RaftNode>) {
    for _ in 0..100 {
        match node.init().await {
            Ok(true) => return tracing::info!("cluster initialised"),
            Ok(false) => return tracing::info!("cluster already initialised"),
            Err(e) => tracing::warn!(error = %e, "init failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
