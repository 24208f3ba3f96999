//! Benchmark helper: the test suites' OTLP/HTTP receiver (tests/common/otlp.rs), counting
//! spans without keeping them, so a benchmark with export on measures latchkey, not a slow
//! collector. Prints the count on exit.
//! `cargo run --release --example otlp_sink -- 127.0.0.1:4318`

#[path = "../tests/common/otlp.rs"]
#[allow(dead_code)]
mod otlp;

use std::sync::atomic::Ordering;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".into());
    let received = otlp::Received {
        count_only: true,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("OTLP sink on http://{addr}");
    axum::serve(listener, otlp::router(received.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!(
        "spans received: {}",
        received.span_count.load(Ordering::Relaxed)
    );
    Ok(())
}
