//! The HTTP server span and the access log: one line per request, never with a key.
//!
//! A [`Record`] is started by `gate` once the key has left the request, and finished with the
//! response's status. The query it records is the original one with every sensitive value
//! replaced (`auth::Taken::recorded_query`).

use std::io::Write as _;
use std::time::{Instant, SystemTime};

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};

use crate::auth::AuthMethod;
use crate::listen::Peer;
use crate::telemetry::{ACCESS_SINK, Export, LogFormat};

/// The access log lines' target, for `RUST_LOG` (`latchkey::access=off` turns them off).
pub const TARGET: &str = "latchkey::access";

/// The client's address: the TCP peer, or on the Unix socket (where only the local proxy
/// can connect) the address the proxy appended last to `X-Forwarded-For`.
fn client_address(peer: Option<Peer>, request: &Request) -> Option<String> {
    match peer? {
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

fn transport(peer: Option<Peer>) -> &'static str {
    match peer {
        Some(Peer::Unix) => "unix",
        _ => "tcp",
    }
}

/// The HTTP server span, for the MCP span to hang under (or link to).
#[derive(Clone)]
pub struct HttpSpan(pub opentelemetry::Context);

/// What is known of a request when it arrives, kept until its response is ready.
pub struct Record {
    start: Instant,
    method: Method,
    path: String,
    query: Option<String>,
    client: Option<String>,
    user_agent: Option<String>,
    /// With export on: the span, the route and the transport, for the span and the metric.
    export: Option<(Export, opentelemetry::Context, Option<String>, &'static str)>,
}

impl Record {
    /// Starts the record (and, with `export`, the HTTP server span, which it leaves in the
    /// request's extensions as [`HttpSpan`]). `peer`: the connection's other end; `route`:
    /// the matched route template.
    pub fn start(
        request: &mut Request,
        peer: Option<Peer>,
        query: Option<String>,
        route: Option<&str>,
        export: Option<&Export>,
    ) -> Self {
        let mut record = Record {
            start: Instant::now(),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            query,
            client: client_address(peer, request),
            user_agent: request
                .headers()
                .get(header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            export: None,
        };
        if let Some(export) = export {
            let transport = transport(peer);
            let cx = record.span(export, route, transport);
            request.extensions_mut().insert(HttpSpan(cx.clone()));
            record.export = Some((export.clone(), cx, route.map(str::to_owned), transport));
        }
        record
    }

    fn span(
        &self,
        export: &Export,
        route: Option<&str>,
        transport: &'static str,
    ) -> opentelemetry::Context {
        let method = &self.method;
        let name = match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        };
        let mut attributes = Vec::with_capacity(9);
        attributes.push(KeyValue::new("http.request.method", method.to_string()));
        attributes.push(KeyValue::new("url.path", self.path.clone()));
        attributes.push(KeyValue::new("network.transport", transport));
        if let Some(query) = &self.query {
            attributes.push(KeyValue::new("url.query", query.clone()));
        }
        if let Some(route) = route {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        if let Some(client) = &self.client {
            attributes.push(KeyValue::new("client.address", client.clone()));
        }
        if let Some(user_agent) = &self.user_agent {
            attributes.push(KeyValue::new("user_agent.original", user_agent.clone()));
        }
        let span = export
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start(&export.tracer);
        opentelemetry::Context::new().with_span(span)
    }

    /// Writes the access log line, ends the span and records
    /// `http.server.request.duration`. `auth`: how the key came, when one was accepted.
    pub fn finish(self, status: StatusCode, auth: Option<AuthMethod>) {
        let elapsed = self.start.elapsed();
        if let Some((export, cx, route, transport)) = self.export {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_server_error() {
                span.set_status(Status::error(""));
            }
            span.end();
            let mut attributes = vec![
                KeyValue::new("http.request.method", self.method.to_string()),
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
        Line {
            method: self.method.as_str(),
            path: &self.path,
            query: self.query.as_deref(),
            status: status.as_u16(),
            duration_us: elapsed.as_micros(),
            client: self.client.as_deref(),
            user_agent: self.user_agent.as_deref(),
            auth: auth.map_or("none", AuthMethod::as_str),
        }
        .write();
    }
}

/// One access log line.
struct Line<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    status: u16,
    duration_us: u128,
    client: Option<&'a str>,
    user_agent: Option<&'a str>,
    auth: &'static str,
}

impl Line<'_> {
    /// Writes the line where every other log line goes, if `RUST_LOG` lets it through.
    fn write(&self) {
        let Some(sink) = ACCESS_SINK.get() else {
            return;
        };
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        let line = self.render(SystemTime::now(), sink.format, sink.ansi);
        // The writer hands the line to the log thread; it fails only once that has stopped.
        let _ = tracing_subscriber::fmt::MakeWriter::make_writer(&sink.writer).write_all(&line);
    }

    /// The line as tracing-subscriber writes an event in `format`, written directly: its
    /// formatter gathers the fields into a map of JSON values first, which measured more work
    /// than all of latchkey's own per-request handling (BENCHMARKS.md).
    fn render(&self, now: SystemTime, format: LogFormat, ansi: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let timestamp = humantime::format_rfc3339_micros(now);
        // Milliseconds to the microsecond, from integers (float formatting costs more).
        let (ms, us) = (self.duration_us / 1000, self.duration_us % 1000);
        // After status and duration, in the order tracing-subscriber wrote them.
        let strings = [
            ("client", self.client),
            ("user_agent", self.user_agent),
            ("auth", Some(self.auth)),
        ];
        match format {
            LogFormat::Json => {
                let _ = write!(
                    out,
                    r#"{{"timestamp":"{timestamp}","level":"INFO","message":"request","method":"#
                );
                json_string(&mut out, self.method);
                out.extend_from_slice(br#","path":"#);
                json_string(&mut out, self.path);
                if let Some(query) = self.query {
                    out.extend_from_slice(br#","query":"#);
                    json_string(&mut out, query);
                }
                let _ = write!(
                    out,
                    r#","status":{},"duration_ms":{ms}.{us:03}"#,
                    self.status
                );
                for (name, value) in strings {
                    if let Some(value) = value {
                        let _ = write!(out, r#","{name}":"#);
                        json_string(&mut out, value);
                    }
                }
                let _ = writeln!(out, r#","target":"{TARGET}"}}"#);
            }
            LogFormat::Text => {
                // tracing-subscriber's look: dim time and target, green level, italic names.
                let (dim, green, italic, reset) = if ansi {
                    ("\x1b[2m", "\x1b[32m", "\x1b[3m", "\x1b[0m")
                } else {
                    ("", "", "", "")
                };
                let field = |out: &mut Vec<u8>, name: &str| {
                    let _ = write!(out, " {italic}{name}{reset}{dim}={reset}");
                };
                let _ = write!(
                    out,
                    "{dim}{timestamp}{reset} {green} INFO{reset} {dim}{TARGET}:{reset} request"
                );
                field(&mut out, "method");
                out.extend_from_slice(self.method.as_bytes());
                field(&mut out, "path");
                out.extend_from_slice(self.path.as_bytes());
                if let Some(query) = self.query {
                    field(&mut out, "query");
                    let _ = write!(out, "{query:?}");
                }
                field(&mut out, "status");
                let _ = write!(out, "{}", self.status);
                field(&mut out, "duration_ms");
                let _ = write!(out, "{ms}.{us:03}");
                for (name, value) in &strings {
                    if let Some(value) = value {
                        field(&mut out, name);
                        let _ = write!(out, "{value:?}");
                    }
                }
                out.push(b'\n');
            }
        }
        out
    }
}

/// `value` as a JSON string: quoted, with quotes, backslashes and control characters escaped.
fn json_string(out: &mut Vec<u8>, value: &str) {
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(user_agent: Option<&'a str>, query: Option<&'a str>) -> Line<'a> {
        Line {
            method: "POST",
            path: "/mcp",
            query,
            status: 200,
            duration_us: 1_235,
            client: Some("127.0.0.1"),
            user_agent,
            auth: "bearer",
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_158_400_123_456)
    }

    #[test]
    fn json_line_is_one_object_with_every_field() {
        let rendered = line(Some("ua \"q\"\n\u{1b}[31m"), Some("a=1&api_key=REDACTED")).render(
            at(),
            LogFormat::Json,
            false,
        );
        let text = String::from_utf8(rendered).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with('\n'));
        // The fields in the order every earlier line had (and README.md shows).
        let order = [
            "timestamp",
            "level",
            "message",
            "method",
            "path",
            "query",
            "status",
            "duration_ms",
            "client",
            "user_agent",
            "auth",
            "target",
        ]
        .map(|name| text.find(&format!("\"{name}\":")).unwrap());
        assert!(order.is_sorted(), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "timestamp": "2025-11-26T12:00:00.123456Z",
                "level": "INFO",
                "message": "request",
                "method": "POST",
                "path": "/mcp",
                "query": "a=1&api_key=REDACTED",
                "status": 200,
                "duration_ms": 1.235,
                "client": "127.0.0.1",
                "user_agent": "ua \"q\"\n\u{1b}[31m",
                "auth": "bearer",
                "target": "latchkey::access",
            })
        );
        let bare = line(None, None).render(at(), LogFormat::Json, false);
        let value: serde_json::Value = serde_json::from_slice(&bare).unwrap();
        assert!(value.get("query").is_none() && value.get("user_agent").is_none());
    }

    #[test]
    fn text_line_looks_like_every_other_and_escapes_what_it_quotes() {
        let rendered = line(Some("ua \"q\"\n"), Some("a=1")).render(at(), LogFormat::Text, false);
        assert_eq!(
            String::from_utf8(rendered).unwrap(),
            "2025-11-26T12:00:00.123456Z  INFO latchkey::access: request method=POST \
             path=/mcp query=\"a=1\" status=200 duration_ms=1.235 client=\"127.0.0.1\" \
             user_agent=\"ua \\\"q\\\"\\n\" auth=\"bearer\"\n"
        );
        let colored = line(None, None).render(at(), LogFormat::Text, true);
        let colored = String::from_utf8(colored).unwrap();
        assert!(colored.contains("\x1b[32m INFO\x1b[0m"), "{colored:?}");
    }
}
