//! The node's limit on client calls in progress (`max_concurrent_requests`):
//! past it, a call of the public API is refused at once with
//! RESOURCE_EXHAUSTED instead of queueing, so that one client's flood
//! cannot starve the others of the node's memory and threads, and the
//! client tries another node or backs off. The peer protocol, health and
//! the HTTP routes are never refused: Raft's heartbeats and the probes must
//! get through an overload, which is when they matter.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::codegen::http;

/// The path prefix of the calls the limit counts: `laneq.v1`'s services.
const LIMITED_PREFIX: &str = "/laneq.v1.";

/// A tower layer sharing one count of calls in progress across every
/// connection of the node.
#[derive(Clone)]
pub struct RequestLimit {
    /// `None`: no limit.
    slots: Option<Arc<Semaphore>>,
    max: usize,
}

impl RequestLimit {
    /// A limit of `max` calls at once; 0 for none.
    pub fn new(max: usize) -> Self {
        Self {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max))),
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
        let slots = match &self.limit.slots {
            Some(s) if req.uri().path().starts_with(LIMITED_PREFIX) => s,
            _ => return Box::pin(self.inner.call(req)),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let status = tonic::Status::resource_exhausted(format!(
                "this node is serving its limit of {} calls at once \
                 (max_concurrent_requests); try another node or later",
                self.limit.max
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let serve = self.inner.call(req);
        Box::pin(async move {
            // Held until the handler has answered (a stream's body is not
            // counted: watches have their own limit).
            let _slot = slot;
            serve.await
        })
    }
}
