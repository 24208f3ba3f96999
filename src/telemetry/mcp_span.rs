//! One SERVER span per MCP message, on the OpenTelemetry MCP semantic conventions:
//! `tools/call hello` with `mcp.method.name`, `gen_ai.tool.name`, `jsonrpc.request.id`,
//! `mcp.session.id`, `mcp.protocol.version`, and `error.type` on failure.
//!
//! The middleware reads the JSON-RPC message before rmcp does, and watches the response body
//! as it streams out (JSON or SSE) for the matching result or error; the span ends when the
//! body does. Installed only when spans are exported: with no exporter it costs nothing.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, Span as _, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Span as SdkSpan;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error_response::json_error;
use crate::redact;
use crate::telemetry::Export;
use crate::telemetry::access_log::HttpSpan;
use crate::telemetry::metrics::Metrics;

/// Requests larger than rmcp accepts are refused here too, before being buffered.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Response bytes kept to find the result in; a larger result is passed on unread.
const MAX_SCAN_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct McpTracing {
    pub export: Export,
    /// `--trace-tool-io`: record arguments and results (redacted) on the span.
    pub tool_io: bool,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    method: Option<String>,
    id: Option<serde_json::Value>,
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    name: Option<String>,
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
    #[serde(rename = "_meta")]
    meta: Option<HashMap<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct Outgoing<'a> {
    id: Option<serde_json::Value>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ToolResult {
    #[serde(rename = "isError")]
    is_error: Option<bool>,
}

fn id_string(id: &serde_json::Value) -> Option<String> {
    match id {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The context a client propagated in `params._meta` (W3C `traceparent`, `tracestate`).
fn propagated_context(meta: &HashMap<String, serde_json::Value>) -> Option<opentelemetry::Context> {
    let traceparent = meta.get("traceparent")?.as_str()?;
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(tracestate) = meta.get("tracestate").and_then(|v| v.as_str()) {
        carrier.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Middleware for the MCP endpoint.
pub async fn trace_mcp(
    State(tracing_cfg): State<McpTracing>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "The MCP message is larger than 4 MiB, or its body could not be read.",
            );
        }
    };
    let Ok(message) = serde_json::from_slice::<Incoming>(&bytes) else {
        // Not one JSON-RPC message: rmcp answers it; there is nothing to name a span after.
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let Some(method) = message.method.clone() else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };

    let params = message.params.as_ref();
    let target = match method.as_str() {
        "tools/call" | "prompts/get" => params.and_then(|p| p.name.clone()),
        _ => None,
    };
    let name = match &target {
        Some(target) => format!("{method} {target}"),
        None => method.clone(),
    };
    let request_id = message.id.as_ref().and_then(id_string);
    let protocol = header_str(&parts.headers, "mcp-protocol-version")
        .map(str::to_owned)
        .or_else(|| params.and_then(|p| p.protocol_version.clone()));
    let session = header_str(&parts.headers, "mcp-session-id");
    let had_session = session.is_some();
    let arguments = params.and_then(|p| p.arguments);
    let recorded_arguments = arguments
        .filter(|_| tracing_cfg.tool_io)
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a.get()).ok())
        .map(|value| redact::json(&value).to_string());
    let export = &tracing_cfg.export;
    let mut attributes = Vec::with_capacity(10);
    attributes.push(KeyValue::new("mcp.method.name", method.clone()));
    if let Some(protocol) = protocol {
        attributes.push(KeyValue::new("mcp.protocol.version", protocol));
    }
    if let Some(session) = session {
        attributes.push(KeyValue::new("mcp.session.id", session.to_owned()));
    }
    if let Some(id) = &request_id {
        attributes.push(KeyValue::new("jsonrpc.request.id", id.clone()));
    }
    if let Some(target) = &target {
        match method.as_str() {
            "tools/call" => {
                attributes.push(KeyValue::new("gen_ai.tool.name", target.clone()));
                attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
            }
            _ => attributes.push(KeyValue::new("gen_ai.prompt.name", target.clone())),
        }
    }
    if let Some(arguments) = arguments {
        attributes.push(KeyValue::new(
            "latchkey.arguments.bytes",
            arguments.get().len() as i64,
        ));
    }
    if let Some(recorded) = recorded_arguments {
        attributes.push(KeyValue::new("gen_ai.tool.call.arguments", recorded));
    }
    let http = parts.extensions.get::<HttpSpan>().map(|s| s.0.clone());
    // A client that propagates context (`traceparent` in `params._meta`) becomes the parent;
    // the HTTP request span, otherwise the parent, is linked.
    let propagated = params
        .and_then(|p| p.meta.as_ref())
        .and_then(propagated_context);
    let builder = export
        .tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_attributes(attributes);
    let span = match (propagated, &http) {
        (Some(parent), http) => {
            let links = http
                .iter()
                .map(|cx| Link::with_context(cx.span().span_context().clone()))
                .collect();
            builder
                .with_links(links)
                .start_with_context(&export.tracer, &parent)
        }
        (None, Some(http)) => builder.start_with_context(&export.tracer, http),
        (None, None) => builder.start_with_context(&export.tracer, &opentelemetry::Context::new()),
    };
    drop(message);

    let start = Instant::now();
    let mut span = span;
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;

    // `initialize` in session mode: the id comes with the answer.
    if !had_session && let Some(session) = header_str(response.headers(), "mcp-session-id") {
        span.set_attribute(KeyValue::new("mcp.session.id", session.to_owned()));
    }
    let mut outcome = Outcome {
        span,
        start,
        metrics: tracing_cfg.export.metrics,
        method,
        tool: target,
        request_id,
        tool_io: tracing_cfg.tool_io,
        error_type: None,
    };
    let status = response.status();
    if !status.is_success() {
        outcome.fail(
            status.as_str().to_owned(),
            status.canonical_reason().unwrap_or(""),
        );
        outcome.finish();
        return response;
    }
    let content_type = header_str(response.headers(), header::CONTENT_TYPE.as_str()).unwrap_or("");
    let scan = if content_type.starts_with("application/json") {
        Scan::Json(Vec::new())
    } else if content_type.starts_with("text/event-stream") {
        Scan::Sse(Vec::new())
    } else {
        // 202 Accepted for a notification: nothing more to learn.
        outcome.finish();
        return response;
    };
    let (parts, body) = response.into_parts();
    let body = Watched {
        inner: body,
        scan,
        outcome: Some(outcome),
    };
    Response::from_parts(parts, Body::new(body))
}

/// What is known about one MCP message until its response has gone out.
struct Outcome {
    span: SdkSpan,
    start: Instant,
    metrics: Metrics,
    method: String,
    tool: Option<String>,
    request_id: Option<String>,
    tool_io: bool,
    error_type: Option<String>,
}

impl Outcome {
    fn fail(&mut self, error_type: String, description: &str) {
        self.span
            .set_attribute(KeyValue::new("error.type", error_type.clone()));
        self.span.set_status(Status::error(description.to_owned()));
        self.error_type = Some(error_type);
    }

    /// Reads one JSON-RPC message of the response; true when it was the awaited answer.
    fn observe(&mut self, json: &[u8]) -> bool {
        let Ok(message) = serde_json::from_slice::<Outgoing>(json) else {
            return false;
        };
        let matches = match (&message.id, &self.request_id) {
            (Some(id), Some(expected)) => id_string(id).as_deref() == Some(expected.as_str()),
            _ => false,
        };
        if !matches {
            return false;
        }
        if let Some(error) = message.error {
            self.span.set_attribute(KeyValue::new(
                "rpc.response.status_code",
                error.code.to_string(),
            ));
            self.fail(
                error.code.to_string(),
                error.message.as_deref().unwrap_or(""),
            );
        } else if let Some(result) = message.result {
            self.span.set_attribute(KeyValue::new(
                "latchkey.result.bytes",
                result.get().len() as i64,
            ));
            if self.method == "tools/call" {
                let failed = serde_json::from_str::<ToolResult>(result.get())
                    .is_ok_and(|r| r.is_error == Some(true));
                if self.tool_io
                    && let Ok(value) = serde_json::from_str::<serde_json::Value>(result.get())
                {
                    self.span.set_attribute(KeyValue::new(
                        "gen_ai.tool.call.result",
                        redact::json(&value).to_string(),
                    ));
                }
                if failed {
                    self.fail(
                        "tool_error".to_owned(),
                        "the tool reported an error (isError)",
                    );
                }
            }
        }
        true
    }

    /// Ends the span and records the duration metric.
    fn finish(mut self) {
        self.span.end();
        let mut attributes = vec![KeyValue::new("mcp.method.name", self.method.clone())];
        if let Some(tool) = &self.tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool.clone()));
        }
        if let Some(error) = &self.error_type {
            attributes.push(KeyValue::new("error.type", error.clone()));
        }
        self.metrics
            .mcp_operation
            .record(self.start.elapsed().as_secs_f64(), &attributes);
    }
}

/// How the response body is read while it passes.
enum Scan {
    /// The whole body is one JSON-RPC message.
    Json(Vec<u8>),
    /// Server-sent events, each `data:` one JSON-RPC message; bytes of an incomplete event.
    Sse(Vec<u8>),
    /// Found, or gave up: pass the rest through untouched.
    Done,
}

/// The response body, watched for the result as it streams out.
struct Watched {
    inner: Body,
    scan: Scan,
    outcome: Option<Outcome>,
}

impl Watched {
    fn feed(&mut self, data: &Bytes) {
        let Some(outcome) = self.outcome.as_mut() else {
            return;
        };
        match &mut self.scan {
            Scan::Json(buffer) => {
                buffer.extend_from_slice(data);
                if buffer.len() > MAX_SCAN_BYTES {
                    self.scan = Scan::Done;
                }
            }
            Scan::Sse(buffer) => {
                buffer.extend_from_slice(data);
                let mut found = false;
                while let Some(end) = find_event_end(buffer) {
                    let event: Vec<u8> = buffer.drain(..end).collect();
                    let data = sse_data(&event);
                    if !data.is_empty() && outcome.observe(&data) {
                        found = true;
                        break;
                    }
                }
                if found || buffer.len() > MAX_SCAN_BYTES {
                    self.scan = Scan::Done;
                }
            }
            Scan::Done => {}
        }
    }

    fn end(&mut self) {
        if let Some(mut outcome) = self.outcome.take() {
            if let Scan::Json(buffer) = &self.scan {
                outcome.observe(buffer);
            }
            self.scan = Scan::Done;
            outcome.finish();
        }
    }
}

/// The index just past the blank line that ends the first complete SSE event, if any.
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `data:` lines of one SSE event, joined by newlines.
fn sse_data(event: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    data
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.feed(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.end();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(outcome) = this.outcome.as_mut() {
                    outcome.fail("_OTHER".to_owned(), "the response stream failed");
                }
                this.end();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // The client went away before the end: still record what is known.
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_joined() {
        let buffer = b": ping\n\nevent: message\ndata: {\"a\":\ndata: 1}\n\nrest";
        let end = find_event_end(buffer).unwrap();
        assert_eq!(&buffer[..end], b": ping\n\n");
        let rest = &buffer[end..];
        let end = find_event_end(rest).unwrap();
        assert_eq!(sse_data(&rest[..end]), b"{\"a\":\n1}");
        assert_eq!(find_event_end(b"data: x\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: x\n"), None);
    }
}

/// The middleware against stand-in handlers, with spans kept in memory.
#[cfg(test)]
mod span_tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tower::ServiceExt;

    fn attr(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    /// Runs one POST through `trace_mcp` in front of a handler answering `answer`.
    async fn spans_for(
        request: &str,
        answer: &'static str,
        content_type: &'static str,
        tool_io: bool,
    ) -> Vec<SpanData> {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let metric_exporter = InMemoryMetricExporter::default();
        let meters = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metric_exporter.clone()).build())
            .build();
        let export = Export {
            tracer: provider.tracer("test"),
            metrics: Metrics::from_meter(&meters.meter("test")),
        };
        let app = Router::new()
            .route(
                "/mcp",
                post(move || async move {
                    let status = if answer.is_empty() {
                        StatusCode::NOT_ACCEPTABLE
                    } else {
                        StatusCode::OK
                    };
                    (status, [(header::CONTENT_TYPE, content_type)], answer)
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                McpTracing {
                    export: export.clone(),
                    tool_io,
                },
                trace_mcp,
            ));
        // Through the gate, as in the server: it starts the HTTP span the MCP span needs.
        let key = crate::keys::KeyEntry::Plain("k".repeat(32).into());
        let keys = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(crate::keys::KeySet::new(
            &[key],
        )));
        let guard = crate::host_origin::HostOriginGuard::new(&[], &[], None, &[]);
        let paths = crate::routes::Paths::new(&Default::default());
        let app = tower::Layer::layer(
            &crate::gate::GateLayer::new(paths, guard, keys, Some(export)),
            app,
        );
        let response = app
            .oneshot(
                axum::http::Request::post("/mcp")
                    .header(header::AUTHORIZATION, format!("Bearer {}", "k".repeat(32)))
                    .header("mcp-protocol-version", "2025-06-18")
                    .header("mcp-session-id", "s-1")
                    .body(Body::from(request.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, answer.as_bytes(), "the body passes through unchanged");
        provider.force_flush().unwrap();
        // Every message, answered or refused, is counted in the duration metric.
        meters.force_flush().unwrap();
        let recorded = metric_exporter.get_finished_metrics().unwrap();
        let names: Vec<String> = recorded
            .iter()
            .flat_map(|r| r.scope_metrics())
            .flat_map(|s| s.metrics())
            .map(|m| m.name().to_owned())
            .collect();
        assert!(
            names.iter().any(|n| n == "mcp.server.operation.duration"),
            "{names:?}"
        );
        let (http, mcp): (Vec<SpanData>, Vec<SpanData>) = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .partition(|s| s.name == "POST /mcp");
        assert_eq!(http.len(), 1, "one HTTP span");
        let http = &http[0];
        assert_eq!(
            attr(http, "http.response.status_code"),
            Some(status.to_string())
        );
        // The MCP span hangs under the HTTP span, or is linked to it when the client
        // propagated its own parent.
        for span in &mcp {
            let linked = span
                .links
                .iter()
                .any(|l| l.span_context.span_id() == http.span_context.span_id());
            let child = span.parent_span_id == http.span_context.span_id();
            assert!(linked != child, "{span:?}");
            assert_eq!(
                child,
                span.span_context.trace_id() == http.span_context.trace_id()
            );
        }
        mcp
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hello","arguments":{"name":"Ada","password":"hunter2"}}}"#;

    #[tokio::test]
    async fn tools_call_span_follows_the_conventions() {
        let spans = spans_for(CALL, r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"Hello Ada!"}],"isError":false}}"#, "application/json", false).await;
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, "tools/call hello");
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(attr(span, "mcp.method.name").as_deref(), Some("tools/call"));
        assert_eq!(attr(span, "gen_ai.tool.name").as_deref(), Some("hello"));
        assert_eq!(
            attr(span, "gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        assert_eq!(attr(span, "jsonrpc.request.id").as_deref(), Some("7"));
        assert_eq!(
            attr(span, "mcp.protocol.version").as_deref(),
            Some("2025-06-18")
        );
        assert_eq!(attr(span, "mcp.session.id").as_deref(), Some("s-1"));
        assert_eq!(
            attr(span, "latchkey.arguments.bytes").as_deref(),
            Some("35")
        );
        assert!(attr(span, "latchkey.result.bytes").is_some());
        assert_eq!(attr(span, "error.type"), None);
        assert_eq!(span.status, Status::Unset);
        // Without --trace-tool-io, neither arguments nor results are recorded.
        assert_eq!(attr(span, "gen_ai.tool.call.arguments"), None);
        assert_eq!(attr(span, "gen_ai.tool.call.result"), None);
    }

    #[tokio::test]
    async fn tool_errors_and_rpc_errors_mark_the_span() {
        let spans = spans_for(
            CALL,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":true}}"#,
            "application/json",
            false,
        )
        .await;
        assert_eq!(attr(&spans[0], "error.type").as_deref(), Some("tool_error"));
        assert!(matches!(spans[0].status, Status::Error { .. }));

        let sse = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32602,\"message\":\"tool not found\"}}\n\n";
        let spans = spans_for(CALL, sse, "text/event-stream", false).await;
        assert_eq!(attr(&spans[0], "error.type").as_deref(), Some("-32602"));
        assert_eq!(
            attr(&spans[0], "rpc.response.status_code").as_deref(),
            Some("-32602")
        );
        assert_eq!(spans[0].status, Status::error("tool not found"));
    }

    #[tokio::test]
    async fn http_errors_mark_the_span() {
        // An empty answer stands for rmcp refusing the request (406 here).
        let spans = spans_for(CALL, "", "text/plain", false).await;
        assert_eq!(
            spans.len(),
            1,
            "the span ends although no JSON-RPC answer came"
        );
        assert_eq!(attr(&spans[0], "error.type").as_deref(), Some("406"));
        assert!(matches!(spans[0].status, Status::Error { .. }));
    }

    #[tokio::test]
    async fn tool_io_is_recorded_redacted_when_asked() {
        let spans = spans_for(
            CALL,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"token":"t0k"}}"#,
            "application/json",
            true,
        )
        .await;
        let arguments = attr(&spans[0], "gen_ai.tool.call.arguments").unwrap();
        assert!(
            arguments.contains("Ada") && arguments.contains("REDACTED"),
            "{arguments}"
        );
        assert!(!arguments.contains("hunter2"), "{arguments}");
        let result = attr(&spans[0], "gen_ai.tool.call.result").unwrap();
        assert!(!result.contains("t0k"), "{result}");
    }

    #[tokio::test]
    async fn traceparent_in_meta_becomes_the_parent() {
        let call = r#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}"#;
        let spans = spans_for(
            call,
            r#"{"jsonrpc":"2.0","id":"a","result":{"tools":[]}}"#,
            "application/json",
            false,
        )
        .await;
        let span = &spans[0];
        assert_eq!(span.name, "tools/list");
        assert_eq!(
            span.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(span.parent_span_id.to_string(), "b7ad6b7169203331");
        assert_eq!(attr(span, "jsonrpc.request.id").as_deref(), Some("a"));
    }
}
