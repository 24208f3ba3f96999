//! The access log: one line per request, never with a key, written where every other log
//! line goes, in the same format (text or JSON). `telemetry::http` fills a [`Line`] when a
//! request's answer is ready.

use std::io::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::clients::Client;
use crate::telemetry::timestamp::{write_padded, write_timestamp};
use crate::telemetry::{ACCESS_SINK, LogFormat};

/// The access log lines' target, for `RUST_LOG` (`latchkey::access=off` turns them off).
pub const TARGET: &str = "latchkey::access";

/// Written as it is, quoted: an IP address needs no escaping.
fn write_client(client: &Client, out: &mut Vec<u8>, quote: fn(&mut Vec<u8>, &str)) {
    match client {
        Client::Ip(ip) => {
            out.push(b'"');
            write_ip(out, *ip);
            out.push(b'"');
        }
        Client::Forwarded(address) => quote(out, address),
    }
}

/// One access log line.
pub struct Line<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub status: u16,
    pub duration_us: u64,
    pub client: Option<&'a Client>,
    pub user_agent: Option<&'a str>,
    pub auth: &'static str,
    /// The JSON-RPC method of an MCP request's message.
    pub mcp_method: Option<&'a str>,
    /// The tool or prompt it named: `("tool", "hello")`.
    pub mcp_target: Option<(&'static str, &'a str)>,
}

impl Line<'_> {
    /// Writes the line where every other log line goes, if `RUST_LOG` lets it through.
    pub fn write(&self) {
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
    /// than all of latchkey's own per-request handling (BENCHMARKS.md). Numbers, addresses
    /// and the timestamp are written without `fmt`, which measured a tenth of what is left.
    pub fn render(&self, now: SystemTime, format: LogFormat, ansi: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        match format {
            LogFormat::Json => {
                out.extend_from_slice(br#"{"timestamp":""#);
                write_timestamp(&mut out, now);
                out.extend_from_slice(br#"","level":"INFO","message":"request","method":"#);
                json_string(&mut out, self.method);
                out.extend_from_slice(br#","path":"#);
                json_string(&mut out, self.path);
                if let Some(query) = self.query {
                    out.extend_from_slice(br#","query":"#);
                    json_string(&mut out, query);
                }
                out.extend_from_slice(br#","status":"#);
                write_uint(&mut out, self.status.into());
                out.extend_from_slice(br#","duration_ms":"#);
                write_ms(&mut out, self.duration_us);
                // After status and duration, in the order tracing-subscriber wrote them.
                if let Some(client) = self.client {
                    out.extend_from_slice(br#","client":"#);
                    write_client(client, &mut out, json_string);
                }
                if let Some(user_agent) = self.user_agent {
                    out.extend_from_slice(br#","user_agent":"#);
                    json_string(&mut out, user_agent);
                }
                out.extend_from_slice(br#","auth":"#);
                json_string(&mut out, self.auth);
                if let Some(method) = self.mcp_method {
                    out.extend_from_slice(br#","mcp_method":"#);
                    json_string(&mut out, method);
                }
                if let Some((kind, name)) = self.mcp_target {
                    out.extend_from_slice(b",\"");
                    out.extend_from_slice(kind.as_bytes());
                    out.extend_from_slice(b"\":");
                    json_string(&mut out, name);
                }
                out.extend_from_slice(br#","target":""#);
                out.extend_from_slice(TARGET.as_bytes());
                out.extend_from_slice(b"\"}\n");
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
                out.extend_from_slice(dim.as_bytes());
                write_timestamp(&mut out, now);
                let _ = write!(
                    out,
                    "{reset} {green} INFO{reset} {dim}{TARGET}:{reset} request"
                );
                field(&mut out, "method");
                out.extend_from_slice(self.method.as_bytes());
                field(&mut out, "path");
                out.extend_from_slice(self.path.as_bytes());
                if let Some(query) = self.query {
                    field(&mut out, "query");
                    debug_string(&mut out, query);
                }
                field(&mut out, "status");
                write_uint(&mut out, self.status.into());
                field(&mut out, "duration_ms");
                write_ms(&mut out, self.duration_us);
                if let Some(client) = self.client {
                    field(&mut out, "client");
                    write_client(client, &mut out, debug_string);
                }
                if let Some(user_agent) = self.user_agent {
                    field(&mut out, "user_agent");
                    debug_string(&mut out, user_agent);
                }
                field(&mut out, "auth");
                debug_string(&mut out, self.auth);
                if let Some(method) = self.mcp_method {
                    field(&mut out, "mcp_method");
                    debug_string(&mut out, method);
                }
                if let Some((kind, name)) = self.mcp_target {
                    field(&mut out, kind);
                    debug_string(&mut out, name);
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

/// `value` quoted and escaped as Rust's `Debug` does, as tracing-subscriber's text lines have it.
fn debug_string(out: &mut Vec<u8>, value: &str) {
    let _ = write!(out, "{value:?}");
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Microseconds as milliseconds with three decimals (float formatting costs more).
fn write_ms(out: &mut Vec<u8>, us: u64) {
    write_uint(out, us / 1000);
    out.push(b'.');
    write_padded(out, (us % 1000) as u32, 3);
}

fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_uint(out, octet.into());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCALHOST: Client = Client::Ip(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    fn line<'a>(user_agent: Option<&'a str>, query: Option<&'a str>) -> Line<'a> {
        Line {
            method: "POST",
            path: "/mcp",
            query,
            status: 200,
            duration_us: 1_235,
            client: Some(&LOCALHOST),
            user_agent,
            auth: "bearer",
            mcp_method: Some("tools/call"),
            mcp_target: Some(("tool", "hello \"x\"")),
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
            "mcp_method",
            "tool",
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
                "mcp_method": "tools/call",
                "tool": "hello \"x\"",
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
             user_agent=\"ua \\\"q\\\"\\n\" auth=\"bearer\" mcp_method=\"tools/call\" \
             tool=\"hello \\\"x\\\"\"\n"
        );
        let colored = line(None, None).render(at(), LogFormat::Text, true);
        let colored = String::from_utf8(colored).unwrap();
        assert!(colored.contains("\x1b[32m INFO\x1b[0m"), "{colored:?}");
    }

    #[test]
    fn clients_and_durations_are_written_as_fmt_would() {
        let v6 = Client::Ip("2001:db8::1".parse().unwrap());
        let forwarded = Client::Forwarded("203.0.113.9 \"x\"".into());
        for (client, json, text) in [
            (&LOCALHOST, r#""127.0.0.1""#, r#""127.0.0.1""#),
            (&v6, r#""2001:db8::1""#, r#""2001:db8::1""#),
            (
                &forwarded,
                r#""203.0.113.9 \"x\"""#,
                r#""203.0.113.9 \"x\"""#,
            ),
        ] {
            let mut out = Vec::new();
            write_client(client, &mut out, json_string);
            assert_eq!(String::from_utf8(out).unwrap(), json);
            let mut out = Vec::new();
            write_client(client, &mut out, debug_string);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
        let mut octets = Vec::new();
        write_ip(&mut octets, "10.200.0.255".parse().unwrap());
        assert_eq!(octets, b"10.200.0.255");
        for (us, ms) in [
            (0, "0.000"),
            (7, "0.007"),
            (1_235, "1.235"),
            (61_000_001, "61000.001"),
        ] {
            let mut out = Vec::new();
            write_ms(&mut out, us);
            assert_eq!(String::from_utf8(out).unwrap(), ms);
        }
    }

    /// What tracing-subscriber writes for the event the access log once was, in `format`
    /// (the timestamp left out: it is the moment of writing).
    fn as_tracing_subscriber_writes(format: LogFormat) -> String {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = {
            let captured = captured.clone();
            move || captured.clone()
        };
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false);
        let event = || {
            tracing::info!(
                target: TARGET,
                method = %"POST",
                path = %"/mcp",
                query = "a=1",
                status = 200u64,
                duration_ms = 1.235f64,
                client = "127.0.0.1",
                user_agent = "ua \"q\"\n",
                auth = "bearer",
                mcp_method = "tools/call",
                tool = "hello \"x\"",
                "request"
            )
        };
        use tracing_subscriber::layer::SubscriberExt as _;
        match format {
            LogFormat::Json => {
                let layer = layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false);
                tracing::subscriber::with_default(
                    tracing_subscriber::registry().with(layer),
                    event,
                );
            }
            LogFormat::Text => {
                tracing::subscriber::with_default(
                    tracing_subscriber::registry().with(layer),
                    event,
                );
            }
        }
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    /// The module's promise: the same line, field for field, as tracing-subscriber's own
    /// formatters would write (set up as `telemetry::init` sets them up).
    #[test]
    fn lines_are_what_tracing_subscriber_writes_for_the_same_event() {
        let ours = line(Some("ua \"q\"\n"), Some("a=1"));
        let without_time = |text: &str| {
            let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
            value.as_object_mut().unwrap().remove("timestamp").unwrap();
            value
        };
        let json = String::from_utf8(ours.render(at(), LogFormat::Json, false)).unwrap();
        assert_eq!(
            without_time(&json),
            without_time(&as_tracing_subscriber_writes(LogFormat::Json))
        );
        let text = String::from_utf8(ours.render(at(), LogFormat::Text, false)).unwrap();
        let theirs = as_tracing_subscriber_writes(LogFormat::Text);
        let after_time = |line: &str| line.split_once(' ').unwrap().1.to_owned();
        assert_eq!(after_time(&text), after_time(&theirs), "{theirs}");
    }
}
