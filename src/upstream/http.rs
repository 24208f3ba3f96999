//! An HTTP upstream: a Streamable HTTP MCP server at a URL (`http://`, `https://`), or on a
//! Unix socket (`unix:/path/to.sock`, requests to `http://localhost/mcp` over it).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use axum::http::{HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::client::{Client, Connection, Session};

/// How many requests may be in flight to the server at once (rmcp's default is 16, which
/// would queue a busy connector's calls behind each other).
const MAX_CONCURRENT: usize = 1024;

/// Where an HTTP upstream is and what to send it.
#[derive(Clone)]
pub struct HttpTarget {
    pub url: String,
    /// A Unix socket to reach `url` through, instead of TCP.
    pub socket: Option<PathBuf>,
    /// Sent with every request; values are marked sensitive and never shown.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for HttpTarget {
    /// Without the headers' values (they are often the upstream's own secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTarget")
            .field("socket", &self.socket)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

pub struct HttpSession {
    client: Client,
}

pub(super) async fn connect(target: &HttpTarget) -> Result<(HttpSession, Connection), String> {
    let headers: HashMap<HeaderName, HeaderValue> = target.headers.iter().cloned().collect();
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(target.url.as_str()).custom_headers(headers);
    config.max_concurrent_requests = MAX_CONCURRENT;
    let running = match &target.socket {
        None => ().serve(StreamableHttpClientTransport::from_config(config)).await,
        Some(socket) => {
            ().serve(StreamableHttpClientTransport::from_unix_socket_with_config(
                &socket.to_string_lossy(),
                config,
            ))
            .await
        }
    }
    .map_err(|e| format!("initialize failed: {e}"))?;
    let (client, connection) = Client::watch(running)?;
    Ok((HttpSession { client }, connection))
}

impl Session for HttpSession {
    async fn ended(&mut self) -> String {
        self.client.ended().await
    }

    async fn close(mut self) {
        self.client.close().await;
    }
}
