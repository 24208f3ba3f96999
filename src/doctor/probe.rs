//! How the HTTP checks send: one client that goes through `--resolve`'s addresses, trusts
//! what the TLS check trusts, follows no redirect and uses no proxy; an error is shown without
//! its URL (reqwest's would hold the key), down to its cause; an answer is read up to 1 MiB,
//! each request given 20 s.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{Method, StatusCode};
use rustls::pki_types::CertificateDer;
use secrecy::ExposeSecret as _;
use serde_json::Value;

use super::network::{PATIENCE, Resolve};
use super::report::Check;
use super::target::{KeyForm, Target};
use crate::auth::API_KEY_HEADER;

/// The User-Agent of the doctor's own requests, which no rule should single out.
pub const OWN_AGENT: &str = concat!("latchkey-doctor/", env!("CARGO_PKG_VERSION"));
pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"latchkey-doctor","version":"1"}}}"#;
pub const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
pub const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

/// What the HTTP checks send with.
pub struct Probe {
    http: reqwest::Client,
}

/// Where an MCP request carries the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Not at all.
    Bare,
    /// Where the URL (or `--key`) has it.
    AsGiven,
    /// In `form` instead: a form that works where the given one is refused is one that
    /// something in front drops.
    As(KeyForm),
    /// In `Authorization: Bearer` alone, as OAuth's tokens travel.
    BearerOnly,
}

/// An answer, read up to [`MAX_BODY`].
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub ms: u64,
}

impl Answer {
    pub fn is_json(&self) -> bool {
        self.header(CONTENT_TYPE)
            .is_some_and(|t| t.starts_with("application/json"))
    }

    pub fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC message in the body: JSON, or the first `data:` of an event stream.
    pub fn message(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok().or_else(|| {
            self.body
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .and_then(|d| serde_json::from_str(d.trim()).ok())
        })
    }

    /// Whether it is a successful `initialize`'s.
    pub fn initialized(&self) -> bool {
        self.status == StatusCode::OK
            && self
                .message()
                .is_some_and(|m| m["result"]["protocolVersion"].is_string())
    }
}

impl Probe {
    pub fn new(
        target: &Target,
        overrides: &[Resolve],
        trusted: &[CertificateDer<'static>],
    ) -> anyhow::Result<Self> {
        let roots: Vec<reqwest::Certificate> = trusted
            .iter()
            .filter_map(|der| reqwest::Certificate::from_der(der).ok())
            .collect();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(PATIENCE)
            .timeout(Duration::from_secs(20))
            .tls_certs_only(roots)
            // As a client on the internet meets the server: not through this machine's proxy
            // (which would see the query's key, and make --resolve moot).
            .no_proxy();
        let (host, port) = (target.host().to_ascii_lowercase(), target.port());
        let given: Vec<std::net::SocketAddr> = overrides
            .iter()
            .filter(|r| r.host == host && r.port == port)
            .map(|r| std::net::SocketAddr::new(r.addr, r.port))
            .collect();
        if !given.is_empty() {
            builder = builder.resolve_to_addrs(&host, &given);
        }
        Ok(Probe {
            http: builder
                .build()
                .map_err(|e| anyhow::anyhow!("cannot make an HTTP client: {}", e.without_url()))?,
        })
    }

    pub fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// One request; `Err` is what went wrong, without the URL.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let started = Instant::now();
        let response = request.send().await.map_err(said)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_bounded(response).await;
        Ok(Answer {
            status,
            headers,
            body,
            ms: super::report::ms_since(started),
        })
    }

    /// An MCP `POST` of `body` to the endpoint, the key `sent` so, as `agent`.
    pub fn mcp_post(
        &self,
        target: &Target,
        sent: Sent,
        agent: &str,
        body: &'static str,
    ) -> reqwest::RequestBuilder {
        let (url, header_key) = match sent {
            Sent::Bare => (target.bare(), None),
            Sent::AsGiven => (target.keyed().clone(), target.header_key()),
            Sent::As(form) => target.keyed_as(form),
            Sent::BearerOnly => (target.bare(), None),
        };
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header(USER_AGENT, agent)
            .body(body);
        if let Some(key) = header_key {
            request = request
                .header(AUTHORIZATION, format!("Bearer {}", key.expose_secret()))
                .header(API_KEY_HEADER, key.expose_secret());
        }
        if let (Sent::BearerOnly, Some(key)) = (sent, target.key()) {
            request = request.header(AUTHORIZATION, format!("Bearer {}", key.expose_secret()));
        }
        request
    }
}

/// A step that answered, against what the client waits.
pub fn timed(id: &'static str, what: &str, ms: u64, budget: Duration) -> Check {
    let budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
    let check = if ms > budget_ms {
        Check::fail(
            id,
            format!("{what}, in {ms} ms"),
            format!(
                "clients give up after about {} s: find what makes it slow (an upstream starting, a slow proxy)",
                budget.as_secs()
            ),
        )
    } else {
        Check::pass(id, what.to_owned())
    };
    check.took(ms)
}

/// What went wrong with a request, down to its cause ("error sending request" alone says
/// nothing: "connection refused" or "certificate expired" does), without the URL.
pub fn said(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper's layers repeat their inner error's words.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The most of an answer's body read: a server (or what is in front of it) may send any, and
/// every document checked is a few KiB.
const MAX_BODY: usize = 1 << 20;

/// The body's first [`MAX_BODY`] bytes, as text; what could not be read is left out. An
/// event stream is read to its first event (the answer), not to its end, which a server
/// keeping it open would make the request's timeout.
async fn read_bounded(mut response: reqwest::Response) -> String {
    let stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let answered = stream && {
            let text = String::from_utf8_lossy(&body).replace("\r\n", "\n");
            let events: Vec<&str> = text.split("\n\n").collect();
            // All but the last piece are events that ended.
            events[..events.len() - 1]
                .iter()
                .any(|event| event.lines().any(|l| l.starts_with("data:")))
        };
        if body.len() == MAX_BODY || answered {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
