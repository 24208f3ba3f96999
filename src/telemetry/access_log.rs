//! The HTTP server span and the access log: one line per request, never with a key.
//!
//! By the time a request gets here, `auth::take_credentials` has removed the key and left
//! [`RecordedQuery`], the original query with every sensitive value replaced.

use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};

use crate::auth::AuthMethod;
use crate::listen::Peer;
use crate::telemetry::Export;

/// The request's query as it may be recorded (sensitive values replaced).
#[derive(Clone, Debug)]
pub struct RecordedQuery(pub String);

/// The client's address: the TCP peer, or on the Unix socket (where only the local proxy
/// can connect) the address the proxy appended last to `X-Forwarded-For`.
fn client_address(request: &Request) -> Option<String> {
    match request.extensions().get::<ConnectInfo<Peer>>()?.0 {
        Peer::Tcp(addr) => Some(addr.ip().to_string()),
        Peer::Unix => request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
    }
}

fn transport(request: &Request) -> &'static str {
    match request.extensions().get::<ConnectInfo<Peer>>() {
        Some(ConnectInfo(Peer::Unix)) => "unix",
        _ => "tcp",
    }
}

/// The HTTP server span, for the MCP span to hang under (or link to).
#[derive(Clone)]
pub struct HttpSpan(pub opentelemetry::Context);

/// Middleware: wraps the request in the HTTP server span, then writes the access log line
/// and records `http.server.request.duration`.
/// `export` is `None` when nothing is exported: then no span or attribute is even built.
pub async fn access_log(
    State(export): State<Option<Export>>,
    mut request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let query = request
        .extensions()
        .get::<RecordedQuery>()
        .map(|q| q.0.clone());
    let client = client_address(&request);
    let transport = transport(&request);
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

    let span = export.as_ref().map(|export| {
        let name = match &route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        };
        let mut attributes = Vec::with_capacity(9);
        attributes.push(KeyValue::new("http.request.method", method.to_string()));
        attributes.push(KeyValue::new("url.path", path.clone()));
        attributes.push(KeyValue::new("network.transport", transport));
        if let Some(query) = &query {
            attributes.push(KeyValue::new("url.query", query.clone()));
        }
        if let Some(route) = &route {
            attributes.push(KeyValue::new("http.route", route.clone()));
        }
        if let Some(client) = &client {
            attributes.push(KeyValue::new("client.address", client.clone()));
        }
        if let Some(user_agent) = &user_agent {
            attributes.push(KeyValue::new("user_agent.original", user_agent.clone()));
        }
        let span = export
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start(&export.tracer);
        let cx = opentelemetry::Context::new().with_span(span);
        request.extensions_mut().insert(HttpSpan(cx.clone()));
        cx
    });

    let response = next.run(request).await;

    let status = response.status();
    if let Some(cx) = span {
        let span = cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_status(Status::error(""));
        }
        span.end();
    }
    let elapsed = start.elapsed();
    let auth = response
        .extensions()
        .get::<AuthMethod>()
        .map_or("none", |m| m.as_str());
    tracing::info!(
        target: super::ACCESS_LOG_TARGET,
        parent: None,
        method = %method,
        path = %path,
        query = query.as_deref(),
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        client = client.as_deref(),
        user_agent = user_agent.as_deref(),
        auth,
        "request"
    );
    if let Some(export) = export {
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            KeyValue::new("network.transport", transport),
        ];
        if let Some(route) = route {
            attributes.push(KeyValue::new("http.route", route));
        }
        export
            .metrics
            .http_request
            .record(elapsed.as_secs_f64(), &attributes);
    }
    response
}
