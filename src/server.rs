//! The `laneq node` process: checks the config, its certificates and the
//! data dir, opens storage, starts Raft and the node's duties, serves gRPC
//! for peers and clients and HTTP (`/metrics`, `/healthz`, `/readyz`) on one
//! port (peers on `peer_listen` instead when it is set), over TLS unless
//! the node is `insecure`, reloads its certificates on SIGHUP, and shuts
//! down gracefully on SIGTERM or SIGINT: it reports NOT_SERVING at once,
//! goes on serving for `shutdown_drain_ms` (so that load balancers move
//! away first; a second signal cuts it short), then stops taking new calls
//! and lets those in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::net::TcpListener;
use tonic::codegen::http;
use tonic::service::interceptor::InterceptedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::api;
use crate::config::NodeConfig;
use crate::duties::{self, WorkerHub};
use crate::observe::Observer;
use crate::proto::raft::raft_peer_server::RaftPeerServer;
use crate::proto::v1::watch_server::WatchServer;
use crate::raft::{PeerService, RaftNode};
use crate::store::{Identity, Store};
use crate::tls::{NodeTls, PeerGate};

mod limit;

/// Most concurrent gRPC streams per connection.
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Runs a node until SIGTERM/SIGINT. `init` initialises the cluster from the
/// peer list once the node serves (a no-op on an initialised cluster).
pub async fn run(config: NodeConfig, init: bool) -> Result<(), String> {
    config.validate()?;
    // Installed first: a signal while the store opens waits for the node.
    let mut signals = Signals::new();
    let tls = load_tls(&config)?;
    Identity::new(config.id, &config.cluster)
        .claim(&config.data_dir)
        .map_err(|e| e.to_string())?;
    let store = Store::open(&config.data_dir).map_err(|e| {
        format!(
            "cannot open the store in {}: {e}",
            config.data_dir.display()
        )
    })?;
    let listeners = Listeners::bind(&config).await?;
    let node = RaftNode::start(&config, store.clone(), tls.clone()).await?;
    log_started(&config);

    let hub = WorkerHub::new(config.workers.clone());
    duties::spawn(&node, &hub);
    let observer = Observer::start(node.clone(), config.data_dir.clone()).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watch = api::watch_server(node.clone(), &config.watch, stop_rx.clone());
    // Its own peer connections: the relays of task logs are long streams.
    let from = config.peer_listen.as_deref().unwrap_or(&config.listen);
    let network = crate::raft::PeerNetwork::new(from, tls.clone());
    let services = Services {
        node: node.clone(),
        hub,
        logs: api::Logs::new(node.clone(), network, stop_rx.clone()),
        observer: observer.clone(),
        watch,
        tls,
        max_requests: config.max_concurrent_requests,
    };
    let server = tokio::spawn(services.serve(listeners, stop_rx)?);
    crate::observe::systemd::ready();
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

fn log_started(config: &NodeConfig) {
    tracing::info!(
        id = config.id,
        listen = %config.listen,
        peer_listen = config.peer_listen.as_deref().unwrap_or("(the client port)"),
        advertise = config.advertised(),
        tls = config.secure(),
        data_dir = %config.data_dir.display(),
        "node started"
    );
}

/// Loads the certificates (`None` for an insecure node, which warns that
/// it is one) and reloads them on SIGHUP from now on.
fn load_tls(config: &NodeConfig) -> Result<Option<Arc<NodeTls>>, String> {
    let tls = NodeTls::load(config)?;
    if !config.secure() {
        tracing::warn!(
            "insecure: plaintext and no authentication; anyone who reaches this node's \
             ports can read and change everything, and speak the peer protocol"
        );
    }
    spawn_reloader(tls.clone());
    Ok(tls)
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

/// The node's listening sockets, bound before Raft starts so that a port
/// in use stops the node at once.
struct Listeners {
    client: TcpListener,
    /// `peer_listen`: the peer protocol alone, a peer certificate required.
    peer: Option<TcpListener>,
}

impl Listeners {
    async fn bind(config: &NodeConfig) -> Result<Self, String> {
        async fn bind(key: &str, addr: &str) -> Result<TcpListener, String> {
            let at: SocketAddr = addr.parse().map_err(|e| format!("{key}: {e}"))?;
            TcpListener::bind(at)
                .await
                .map_err(|e| format!("{key}: cannot listen on {at}: {e}"))
        }
        let peer = match &config.peer_listen {
            Some(addr) => Some(bind("peer_listen", addr).await?),
            None => None,
        };
        Ok(Self {
            client: bind("listen", &config.listen).await?,
            peer,
        })
    }
}

/// What a node serves, and how it secures it.
struct Services {
    node: Arc<RaftNode>,
    hub: Arc<WorkerHub>,
    /// Task logs: the worker streams open here, and the relays.
    logs: Arc<api::Logs>,
    observer: Arc<Observer>,
    watch: WatchServer<api::WatchApi>,
    /// `None`: plaintext (an insecure node).
    tls: Option<Arc<NodeTls>>,
    /// `max_concurrent_requests`: calls of the public API at once.
    max_requests: usize,
}

type Serving = BoxFuture<'static, Result<(), tonic::transport::Error>>;

impl Services {
    /// Serves the public API, health, reflection and the HTTP routes on the
    /// client port, and the peer protocol there too or on its own port,
    /// until `stop` turns true. Returns the servers' future.
    fn serve(
        self,
        listeners: Listeners,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Serving, String> {
        let stopped = move || {
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        };
        let peers = self.peer_service();
        let split = listeners.peer.is_some();
        let mut grpc = RoutesBuilder::default();
        if !split {
            grpc.add_service(peers.clone());
            grpc.add_service(self.relay_service());
        }
        self.add_api(&mut grpc)?;
        let routes = grpc
            .routes()
            .into_axum_router()
            .merge(self.observer.http_routes());
        // HTTP/1.1 too, for `/metrics` and the probes; gRPC is HTTP/2.
        let hints = !split;
        let router = Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .layer(self.observer.rpc_layer())
            .layer(limit::RequestLimit::new(self.max_requests))
            .layer(tower::layer::layer_fn(move |inner| LeaderHint {
                inner,
                hints,
            }))
            .layer(api::auth::AuthLayer::new(
                self.node.clone(),
                self.tls.clone(),
            ))
            .add_routes(Routes::from(routes));
        let client: Serving = match &self.tls {
            None => router
                .serve_with_incoming_shutdown(plain(listeners.client), stopped())
                .boxed(),
            Some(t) => {
                let t = t.clone();
                let incoming = crate::tls::incoming(listeners.client, move || t.client_port());
                router
                    .serve_with_incoming_shutdown(incoming, stopped())
                    .boxed()
            }
        };
        let Some(peer_listener) = listeners.peer else {
            return Ok(client);
        };
        let relay = self.relay_service();
        let peer = self.serve_peers(peers, relay, peer_listener, stopped());
        Ok(futures::future::try_join(client, peer)
            .map(|r| r.map(|_| ()))
            .boxed())
    }

    /// The peer protocol alone on `peer_listen`, a peer certificate
    /// required in the handshake.
    fn serve_peers(
        &self,
        peers: PeerServer,
        relay: RelayServer,
        listener: TcpListener,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Serving {
        let router = Server::builder()
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .layer(self.observer.rpc_layer())
            .add_service(peers)
            .add_service(relay);
        match self.tls.clone() {
            None => router
                .serve_with_incoming_shutdown(plain(listener), stopped)
                .boxed(),
            Some(t) => {
                let incoming = crate::tls::incoming(listener, move || t.peer_port());
                router
                    .serve_with_incoming_shutdown(incoming, stopped)
                    .boxed()
            }
        }
    }

    /// The peer protocol, behind the gate that admits peer certificates only.
    fn peer_service(&self) -> PeerServer {
        let limit = crate::raft::PEER_MESSAGE_MAX_BYTES;
        let server = RaftPeerServer::new(PeerService::new(self.node.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let gate = PeerGate {
            tls: self.tls.clone(),
        };
        InterceptedService::new(server, gate)
    }

    /// The relay of task logs between nodes, behind the same gate.
    fn relay_service(&self) -> RelayServer {
        let gate = PeerGate {
            tls: self.tls.clone(),
        };
        InterceptedService::new(api::log_relay_server(self.logs.clone()), gate)
    }

    fn add_api(&self, grpc: &mut RoutesBuilder) -> Result<(), String> {
        let node = &self.node;
        grpc.add_service(api::cluster_server(node.clone(), self.hub.clone()))
            .add_service(api::pools_server(node.clone()))
            .add_service(api::metrics_server(node.clone()))
            .add_service(api::queues_server(node.clone()))
            .add_service(api::projects_server(node.clone()))
            .add_service(api::config_server(node.clone()))
            .add_service(api::workers_server(
                node.clone(),
                self.hub.clone(),
                self.logs.clone(),
            ))
            .add_service(api::tokens_server(node.clone()))
            .add_service(api::tasks_server(node.clone(), self.logs.clone()))
            .add_service(self.watch.clone())
            .add_service(self.observer.health().service());
        add_reflection(grpc)
    }
}

type PeerServer = InterceptedService<RaftPeerServer<PeerService>, PeerGate>;
type RelayServer = InterceptedService<
    crate::proto::raft::log_relay_server::LogRelayServer<api::RelayApi>,
    PeerGate,
>;

/// A plaintext listener's connections, Nagle off on each: a small reply (a
/// heartbeat's ack, a read's answer) must not wait for the peer's delayed
/// ACK. `Server::tcp_nodelay` applies only to listeners tonic binds itself.
fn plain(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Reloads the certificates on each SIGHUP. Installed on insecure nodes
/// too, where it only says so: SIGHUP's default would end the process.
fn spawn_reloader(tls: Option<Arc<NodeTls>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match &tls {
                None => tracing::info!("SIGHUP: an insecure node has no certificates to reload"),
                Some(t) => match t.reload() {
                    Ok(()) => tracing::info!("SIGHUP: certificates reloaded"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: certificate reload failed; the node keeps the ones it had"
                    ),
                },
            }
        }
    });
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
    /// False when peers have their own port: the membership then holds
    /// peer addresses, which a client cannot use, so no hint is given and
    /// the client finds the leader among its own endpoints.
    hints: bool,
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
        let hints = self.hints;
        Box::pin(async move {
            let (result, leader) = crate::raft::noting_forwards(serve).await;
            let mut response = result?;
            let headers = response.headers_mut();
            if !hints {
                // A refusal's hint (`api::error`) names a peer address too.
                headers.remove(crate::wire::LEADER_ID_HEADER);
                headers.remove(crate::wire::LEADER_ADDR_HEADER);
                return Ok(response);
            }
            let Some((id, addr)) = leader else {
                return Ok(response);
            };
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
