//! An HTTP upstream: a Streamable HTTP MCP server at a URL (`http://`, `https://`), or on a
//! Unix socket (`unix:/path/to.sock`, requests to `/mcp` over it, `Host: localhost`).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use axum::http::{HeaderName, HeaderValue};
use futures::future::BoxFuture;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::client::{Client, Connection, Session};
use super::error::UpstreamError;
use super::http_client::UrlFreeClient;
use super::notices::{Listener, ProgressRoutes};
use super::progress_transport::ProgressTransport;

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

impl HttpTarget {
    /// The target at `url` (`http://`, `https://` or `unix:/path`) and a name for it (the
    /// host, or the socket's path); `what` names the setting in errors.
    pub fn parse(
        url: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        what: &str,
    ) -> anyhow::Result<(HttpTarget, String)> {
        if let Some(path) = url.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            let target = HttpTarget {
                // Origin-form: rmcp sends the URI as the request target, and servers that
                // route by path (uvicorn, so FastMCP) answer an absolute URI 404.
                url: "/mcp".to_owned(),
                socket: Some(PathBuf::from(path)),
                headers,
            };
            return Ok((target, path.to_owned()));
        }
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .with_context(|| {
                format!(
                    "{what} {:?} is not an http://, https:// or unix: URL",
                    crate::redact::url_for_display(url)
                )
            })?;
        let name = parsed.host_str().unwrap_or("upstream").to_owned();
        let target = HttpTarget {
            url: url.to_owned(),
            socket: None,
            headers,
        };
        Ok((target, name))
    }
}

pub struct HttpSession {
    client: Client,
}

pub(super) async fn connect(
    target: &HttpTarget,
    listener: Listener,
    progress: Arc<ProgressRoutes>,
) -> Result<(HttpSession, Connection), UpstreamError> {
    let headers: HashMap<HeaderName, HeaderValue> = target.headers.iter().cloned().collect();
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(target.url.as_str()).custom_headers(headers);
    config.max_concurrent_requests = MAX_CONCURRENT;
    let running = match &target.socket {
        None => {
            let transport =
                StreamableHttpClientTransport::with_client(UrlFreeClient::new(), config);
            listener
                .serve(ProgressTransport::new(transport, progress))
                .await
        }
        Some(socket) => {
            let transport = StreamableHttpClientTransport::from_unix_socket_with_config(
                &socket.to_string_lossy(),
                config,
            );
            listener
                .serve(ProgressTransport::new(transport, progress))
                .await
        }
    }
    .map_err(|e| plainly(&e, target))?;
    let (client, connection) = Client::watch(running)?;
    Ok((HttpSession { client }, connection))
}

/// Why `initialize` failed, in the words a person uses: rmcp's own text names transport types
/// (`Transport [latchkey::upstream::progress_transport::ProgressTransport<…>] error: Client
/// error: error sending request`).
fn plainly(error: &rmcp::service::ClientInitializeError, target: &HttpTarget) -> UpstreamError {
    use rmcp::service::ClientInitializeError;
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    let place = match &target.socket {
        Some(socket) => format!("the socket {}", socket.display()),
        None => target
            .url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| {
                let authority = u.authority()?;
                let port = authority.port_u16().unwrap_or(match u.scheme_str() {
                    Some("https") => 443,
                    _ => 80,
                });
                Some(format!("{}:{port}", authority.host()))
            })
            .unwrap_or_else(|| "the upstream".into()),
    };
    let ClientInitializeError::TransportError { error, .. } = error else {
        return UpstreamError::Initialize(error.to_string());
    };
    let inner: &(dyn std::error::Error + 'static) = &*error.error;
    let cause: &(dyn std::error::Error + 'static) =
        match inner.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            Some(StreamableHttpError::Client(e)) => e,
            _ => inner,
        };
    // The deepest cause says it best ("connection refused", "timed out").
    let mut deepest = cause;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    match deepest.downcast_ref::<std::io::Error>() {
        Some(io) => UpstreamError::Unreachable {
            place,
            kind: io.kind(),
        },
        None if std::ptr::eq(deepest, cause) => UpstreamError::InitializeAt {
            place,
            cause: cause.to_string(),
        },
        None => UpstreamError::InitializeAt {
            place,
            cause: format!("{cause}: {deepest}"),
        },
    }
}

impl Session for HttpSession {
    fn ended(&mut self) -> BoxFuture<'_, String> {
        Box::pin(self.client.ended())
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.client.close().await })
    }
}
