//! The one OTLP/HTTP receiver of the test suites and of `bench/` (examples/otlp_sink.rs
//! includes this file): it decodes what latchkey exports, counts the spans and, unless told
//! to only count (a benchmark's sink), keeps every request for inspection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What a receiver got.
#[derive(Clone, Default)]
pub struct Received {
    pub traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    /// The headers of each traces request kept.
    pub trace_headers: Arc<Mutex<Vec<HeaderMap>>>,
    /// Spans received, kept or not.
    pub span_count: Arc<AtomicU64>,
    /// Only count: keep nothing (memory stays flat under load).
    pub count_only: bool,
}

impl Received {
    pub fn spans(&self) -> Vec<Span> {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }

    pub fn span_names(&self) -> Vec<String> {
        self.spans().into_iter().map(|s| s.name).collect()
    }

    pub fn metric_names(&self) -> Vec<String> {
        self.metrics
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_metrics.iter())
            .flat_map(|r| r.scope_metrics.iter())
            .flat_map(|s| s.metrics.iter().map(|m| m.name.clone()))
            .collect()
    }

    /// Everything received, as text: names, attributes, events, links, resources.
    pub fn dump(&self) -> String {
        format!(
            "{:?}\n{:?}",
            self.traces.lock().unwrap(),
            self.metrics.lock().unwrap()
        )
    }
}

/// As much of an `ExportTraceServiceRequest` as counting its spans needs: each span stays the
/// bytes it came in (shared with the body, not copied), so a counting sink spends next to
/// nothing on a request. In a deployment the collector runs elsewhere; here it shares the
/// benchmark's two cores with latchkey, and decoding every attribute cost about 11 µs of CPU
/// per exported request.
#[derive(Clone, PartialEq, prost::Message)]
struct Counted {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<CountedResource>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CountedResource {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<CountedScope>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CountedScope {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
}

async fn traces(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    let spans: usize = if r.count_only {
        let counted = Counted::decode(body).expect("valid OTLP traces");
        counted
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    } else {
        let request = ExportTraceServiceRequest::decode(body).expect("valid OTLP traces");
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        r.traces.lock().unwrap().push(request);
        r.trace_headers.lock().unwrap().push(headers);
        spans
    };
    r.span_count.fetch_add(spans as u64, Ordering::Relaxed);
    ""
}

async fn metrics(State(r): State<Received>, body: Bytes) -> &'static str {
    if !r.count_only {
        let request = ExportMetricsServiceRequest::decode(body).expect("valid OTLP metrics");
        r.metrics.lock().unwrap().push(request);
    }
    ""
}

/// The receiver's routes (`/v1/traces`, `/v1/metrics`), storing into `received`.
pub fn router(received: Received) -> axum::Router {
    axum::Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(received)
}

/// A receiver on `bind` (e.g. `127.0.0.1:0`), served in the background; its address.
pub async fn receiver(bind: &str, received: Received) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(received)).await.unwrap() });
    addr
}
