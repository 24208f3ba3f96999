//! Benchmark helper: an OTLP/HTTP receiver that decodes what it gets and counts spans, so a
//! benchmark with export on measures latchkey, not a slow collector. Prints the count on exit.
//! `cargo run --release --example otlp_sink -- 127.0.0.1:4318`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

async fn traces(State(count): State<Arc<AtomicU64>>, body: Bytes) -> &'static str {
    if let Ok(request) = ExportTraceServiceRequest::decode(body) {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        count.fetch_add(spans as u64, Ordering::Relaxed);
    }
    ""
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".into());
    let count = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(|| async { "" }))
        .with_state(count.clone());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("OTLP sink on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("spans received: {}", count.load(Ordering::Relaxed));
    Ok(())
}
