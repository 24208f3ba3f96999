//! Benchmark anchor: rmcp's Streamable HTTP service with the same `hello` tool and the same
//! stateless JSON settings as latchkey, but no authentication, guard or key handling.
//! `cargo run --release --example raw_rmcp -- 127.0.0.1:18081`

use std::sync::Arc;

use axum::serve::ListenerExt;
use latchkey::mcp::handler::Latchkey;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

/// The allocator latchkey's binary uses, so the comparison is of the request path alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        || Ok(Latchkey::new()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let router = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    eprintln!("raw rmcp listening on http://{addr}/mcp");
    axum::serve(listener, router).await
}
