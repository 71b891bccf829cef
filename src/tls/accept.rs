//! Accepting TLS connections for tonic: TCP accepted here, each handshake
//! in a task of its own with a deadline, with the server config current at
//! that moment, and the finished streams handed to the server in order of
//! completion. A client that stalls its handshake holds up nobody but
//! itself, and no more than [`HANDSHAKE_TIMEOUT`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// Time a new connection has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes under way at once; past it the listener stops accepting
/// until one ends (the kernel's backlog holds the rest).
const HANDSHAKES_MAX: usize = 1024;
/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;
/// After an accept error (out of file descriptors, say), wait this long
/// before the next accept rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The TLS connections of `listener`, each handshaken with what `config`
/// returns when it arrives. The accept loop ends when the stream is dropped.
pub fn incoming<F>(
    listener: TcpListener,
    config: F,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>>
where
    F: Fn() -> Arc<ServerConfig> + Send + 'static,
{
    let (ready, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(accept_loop(listener, config, ready));
    ReceiverStream::new(rx)
}

async fn accept_loop<F>(
    listener: TcpListener,
    config: F,
    ready: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
) where
    F: Fn() -> Arc<ServerConfig> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            () = ready.closed() => return,
            a = listener.accept() => a,
        };
        let (tcp, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Nagle off: a small reply must not wait for the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(config());
        let ready = ready.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send(Ok(tls)).await;
                }
                Ok(Err(e)) => tracing::debug!(%from, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%from, "TLS handshake timed out"),
            }
        });
    }
}
