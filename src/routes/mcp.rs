//! The MCP endpoint: rmcp's Streamable HTTP service, stateless by default.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any_service, get};
use futures::StreamExt;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tower::Layer;

use super::in_flight::InFlight;
use super::json_rpc_errors::JsonRpcErrorsLayer;
use crate::error_response::json_error;
use crate::mcp::bridge::Bridge;
use crate::mcp::handler::Latchkey;
use crate::mcp::span::{McpTracing, Traced};
use crate::upstream::Upstreams;

/// How often an idle SSE stream gets a comment, so proxies and clients keep it open.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How the MCP endpoint behaves.
#[derive(Clone, Debug)]
pub struct McpOptions {
    /// `None`: stateless, JSON responses. `Some`: rmcp sessions, SSE responses.
    pub sessions: Option<SessionLimits>,
    /// Cancelled at shutdown: ends every stream and session.
    pub shutdown: CancellationToken,
    /// The largest request body (413 beyond).
    pub max_body: usize,
    /// What each MCP message is recorded as: a span when exporting, a record for the
    /// console's observers, a note for the access log.
    pub tracing: McpTracing,
    /// The MCP servers whose tools are served instead of latchkey's own.
    pub upstreams: Option<Upstreams>,
}

#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub idle_timeout: Duration,
}

/// `cancel`: what ends rmcp's streams and sessions.
fn rmcp_config(options: &McpOptions, cancel: CancellationToken) -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_cancellation_token(cancel)
        .with_sse_keep_alive(Some(SSE_KEEP_ALIVE))
        // No SSE priming event: some clients misparse its empty `data:`, and without an
        // event store there is nothing to resume anyway.
        .with_sse_retry(None)
        // `json_rpc_errors` has read the body within --max-body already.
        .with_max_request_body_bytes(options.max_body)
        // Host and Origin are checked for every route in `host_origin`, before this.
        .disable_allowed_hosts()
        .disable_allowed_origins()
}

/// The method router for `{base}/mcp`: latchkey's handler (or the bridge to an upstream
/// server), wrapped so that each message is recorded (`mcp::span`).
pub fn endpoint(options: &McpOptions) -> MethodRouter {
    let sessions = options.sessions.is_some();
    let tracing = options.tracing.clone();
    let shutdown = options.shutdown.clone();
    match options.upstreams.clone() {
        None => rmcp_endpoint(options, move || {
            Traced::new(Latchkey::new(), tracing.clone())
        }),
        Some(upstream) => rmcp_endpoint(options, move || {
            Traced::new(
                Bridge::new(
                    upstream.clone(),
                    tracing.export.clone(),
                    sessions,
                    shutdown.clone(),
                ),
                tracing.clone(),
            )
        }),
    }
}

/// rmcp's service around `handler`, with the server's settings (and the span tests').
pub(crate) fn rmcp_endpoint<S, F>(options: &McpOptions, handler: F) -> MethodRouter
where
    S: ServerHandler,
    F: Fn() -> S + Send + Sync + Clone + 'static,
{
    let factory = move || Ok(handler());
    match options.sessions {
        None => {
            // Not cancelled at shutdown: a JSON answer in progress is finished (and bounded
            // by --tool-timeout and --shutdown-timeout); cancelling would turn it into a 500.
            let config = rmcp_config(options, CancellationToken::new())
                .with_legacy_session_mode(false)
                .with_json_response(true);
            // Around rmcp's service itself, not the method router: a layer there would wrap
            // each method's route in one more boxed route per request.
            let service = JsonRpcErrorsLayer {
                max_body: options.max_body,
            }
            .layer(StreamableHttpService::new(
                factory,
                Arc::new(NeverSessionManager::default()),
                config,
            ));
            get(idle_event_stream)
                .with_state(options.shutdown.clone())
                .post_service(service.clone())
                .delete_service(service)
        }
        Some(limits) => {
            let mut manager = LocalSessionManager::default();
            manager.session_config.keep_alive = Some(limits.idle_timeout);
            manager.session_config.sse_retry = None;
            let manager = Arc::new(manager);
            // Sessions hold SSE streams open: they end at shutdown, or it would wait on them;
            // but only once the answers in flight have been sent (`in_flight`).
            let sessions_end = CancellationToken::new();
            let in_flight = InFlight::default();
            in_flight.end_sessions_after(options.shutdown.clone(), sessions_end.clone());
            let config = rmcp_config(options, sessions_end).with_legacy_session_mode(true);
            let service = JsonRpcErrorsLayer {
                max_body: options.max_body,
            }
            .layer(StreamableHttpService::new(factory, manager.clone(), config));
            any_service(service).layer(middleware::from_fn_with_state(
                Sessions {
                    manager,
                    max: limits.max_sessions,
                    in_flight,
                    shutdown: options.shutdown.clone(),
                },
                session_rules,
            ))
        }
    }
}

/// Stateless mode has no server-to-client messages, but ChatGPT is reported to open this
/// GET stream after a long idle and to reconnect in a loop when it gets 405. So the stream
/// is opened, announced with one comment, and kept alive with comment pings until shutdown.
async fn idle_event_stream(
    State(shutdown): State<CancellationToken>,
    headers: HeaderMap,
) -> Response {
    if !accepts_event_stream(&headers) {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: Client must accept text/event-stream",
        )
            .into_response();
    }
    let hello = Event::default().comment("latchkey: stateless, no server-initiated messages");
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(hello) })
        .chain(futures::stream::pending())
        .take_until(shutdown.cancelled_owned());
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE).text("ping"))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|item| {
                let essence = item.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("text/event-stream") || essence == "*/*"
            })
        })
    })
}

#[derive(Clone)]
struct Sessions {
    manager: Arc<LocalSessionManager>,
    max: usize,
    in_flight: InFlight,
    /// Once cancelled, no new session starts: the ones there end after their answers.
    shutdown: CancellationToken,
}

/// What rmcp's sessions lack: a cap, a `DELETE` answered as clients expect, and answers
/// in flight sent before the sessions end at shutdown.
async fn session_rules(State(sessions): State<Sessions>, request: Request, next: Next) -> Response {
    match *request.method() {
        Method::POST => {
            let answer = cap_sessions(&sessions, request, next);
            sessions.in_flight.track(answer).await
        }
        Method::DELETE => end_session(&sessions, request, next).await,
        _ => next.run(request).await,
    }
}

/// rmcp keeps no limit on sessions; a client that initializes in a loop would otherwise
/// grow memory without bound. An `initialize` (a POST without a session id) beyond the cap
/// gets 503; idle sessions expire after the idle timeout and free their slot.
async fn cap_sessions(cap: &Sessions, request: Request, next: Next) -> Response {
    if request.headers().contains_key(SESSION_ID) {
        return next.run(request).await;
    }
    if cap.shutdown.is_cancelled() {
        return retry_later(
            "shutting_down",
            "The server is shutting down; retry in a moment.",
        );
    }
    let live = cap.manager.sessions.read().await.len();
    if live >= cap.max {
        tracing::warn!(
            live,
            max = cap.max,
            "refused a new MCP session: at --max-sessions"
        );
        return retry_later(
            "too_many_sessions",
            "The server holds as many MCP sessions as --max-sessions allows; retry later.",
        );
    }
    next.run(request).await
}

/// 503 with `Retry-After: 5`: a new session cannot start now, but may soon.
fn retry_later(error: &'static str, description: &'static str) -> Response {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, error, description);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// rmcp answers every `DELETE` 202, which clients (the MCP Python SDK among them) report as
/// a failed termination: a live session ended is 204, an unknown or ended one 404.
async fn end_session(sessions: &Sessions, request: Request, next: Next) -> Response {
    let Some(id) = request
        .headers()
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
    else {
        return next.run(request).await;
    };
    if !sessions.manager.sessions.read().await.contains_key(id) {
        return json_error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "No live MCP session has this Mcp-Session-Id: it ended or expired.",
        );
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::ACCEPTED {
        return StatusCode::NO_CONTENT.into_response();
    }
    response
}

const SESSION_ID: &str = "mcp-session-id";
