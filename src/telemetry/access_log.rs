//! The HTTP server span and the access log: one line per request, never with a key.
//!
//! A [`Record`] is started by `gate` once the key has left the request, and finished with the
//! response's status. The query it records is the original one with every sensitive value
//! replaced (`auth::Taken::recorded_query`).

use std::borrow::Cow;
use std::cell::Cell;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};

use crate::auth::AuthMethod;
use crate::listen::Peer;
use crate::telemetry::{ACCESS_SINK, Export, LogFormat};

/// The access log lines' target, for `RUST_LOG` (`latchkey::access=off` turns them off).
pub const TARGET: &str = "latchkey::access";

/// Who sent a request: the TCP peer, or on the Unix socket (where only the local proxy can
/// connect) the address the proxy appended last to `X-Forwarded-For`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Client {
    Ip(IpAddr),
    Forwarded(String),
}

impl Client {
    fn of(peer: Option<Peer>, request: &Request) -> Option<Self> {
        match peer? {
            Peer::Tcp(addr) => Some(Client::Ip(addr.ip())),
            Peer::Unix => request
                .headers()
                .get(X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| Client::Forwarded(v.to_owned())),
        }
    }

    /// Written as it is, quoted: an IP address needs no escaping.
    fn write_quoted(&self, out: &mut Vec<u8>, quote: fn(&mut Vec<u8>, &str)) {
        match self {
            Client::Ip(ip) => {
                out.push(b'"');
                write_ip(out, *ip);
                out.push(b'"');
            }
            Client::Forwarded(address) => quote(out, address),
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Ip(ip) => ip.fmt(f),
            Client::Forwarded(address) => f.write_str(address),
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn transport(peer: Option<Peer>) -> &'static str {
    match peer {
        Some(Peer::Unix) => "unix",
        _ => "tcp",
    }
}

/// The HTTP server span, for the MCP span to hang under (or link to), and what the MCP span
/// repeats of the connection.
#[derive(Clone)]
pub struct HttpSpan {
    pub context: opentelemetry::Context,
    /// `client.address`: the TCP peer, or the address the proxy forwarded on the Unix socket.
    pub client_address: Option<String>,
    /// `client.port`: the TCP peer's.
    pub client_port: Option<u16>,
    /// `network.transport`: `tcp` or `unix`.
    pub transport: &'static str,
}

/// The path a record shows.
enum RecordedPath {
    /// The request's own (a route latchkey serves), shared with the request's buffer.
    Request(Uri),
    /// What `routes::Paths::shown` lets through of any other path.
    Shown(String),
}

impl RecordedPath {
    fn as_str(&self) -> &str {
        match self {
            RecordedPath::Request(uri) => uri.path(),
            RecordedPath::Shown(path) => path,
        }
    }
}

/// What is known of a request when it arrives, kept until its response is ready. The URI and
/// user agent are shared with the request's buffer, not copied.
pub struct Record {
    start: Instant,
    method: Method,
    path: RecordedPath,
    query: Option<String>,
    client: Option<Client>,
    user_agent: Option<HeaderValue>,
    /// With export on: the span, the route and the transport, for the span and the metric.
    export: Option<(Export, opentelemetry::Context, Option<String>, &'static str)>,
}

impl Record {
    /// Starts the record (and, with `export`, the HTTP server span, which it leaves in the
    /// request's extensions as [`HttpSpan`]). `peer`: the connection's other end; `shown`:
    /// the path to record instead of the request's (which may hold a key); `route`: the
    /// matched route template.
    pub fn start(
        request: &mut Request,
        peer: Option<Peer>,
        query: Option<String>,
        shown: Option<String>,
        route: Option<&str>,
        export: Option<&Export>,
    ) -> Self {
        let mut record = Record {
            start: Instant::now(),
            method: request.method().clone(),
            path: match shown {
                Some(path) => RecordedPath::Shown(path),
                None => RecordedPath::Request(request.uri().clone()),
            },
            query,
            client: Client::of(peer, request),
            user_agent: request.headers().get(header::USER_AGENT).cloned(),
            export: None,
        };
        if let Some(export) = export {
            let transport = transport(peer);
            let client_address = record.client.as_ref().map(Client::to_string);
            let cx = record.span(export, route, transport, client_address.clone());
            request.extensions_mut().insert(HttpSpan {
                context: cx.clone(),
                client_address,
                client_port: match peer {
                    Some(Peer::Tcp(addr)) => Some(addr.port()),
                    _ => None,
                },
                transport,
            });
            record.export = Some((export.clone(), cx, route.map(str::to_owned), transport));
        }
        record
    }

    fn user_agent(&self) -> Option<Cow<'_, str>> {
        self.user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
    }

    fn span(
        &self,
        export: &Export,
        route: Option<&str>,
        transport: &'static str,
        client_address: Option<String>,
    ) -> opentelemetry::Context {
        let method = &self.method;
        let name = match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        };
        let mut attributes = Vec::with_capacity(9);
        attributes.push(KeyValue::new("http.request.method", method.to_string()));
        attributes.push(KeyValue::new("url.path", self.path.as_str().to_owned()));
        attributes.push(KeyValue::new("network.transport", transport));
        if let Some(query) = &self.query {
            attributes.push(KeyValue::new("url.query", query.clone()));
        }
        if let Some(route) = route {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        if let Some(client) = client_address {
            attributes.push(KeyValue::new("client.address", client));
        }
        if let Some(user_agent) = self.user_agent() {
            attributes.push(KeyValue::new(
                "user_agent.original",
                user_agent.into_owned(),
            ));
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
    pub fn finish(mut self, status: StatusCode, auth: Option<AuthMethod>) {
        let elapsed = self.start.elapsed();
        if let Some((export, cx, route, transport)) = self.export.take() {
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
        let user_agent = self.user_agent();
        Line {
            method: self.method.as_str(),
            path: self.path.as_str(),
            query: self.query.as_deref(),
            status: status.as_u16(),
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            client: self.client.as_ref(),
            user_agent: user_agent.as_deref(),
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
    duration_us: u64,
    client: Option<&'a Client>,
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
    /// than all of latchkey's own per-request handling (BENCHMARKS.md). Numbers, addresses
    /// and the timestamp are written without `fmt`, which measured a tenth of what is left.
    fn render(&self, now: SystemTime, format: LogFormat, ansi: bool) -> Vec<u8> {
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
                    client.write_quoted(&mut out, json_string);
                }
                if let Some(user_agent) = self.user_agent {
                    out.extend_from_slice(br#","user_agent":"#);
                    json_string(&mut out, user_agent);
                }
                out.extend_from_slice(br#","auth":"#);
                json_string(&mut out, self.auth);
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
                    client.write_quoted(&mut out, debug_string);
                }
                if let Some(user_agent) = self.user_agent {
                    field(&mut out, "user_agent");
                    debug_string(&mut out, user_agent);
                }
                field(&mut out, "auth");
                debug_string(&mut out, self.auth);
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

/// `n` in decimal, zero-padded to `width` digits (`n` has at most that many, `width` ≤ 10).
fn write_padded(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut digits = [b'0'; 10];
    for digit in digits[..width].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[..width]);
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

/// `now` in RFC 3339 with microseconds in UTC (`2025-11-26T12:00:00.123456Z`), as
/// tracing-subscriber's timestamps are. The part up to the seconds changes once a second, so
/// each thread keeps the last one it wrote.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static LAST_SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
    }
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (last, mut prefix) = LAST_SECOND.get();
    if last != secs {
        prefix = date_time(secs);
        LAST_SECOND.set((secs, prefix));
    }
    out.extend_from_slice(&prefix);
    out.push(b'.');
    write_padded(out, since_epoch.subsec_micros(), 6);
    out.push(b'Z');
}

/// `secs` after the epoch as `YYYY-MM-DDTHH:MM:SS`.
fn date_time(secs: u64) -> [u8; 19] {
    let (days, of_day) = (secs / 86_400, (secs % 86_400) as u32);
    let (year, month, day) = civil_from_days(days);
    let mut out = Vec::with_capacity(19);
    write_padded(&mut out, year, 4);
    out.push(b'-');
    write_padded(&mut out, month, 2);
    out.push(b'-');
    write_padded(&mut out, day, 2);
    out.push(b'T');
    write_padded(&mut out, of_day / 3600, 2);
    out.push(b':');
    write_padded(&mut out, of_day / 60 % 60, 2);
    out.push(b':');
    write_padded(&mut out, of_day % 60, 2);
    out.try_into().expect("19 bytes")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    // Counted from 0000-03-01, so the leap day is the last day of its year.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = (year_of_era + era * 400 + u64::from(month <= 2)) as u32;
    (year, month, day)
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

    #[test]
    fn timestamps_match_humantime_across_leap_years_and_centuries() {
        // Every 7,777,777 s and 13 µs from 1970 to 2400: all months, leap days, 2000 and 2100.
        let mut at = SystemTime::UNIX_EPOCH;
        let step = std::time::Duration::new(7_777_777, 13_000);
        let end = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(13_569_465_600);
        let mut checked = 0;
        while at < end {
            // Twice in (mostly) the same second: the second one comes from the thread's cache.
            for at in [at, at + std::time::Duration::from_micros(1)] {
                let mut out = Vec::new();
                write_timestamp(&mut out, at);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    humantime::format_rfc3339_micros(at).to_string()
                );
            }
            at += step;
            checked += 1;
        }
        assert!(checked > 1700, "{checked}");
        for (secs, expected) in [
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000000Z"),
            (4_107_542_400, "2100-03-01T00:00:00.000000Z"),
        ] {
            let mut out = Vec::new();
            write_timestamp(
                &mut out,
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
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
            client.write_quoted(&mut out, json_string);
            assert_eq!(String::from_utf8(out).unwrap(), json);
            let mut out = Vec::new();
            client.write_quoted(&mut out, debug_string);
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
}
