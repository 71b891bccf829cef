//! The optional OpenTelemetry exporter (cargo feature `otel`, off by
//! default): the node's spans, the `rpc` span of every call among them, go
//! over OTLP/gRPC to a collector. It is configured by the standard
//! variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (default
//! `http://localhost:4317`) and `OTEL_SERVICE_NAME` (default `laneq`), and
//! runs only when the endpoint variable is set.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::registry::LookupSpan;

/// The provider, kept for its flush at exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The tracing layer that exports spans, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set; `None` otherwise, or when the exporter cannot be built (said on
/// stderr: logging is not up yet). Called inside the node's Tokio runtime.
pub fn layer<S>() -> Option<impl tracing_subscriber::Layer<S>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("OpenTelemetry exporter not started: {e}");
            return None;
        }
    };
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "laneq".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    // On the node's runtime: the default batch processor exports from a
    // thread of its own, where the tonic exporter finds no Tokio reactor.
    let batch = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("laneq");
    let _ = PROVIDER.set(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Sends the spans still buffered; at the node's exit.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "OpenTelemetry exporter shutdown");
        }
    }
}
