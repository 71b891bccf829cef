//! The `laneq node` process: checks the config and the data dir, opens
//! storage, starts Raft and the node's duties, serves gRPC for peers and
//! clients and HTTP (`/metrics`, `/healthz`, `/readyz`) on one port, and
//! shuts down gracefully on SIGTERM or SIGINT: it reports NOT_SERVING at
//! once, goes on serving for `shutdown_drain_ms` (so that load balancers
//! move away first; a second signal cuts it short), then stops taking new
//! calls and lets those in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::codegen::http;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::Server;

use crate::api;
use crate::config::NodeConfig;
use crate::duties::{self, WorkerHub};
use crate::observe::Observer;
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
    // Installed first: a signal while the store opens waits for the node.
    let mut signals = Signals::new();
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
    let observer = Observer::start(node.clone(), config.data_dir.clone()).await;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let watch = api::watch_server(node.clone(), &config.watch, stop_rx.clone());
    let stopped = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    let server = serve(
        node.clone(),
        hub,
        &observer,
        watch,
        listener,
        &config,
        stopped,
    )?;
    let server = tokio::spawn(server);
    if init {
        tokio::spawn(init_when_ready(node.clone()));
    }

    let fatal = tokio::select! {
        () = signals.next() => None,
        e = node.fatal() => Some(e),
    };
    observer.health().drain().await;
    let fatal = match fatal {
        None => drain(&node, &mut signals, config.shutdown_drain_ms).await,
        fatal => fatal,
    };
    match &fatal {
        None => tracing::info!("shutting down: no new requests, finishing those in flight"),
        Some(e) => tracing::error!(error = %e, "raft stopped on a fatal error; the node exits"),
    }
    let _ = stop_tx.send(true);
    finish_calls(server).await;
    node.shutdown().await;
    if let Some(e) = fatal {
        return Err(format!("raft stopped on a fatal error: {e}"));
    }
    store.sync().map_err(|e| format!("final flush: {e}"))?;
    tracing::info!("stopped");
    #[cfg(feature = "otel")]
    crate::observe::otel::shutdown();
    Ok(())
}

/// Lets the calls in flight finish, for up to 10 s, once the server
/// takes no new ones.
async fn finish_calls(server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>) {
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("in-flight requests did not finish within 10 s"),
    }
}

/// Waits out the drain after the first signal: `drain_ms`, unless a
/// second signal or a fatal error ends it first. Returns the fatal error.
async fn drain(node: &RaftNode, signals: &mut Signals, drain_ms: u64) -> Option<String> {
    if drain_ms == 0 {
        return None;
    }
    tracing::info!(
        drain_ms,
        "draining: reporting NOT_SERVING, still serving; a second signal stops at once"
    );
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(drain_ms)) => None,
        () = signals.next() => None,
        e = node.fatal() => Some(e),
    }
}

/// Serves the peer protocol, the public API, health, reflection and the
/// HTTP routes on one listener, identifying callers unless the config is
/// insecure, and shedding requests past `[limits] max_requests`. Returns
/// the server's future.
pub fn serve(
    node: Arc<RaftNode>,
    hub: Arc<WorkerHub>,
    observer: &Arc<Observer>,
    watch: WatchServer<api::WatchApi>,
    listener: TcpListener,
    config: &NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<impl std::future::Future<Output = Result<(), tonic::transport::Error>>, String> {
    // Nagle's algorithm off on every accepted connection: a small reply (a
    // heartbeat's ack, a read's answer) must not wait for the peer's delayed
    // ACK. `Server::tcp_nodelay` applies only to listeners tonic binds itself.
    let (secure, shed) = (
        !config.insecure,
        api::RequestLimit::new(config.limits.max_requests),
    );
    if !secure {
        tracing::warn!("insecure: no authentication; anyone who reaches this node may do anything");
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let limit = crate::raft::PEER_MESSAGE_MAX_BYTES;
    let mut grpc = RoutesBuilder::default();
    grpc.add_service(
        RaftPeerServer::new(PeerService::new(node.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
    .add_service(api::cluster_server(node.clone(), hub.clone()))
    .add_service(api::pools_server(node.clone()))
    .add_service(api::metrics_server(node.clone()))
    .add_service(api::queues_server(node.clone()))
    .add_service(api::projects_server(node.clone()))
    .add_service(api::config_server(node.clone()))
    .add_service(api::workers_server(node.clone(), hub))
    .add_service(api::tokens_server(node.clone()))
    .add_service(api::tasks_server(node.clone()))
    .add_service(watch)
    .add_service(observer.health().service());
    add_reflection(&mut grpc)?;
    let routes = grpc
        .routes()
        .into_axum_router()
        .merge(observer.http_routes());
    // HTTP/1.1 too, for `/metrics` and the probes; peers and clients speak
    // HTTP/2 as before.
    Ok(Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .layer(observer.rpc_layer())
        .layer(tower::layer::layer_fn(|inner| LeaderHint { inner }))
        .layer(api::auth::AuthLayer::new(node, secure))
        .layer(shed)
        .add_routes(Routes::from(routes))
        .serve_with_incoming_shutdown(incoming, shutdown))
}

/// Server reflection (v1, and v1alpha for older clients) over the public
/// API's descriptors only: the peer protocol is not for clients.
fn add_reflection(grpc: &mut RoutesBuilder) -> Result<(), String> {
    use tonic_reflection::server::Builder;
    let set = crate::proto::v1::FILE_DESCRIPTOR_SET;
    let v1 = Builder::configure()
        .register_encoded_file_descriptor_set(set)
        .include_reflection_service(false)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let v1alpha = Builder::configure()
        .register_encoded_file_descriptor_set(set)
        .include_reflection_service(false)
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
    grpc.add_service(v1).add_service(v1alpha);
    Ok(())
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

/// SIGTERM and SIGINT, installed once so that a second signal is seen.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            term: signal(SignalKind::terminate()).expect("install SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("install SIGINT handler"),
        }
    }

    /// Resolves at the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
