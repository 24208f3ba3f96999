//! Benchmark upstream: latchkey's own `hello` tool served by rmcp over stdio, the fast stdio
//! MCP server that `bench/run` puts behind latchkey, supergateway and mcp-proxy alike.
//! `latchkey serve -- target/release/examples/stdio_hello`

use latchkey::mcp::handler::Latchkey;
use rmcp::ServiceExt;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: a stdio server reads one stream, and a second core is better left to its peer.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let service = Latchkey::new()
        .serve((tokio::io::stdin(), tokio::io::stdout()))
        .await?;
    service.waiting().await?;
    Ok(())
}
