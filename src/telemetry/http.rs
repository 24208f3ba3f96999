//! The HTTP server span, its metric, and the record of a request kept until its answer.
//!
//! A [`Record`] is started by `gate` once the key has left the request, and finished with the
//! response's status: it ends the span, records `http.server.request.duration` and writes
//! the access log line. The query it records is the original one with every sensitive value
//! replaced (`auth::Taken::recorded_query`).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use opentelemetry::trace::{SpanContext, SpanKind, Status};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_semantic_conventions::attribute::{
    CLIENT_ADDRESS, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, NETWORK_TRANSPORT,
    URL_PATH, URL_QUERY,
};

use crate::auth::AuthMethod;
use crate::clients::{Client, ClientAddr};
use crate::error_response::Refusal;
use crate::listen::Peer;
use crate::telemetry::Export;
use crate::telemetry::access_log::Line;
use crate::telemetry::observe::{Exchange, ExchangeObserver};
use crate::telemetry::trace::{Span, Start};

/// The method as a value that costs no allocation (any method but an extension one).
fn method_value(method: &Method) -> StringValue {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH", "CONNECT", "TRACE",
    ];
    match KNOWN.iter().find(|known| **known == method.as_str()) {
        Some(known) => StringValue::from(*known),
        None => StringValue::from(method.to_string()),
    }
}

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
    pub context: SpanContext,
    /// `client.address`: the TCP peer, or the address the proxy forwarded on the Unix socket
    /// (shared by both spans).
    pub client_address: Option<Arc<str>>,
    /// `client.port`: the TCP peer's.
    pub client_port: Option<u16>,
    /// `network.transport`: `tcp` or `unix`.
    pub transport: &'static str,
}

/// What the MCP layer tells a request's record of the message it carried: its method and
/// the tool or prompt it named, for the access log line (never its arguments). It carries
/// the request's User-Agent the other way, which the record has already looked up: the MCP
/// layer names a client that does not say who it is by it, and looking it up again among
/// the headers cost a request about 100 instructions (bench/instructions, profiled).
#[derive(Clone, Default)]
pub struct McpNote {
    noted: Arc<OnceLock<Noted>>,
    user_agent: Option<HeaderValue>,
}

/// The message a request carried.
pub struct Noted {
    pub method: Cow<'static, str>,
    /// `("tool", name)` or `("prompt", name)`.
    pub target: Option<(&'static str, Arc<str>)>,
    /// Who the client said it is (`clientInfo`), when anything observes operations.
    pub client: Option<Arc<str>>,
}

impl McpNote {
    /// Says what the request carried; only the first message counts.
    pub fn set(&self, noted: Noted) {
        let _ = self.noted.set(noted);
    }

    /// The request's User-Agent, when it is text.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_ref()?.to_str().ok()
    }
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
    /// For a request to the MCP endpoint: what its message was.
    mcp: Option<McpNote>,
    /// With export on: the span, the route and the transport, for the span and the metric.
    export: Option<(Export, Span, Option<Arc<str>>, &'static str)>,
    /// Who is told of the request when it is finished (the console).
    observer: Option<Arc<dyn ExchangeObserver>>,
    /// The accepted key's label (`--api-key-file`), for the observer.
    key_label: Option<Arc<str>>,
}

impl Record {
    /// Starts the record (and, with `export`, the HTTP server span, which it leaves in the
    /// request's extensions as [`HttpSpan`]). `peer`: the connection's other end; `shown`:
    /// the path to record instead of the request's (which may hold a key); `route`: the
    /// matched route template.
    pub fn start(
        request: &mut Request,
        peer: Option<Peer>,
        address: ClientAddr,
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
            client: Client::of(peer, address, request.headers()),
            user_agent: request.headers().get(header::USER_AGENT).cloned(),
            mcp: None,
            export: None,
            observer: None,
            key_label: None,
        };
        if let Some(export) = export {
            let transport = transport(peer);
            let client_address = record.client.as_ref().map(|c| Arc::from(c.to_string()));
            let route = route.map(Arc::<str>::from);
            let span = record.span(export, route.as_ref(), transport, client_address.clone());
            request.extensions_mut().insert(HttpSpan {
                context: span.context().clone(),
                client_address,
                client_port: match peer {
                    Some(Peer::Tcp(addr)) => Some(addr.port()),
                    _ => None,
                },
                transport,
            });
            record.export = Some((export.clone(), span, route, transport));
        }
        record
    }

    /// The request goes to the MCP endpoint: the handler notes its message (`McpNote`, in
    /// the request's extensions) for the log line.
    pub fn await_mcp_note(&mut self, request: &mut Request) {
        let note = McpNote {
            noted: Arc::default(),
            user_agent: self.user_agent.clone(),
        };
        request.extensions_mut().insert(note.clone());
        self.mcp = Some(note);
    }

    /// Tells `observer` of the request when it is finished.
    pub fn tell(&mut self, observer: &Arc<dyn ExchangeObserver>) {
        self.observer = Some(observer.clone());
    }

    /// Hands the finished request to the observer, with the error body's [`Refusal`].
    fn tell_observer(
        &self,
        status: StatusCode,
        auth: Option<AuthMethod>,
        refusal: Option<&Refusal>,
        duration: std::time::Duration,
    ) {
        let Some(observer) = &self.observer else {
            return;
        };
        let user_agent = self.user_agent();
        let noted = self.mcp.as_ref().and_then(|note| note.noted.get());
        // A key refused (401, 403, 429) is presented, not accepted: no client is taken as
        // authenticated by it.
        let refused = matches!(status.as_u16(), 401 | 403 | 429);
        observer.finished(&Exchange {
            status: status.as_u16(),
            error: refusal.map(|r| (r.error, &*r.description)),
            client: self.client.as_ref(),
            method: self.method.as_str(),
            path: self.path.as_str(),
            user_agent: user_agent.as_deref(),
            auth: auth.filter(|_| !refused),
            key_label: self.key_label.as_deref().filter(|_| !refused),
            mcp_method: noted.map(|n| &*n.method),
            mcp_client: noted.and_then(|n| n.client.as_deref()),
            duration,
        });
    }

    /// The request was let in with a key that has this label.
    pub fn key_label(&mut self, label: Option<Arc<str>>) {
        self.key_label = label;
    }

    fn user_agent(&self) -> Option<Cow<'_, str>> {
        self.user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
    }

    fn span(
        &self,
        export: &Export,
        route: Option<&Arc<str>>,
        transport: &'static str,
        client_address: Option<Arc<str>>,
    ) -> Span {
        let method = &self.method;
        let name = match route {
            Some(route) => Cow::Owned(format!("{method} {route}")),
            None => Cow::Owned(method.to_string()),
        };
        let path = self.path.as_str();
        let mut attributes = Vec::with_capacity(9);
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, method_value(method)));
        attributes.push(KeyValue::new(
            URL_PATH,
            match route {
                // The common case: the path is the route, one string for both.
                Some(route) if **route == *path => StringValue::from(route.clone()),
                _ => StringValue::from(path.to_owned()),
            },
        ));
        attributes.push(KeyValue::new(NETWORK_TRANSPORT, transport));
        if let Some(query) = &self.query {
            attributes.push(KeyValue::new(URL_QUERY, query.clone()));
        }
        if let Some(route) = route {
            attributes.push(KeyValue::new(HTTP_ROUTE, route.clone()));
        }
        if let Some(client) = client_address {
            attributes.push(KeyValue::new(CLIENT_ADDRESS, client));
        }
        if let Some(user_agent) = self.user_agent() {
            attributes.push(KeyValue::new(
                "user_agent.original",
                user_agent.into_owned(),
            ));
        }
        export.tracer.start(Start {
            name,
            kind: SpanKind::Server,
            attributes,
            parent: None,
            links: Vec::new(),
        })
    }

    /// Writes the access log line, ends the span, records `http.server.request.duration`
    /// and tells a refusal. `auth`: how the key came, when one was accepted; `refusal`: the
    /// answer's, when it was an error body.
    pub fn finish(
        mut self,
        status: StatusCode,
        auth: Option<AuthMethod>,
        refusal: Option<&Refusal>,
    ) {
        let elapsed = self.start.elapsed();
        self.tell_observer(status, auth, refusal, elapsed);
        if let Some((export, mut span, route, transport)) = self.export.take() {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_server_error() {
                span.set_status(Status::error(""));
            }
            span.end();
            // An array, not a `Vec`: this runs on every request.
            let mut attributes = [
                KeyValue::new(HTTP_REQUEST_METHOD, method_value(&self.method)),
                KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status.as_u16())),
                KeyValue::new(NETWORK_TRANSPORT, transport),
                KeyValue::new(HTTP_ROUTE, ""),
            ];
            let given = match route {
                Some(route) => {
                    attributes[3] = KeyValue::new(HTTP_ROUTE, route);
                    4
                }
                None => 3,
            };
            export
                .metrics
                .http_request
                .record(elapsed.as_secs_f64(), &attributes[..given]);
        }
        let user_agent = self.user_agent();
        let noted = self.mcp.as_ref().and_then(|note| note.noted.get());
        Line {
            mcp_method: noted.map(|n| &*n.method),
            mcp_target: noted.and_then(|n| n.target.as_ref().map(|(k, v)| (*k, &**v))),
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
