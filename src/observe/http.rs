//! The node's HTTP routes, served on its gRPC port (the server accepts
//! HTTP/1.1 beside HTTP/2; gRPC calls go to the gRPC services, these paths
//! here):
//!
//! - `/healthz`: 200 while the process serves at all (liveness);
//! - `/readyz`: 200 when the gRPC health service says SERVING, else 503
//!   with the reason (readiness);
//! - `/metrics`: every metric in the OpenMetrics text format, which
//!   Prometheus reads.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;

use super::Observer;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn routes(observer: Arc<Observer>) -> axum::Router {
    let health = observer.health().clone();
    axum::Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(move || async move {
                let readiness = health.readiness();
                let code = if health.serving() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, format!("{}\n", readiness.as_str()))
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                // Encoding reads the state and walks the data dir: off the
                // async threads.
                let text = tokio::task::spawn_blocking(move || observer.encode()).await;
                match text {
                    Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], text),
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "text/plain")],
                        format!("encoding the metrics failed: {e}\n"),
                    ),
                }
            }),
        )
}
