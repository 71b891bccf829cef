//! One span, one log line and one sample per gRPC call: a tower layer on
//! the node's server.
//!
//! Each call gets a request id, the client's `x-request-id` if it sent a
//! usable one, else a new one, and the response carries it back. The call
//! runs inside an `rpc` span (method and request id), so everything its
//! handler logs names both; when the call ends, one event on the target
//! `laneq::rpc` gives the method, the request id, the status code and the
//! latency, and the call is counted by method and code, its latency
//! observed by method.
//!
//! A call ends when its response body does: a unary call's with its one
//! message and trailers, a stream's when the stream closes. The status is
//! the `grpc-status` of the headers (a refusal, sent without a body) or of
//! the trailers; a body dropped before its trailers (the client went away)
//! counts as CANCELLED.
//!
//! The end-of-call event is at DEBUG (a WARN for the codes that mean a
//! fault of the server): a node answers thousands of heartbeats and
//! submits a second, and a line for each would drown its log. Turn them on
//! with `RUST_LOG=info,laneq::rpc=debug`.
//!
//! Plain HTTP requests (`/metrics`, `/readyz`) share the port and pass
//! through untouched.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::Frame;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tonic::body::Body;
use tonic::codegen::{http, Bytes};
use tonic::Code;

use crate::wire::REQUEST_ID_HEADER;

/// Latency buckets of a call, in seconds: from a stale read (well under a
/// millisecond) to a lease poll's longest wait (60 s).
const LATENCY_SECONDS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    30.0, 60.0,
];
/// The longest request id taken from a client; a longer one is replaced.
const REQUEST_ID_MAX_BYTES: usize = 128;
/// The service and method labels of a call to a service this node does not
/// serve, or of a method it does not know: arbitrary paths must not make
/// new series.
const UNKNOWN: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub service: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub service: String,
    pub method: String,
    pub code: String,
}

/// A call's latency histogram.
fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_SECONDS.iter().copied())
}

/// The calls' counters and latencies, registered by `observe`.
pub struct RpcMetrics {
    pub requests: Family<CodeLabels, Counter>,
    pub latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// The services whose method names become labels.
    known: Vec<&'static str>,
}

impl RpcMetrics {
    pub fn new(known: Vec<&'static str>) -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            known,
        }
    }

    /// The labels of a call to `path` (`/laneq.v1.Tasks/SubmitTask`) that
    /// ended with `code`.
    fn labels(&self, path: &str, code: Code) -> MethodLabels {
        let (service, method) = split_path(path);
        if code == Code::Unimplemented || !self.known.contains(&service) {
            return MethodLabels {
                service: UNKNOWN.into(),
                method: UNKNOWN.into(),
            };
        }
        MethodLabels {
            service: service.into(),
            method: method.into(),
        }
    }
}

/// `/pkg.Service/Method` as (`pkg.Service`, `Method`).
pub fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// A code's name as the gRPC specification writes it (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The codes that mean the server failed, rather than the call was refused
/// or the cluster is changing leaders: logged as warnings.
fn is_fault(code: Code) -> bool {
    matches!(code, Code::Internal | Code::Unknown | Code::DataLoss)
}

/// The request id to use: the client's if it is printable ASCII of at most
/// [`REQUEST_ID_MAX_BYTES`], else a new UUID.
pub fn request_id(given: Option<&http::HeaderValue>) -> http::HeaderValue {
    given
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty()
                && b.len() <= REQUEST_ID_MAX_BYTES
                && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a header value")
        })
}

/// The `grpc-status` in `headers`, if any.
fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.parse().ok()?))
}

/// The layer to add to the node's server.
#[derive(Clone)]
pub struct RpcLayer {
    pub metrics: Arc<RpcMetrics>,
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rpc {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Rpc<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S, B> tower::Service<http::Request<B>> for Rpc<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if !crate::wire::is_grpc(req.headers()) {
            return Box::pin(self.inner.call(req));
        }
        let id = request_id(req.headers().get(REQUEST_ID_HEADER));
        req.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
        let path = req.uri().path().to_string();
        let span = tracing::info_span!(
            "rpc",
            method = %path.trim_start_matches('/'),
            request_id = %String::from_utf8_lossy(id.as_bytes()),
            code = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let mut call = Call {
            metrics: self.metrics.clone(),
            path,
            id: id.clone(),
            start: Instant::now(),
            span: span.clone(),
            ended: false,
        };
        let serve = span.in_scope(|| self.inner.call(req));
        Box::pin(tracing::Instrument::instrument(
            async move {
                let mut response = match serve.await {
                    Ok(response) => response,
                    Err(e) => {
                        call.end(Code::Unknown);
                        return Err(e);
                    }
                };
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
                if let Some(code) = grpc_status(response.headers()) {
                    call.end(code);
                    return Ok(response);
                }
                Ok(response.map(|body| Body::new(Observed { body, call })))
            },
            span,
        ))
    }
}

/// One call under way: ended once, by its status, or as CANCELLED when
/// dropped before that.
struct Call {
    metrics: Arc<RpcMetrics>,
    path: String,
    id: http::HeaderValue,
    start: Instant,
    /// The call's span, held open until the call ends (a stream's outlives
    /// the handler), for an exporter that times spans.
    span: tracing::Span,
    ended: bool,
}

impl Call {
    fn end(&mut self, code: Code) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let seconds = self.start.elapsed().as_secs_f64();
        let labels = self.metrics.labels(&self.path, code);
        self.metrics.latency.get_or_create(&labels).observe(seconds);
        let name = code_name(code);
        self.metrics
            .requests
            .get_or_create(&CodeLabels {
                service: labels.service,
                method: labels.method,
                code: name.to_string(),
            })
            .inc();
        let method = self.path.trim_start_matches('/');
        let request_id = String::from_utf8_lossy(self.id.as_bytes());
        let latency_ms = seconds * 1000.0;
        self.span.record("code", name);
        self.span.record("latency_ms", latency_ms);
        if is_fault(code) {
            tracing::warn!(target: "laneq::rpc", parent: None, method, %request_id, code = name, latency_ms, "rpc");
        } else {
            tracing::debug!(target: "laneq::rpc", parent: None, method, %request_id, code = name, latency_ms, "rpc");
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

/// A response body that ends its call with the status of its trailers.
struct Observed {
    body: Body,
    call: Call,
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.call
                        .end(grpc_status(trailers).unwrap_or(Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(status))) => this.call.end(status.code()),
            Poll::Ready(None) => this.call.end(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/laneq.v1.Tasks/SubmitTask"),
            ("laneq.v1.Tasks", "SubmitTask")
        );
        assert_eq!(split_path("/nothing"), ("nothing", ""));
        assert_eq!(split_path(""), ("", ""));
    }

    #[test]
    fn unknown_services_and_methods_share_one_label() {
        let m = RpcMetrics::new(vec!["laneq.v1.Tasks"]);
        let known = m.labels("/laneq.v1.Tasks/GetTask", Code::NotFound);
        assert_eq!(
            (known.service.as_str(), known.method.as_str()),
            ("laneq.v1.Tasks", "GetTask")
        );
        for (path, code) in [
            ("/evil.Service/X", Code::Ok),
            ("/laneq.v1.Tasks/NoSuchMethod", Code::Unimplemented),
        ] {
            let l = m.labels(path, code);
            assert_eq!(
                (l.service.as_str(), l.method.as_str()),
                (UNKNOWN, UNKNOWN),
                "{path}"
            );
        }
    }

    #[test]
    fn a_usable_request_id_is_kept_and_another_replaced() {
        let given = http::HeaderValue::from_static("job-42.retry-1");
        assert_eq!(request_id(Some(&given)), given);
        let long = http::HeaderValue::from_str(&"x".repeat(REQUEST_ID_MAX_BYTES + 1)).unwrap();
        let spaced = http::HeaderValue::from_static("a b");
        for bad in [Some(&long), Some(&spaced), None] {
            let id = request_id(bad);
            assert_ne!(Some(&id), bad);
            assert!(
                uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok(),
                "{id:?}"
            );
        }
    }

    #[test]
    fn codes_are_named_as_the_specification_does() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        for code in 0..17 {
            let name = code_name(Code::from_i32(code));
            assert!(
                name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn a_call_dropped_before_its_end_counts_as_cancelled_once() {
        let metrics = Arc::new(RpcMetrics::new(vec!["laneq.v1.Workers"]));
        let lease = || Call {
            metrics: metrics.clone(),
            path: "/laneq.v1.Workers/Lease".into(),
            id: request_id(None),
            start: Instant::now(),
            span: tracing::Span::none(),
            ended: false,
        };
        let mut call = lease();
        call.end(Code::Ok);
        drop(call);
        let count = |code: &str| {
            metrics
                .requests
                .get_or_create(&CodeLabels {
                    service: "laneq.v1.Workers".into(),
                    method: "Lease".into(),
                    code: code.into(),
                })
                .get()
        };
        assert_eq!((count("OK"), count("CANCELLED")), (1, 0));
        drop(lease());
        assert_eq!((count("OK"), count("CANCELLED")), (1, 1));
    }
}
