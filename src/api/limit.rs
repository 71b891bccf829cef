//! The most requests one node serves at once. Past the limit a call is
//! answered RESOURCE_EXHAUSTED at once (a load shed, not a queue), so that
//! one client's flood cannot starve the others of memory and CPU and every
//! caller learns to back off. Per connection, HTTP/2's own limit on
//! concurrent streams applies (`server::MAX_CONCURRENT_STREAMS`), and live
//! watches have their own (`[watch] max_watchers`).
//!
//! tower's `ConcurrencyLimit` and `LoadShed` do the same, but a shed call
//! there is a service error, which the server turns into a reset stream;
//! this layer answers with a gRPC status the client can read.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::codegen::http;

/// Sheds requests past `max` in flight on this node.
#[derive(Clone)]
pub struct RequestLimit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl RequestLimit {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<S> tower::Layer<S> for RequestLimit {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limit: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    limit: RequestLimit,
}

impl<S, B> tower::Service<http::Request<B>> for Limited<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Probes pass: an overloaded node is alive, and says whether it is
        // ready by its own rule.
        if is_probe(req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        let Ok(permit) = self.limit.permits.clone().try_acquire_owned() else {
            let status = tonic::Status::resource_exhausted(format!(
                "this node is serving {} requests, its limit ([limits] max_requests); \
                 retry with backoff, or on another node",
                self.limit.max
            ));
            return Box::pin(futures::future::ready(Ok(status.into_http())));
        };
        let serve = self.inner.call(req);
        Box::pin(async move {
            // Held until the answer's head is ready: a stream's body then
            // goes on under the watch limit, not this one.
            let response = serve.await;
            drop(permit);
            response
        })
    }
}

fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz") || path.starts_with("/grpc.health.v1.Health/")
}
