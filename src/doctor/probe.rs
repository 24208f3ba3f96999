//! The HTTP checks: the MCP endpoint with the key and without, its event stream, the
//! well-known paths, and the same requests with each client's User-Agent. Requests go
//! through `--resolve`'s addresses and trust what the TLS check trusts; an error is shown
//! without its URL (reqwest's would hold the key); an answer is read up to 1 MiB, each
//! request given 20 s.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use rustls::pki_types::CertificateDer;
use secrecy::ExposeSecret as _;
use serde_json::Value;

use super::network::{PATIENCE, Resolve};
use super::report::Check;
use super::target::{Client, KeyForm, Target};
use crate::auth::API_KEY_HEADER;

/// The User-Agent of the doctor's own requests, which no rule should single out.
const OWN_AGENT: &str = concat!("latchkey-doctor/", env!("CARGO_PKG_VERSION"));
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"latchkey-doctor","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

/// What the HTTP checks send with.
pub struct Probe {
    http: reqwest::Client,
}

/// An answer, read whole (bounded by the client's timeout).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
    ms: u64,
}

impl Answer {
    fn is_json(&self) -> bool {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"))
    }

    /// The JSON-RPC message in the body: JSON, or the first `data:` of an event stream.
    fn message(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok().or_else(|| {
            self.body
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .and_then(|d| serde_json::from_str(d.trim()).ok())
        })
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

    /// One request; `Err` is what went wrong, without the URL.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let started = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_bounded(response).await;
        Ok(Answer {
            status,
            headers,
            body,
            ms: ms(started),
        })
    }

    fn mcp_post(
        &self,
        target: &Target,
        keyed: bool,
        agent: &str,
        body: &'static str,
    ) -> reqwest::RequestBuilder {
        let url = if keyed {
            target.keyed().clone()
        } else {
            target.bare()
        };
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header(USER_AGENT, agent)
            .body(body);
        if let (true, Some(key)) = (keyed, target.header_key()) {
            request = request
                .header(AUTHORIZATION, format!("Bearer {}", key.expose_secret()))
                .header(API_KEY_HEADER, key.expose_secret());
        }
        request
    }
}

/// Every HTTP check, in the order a client meets them.
pub async fn checks(probe: &Probe, target: &Target, client: Client) -> Vec<Check> {
    let mut checks = Vec::new();
    let (discovery, oauth) = well_known(probe, target, client, &mut checks).await;
    checks.push(without_key(probe, target).await);
    let (with_key, accepted) = with_key(probe, target, client, oauth).await;
    checks.extend(with_key);
    // A key refused once is not sent again: each refusal counts toward the lockout.
    checks.extend(user_agents(probe, target, client, accepted).await);
    if let Some(ms) = discovery {
        let budget = client.connect_budget();
        checks.push(timed("discovery", "the well-known fetches", ms, budget));
    }
    checks
}

/// `initialize` without the key: 401 with `WWW-Authenticate` (with `resource_metadata`
/// when the server does OAuth).
async fn without_key(probe: &Probe, target: &Target) -> Check {
    let answer = match probe
        .send(probe.mcp_post(target, false, OWN_AGENT, INITIALIZE))
        .await
    {
        Ok(answer) => answer,
        Err(error) => {
            return Check::fail(
                "mcp.no_key",
                format!("POST without the key: {error}"),
                "check that the URL reaches latchkey",
            );
        }
    };
    let challenge = answer
        .headers
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok());
    match (answer.status, challenge) {
        (StatusCode::UNAUTHORIZED, Some(challenge)) => {
            let metadata = if challenge.contains("resource_metadata") {
                ", with resource_metadata"
            } else {
                ""
            };
            Check::pass(
                "mcp.no_key",
                format!("without the key: 401 and WWW-Authenticate{metadata}"),
            )
        }
        (StatusCode::UNAUTHORIZED, None) => Check::fail(
            "mcp.no_key",
            "without the key: 401 but no WWW-Authenticate",
            "let the WWW-Authenticate header through the proxy: clients read it to find how to sign in",
        ),
        (status, _) => Check::fail(
            "mcp.no_key",
            format!("without the key: {status}, not 401"),
            "check that the URL is latchkey's MCP endpoint and that nothing in front answers for it",
        ),
    }
}

/// `initialize`, `tools/list` and the event stream with the key, as the client sends it;
/// and whether the key was taken.
async fn with_key(
    probe: &Probe,
    target: &Target,
    client: Client,
    oauth: bool,
) -> (Vec<Check>, bool) {
    let Some(form) = target.key_form() else {
        let check = if oauth {
            Check::skip(
                "mcp.initialize",
                "no key in the URL and none given (--key-file): only OAuth clients get further",
            )
        } else {
            Check::fail(
                "mcp.initialize",
                "no key in the URL, and the server offers no OAuth: no client can get in",
                "put the key in the URL (/mcp/<key>, or ?api_key= for ChatGPT), or serve with --oauth",
            )
        };
        return (vec![check], false);
    };
    let mut checks = Vec::new();
    if !client.can_send(form) {
        checks.push(Check::fail(
            "key.form",
            format!("the key is sent as {}", form.words()),
            format!(
                "{} cannot send a key so: put it in the path (/mcp/<key>), or use --oauth",
                client.name()
            ),
        ));
    }
    let agent = client.user_agents()[0];
    let answer = match probe
        .send(probe.mcp_post(target, true, agent, INITIALIZE))
        .await
    {
        Ok(answer) => answer,
        Err(error) => {
            checks.push(Check::fail(
                "mcp.initialize",
                format!("initialize: {error}"),
                "check that the URL reaches latchkey",
            ));
            return (checks, false);
        }
    };
    let initialized = answer.status == StatusCode::OK
        && answer
            .message()
            .is_some_and(|m| m["result"]["protocolVersion"].is_string());
    if !initialized {
        checks.push(refused_initialize(&answer, form));
        return (checks, answer.status != StatusCode::UNAUTHORIZED);
    }
    checks.push(timed(
        "mcp.initialize",
        "initialize with the key: 200",
        answer.ms,
        client.connect_budget(),
    ));
    let session = answer.headers.get("mcp-session-id").cloned();
    checks.push(tools(probe, target, agent, session.as_ref()).await);
    checks.push(stream(probe, target, agent, session.as_ref()).await);
    (checks, true)
}

/// Why `initialize` with the key did not work, and what to do.
fn refused_initialize(answer: &Answer, form: KeyForm) -> Check {
    let seen = format!("initialize with the key: {}", answer.status);
    match (answer.status, form) {
        (StatusCode::UNAUTHORIZED, KeyForm::Query) => Check::fail(
            "mcp.initialize",
            seen,
            "the key in the query was refused: a proxy in front may drop the query string (Apache: RewriteRule without QSA, or ProxyPass to a fixed URL), or the key is not one latchkey has",
        ),
        (StatusCode::UNAUTHORIZED, KeyForm::Header) => Check::fail(
            "mcp.initialize",
            seen,
            "the key in the headers was refused: a proxy may strip Authorization and X-API-Key, or the key is not one latchkey has",
        ),
        (StatusCode::UNAUTHORIZED, KeyForm::Path) => Check::fail(
            "mcp.initialize",
            seen,
            "the key in the path was refused: a proxy may rewrite the path, or the key is not one latchkey has",
        ),
        _ => Check::fail(
            "mcp.initialize",
            seen,
            "check that the URL is latchkey's MCP endpoint (…/mcp)",
        ),
    }
}

/// `tools/list`: how many tools a client will see.
async fn tools(
    probe: &Probe,
    target: &Target,
    agent: &str,
    session: Option<&reqwest::header::HeaderValue>,
) -> Check {
    let with_session = |body| {
        let request = probe.mcp_post(target, true, agent, body);
        match session {
            Some(id) => request.header("mcp-session-id", id.clone()),
            None => request,
        }
    };
    if session.is_some() {
        let _ = probe.send(with_session(INITIALIZED)).await;
    }
    match probe.send(with_session(TOOLS_LIST)).await {
        Ok(answer) if answer.status == StatusCode::OK => {
            let count = answer
                .message()
                .and_then(|m| m["result"]["tools"].as_array().map(Vec::len));
            match count {
                Some(0) => Check::warn(
                    "mcp.tools",
                    "tools/list: no tools",
                    "give latchkey tools (an upstream, or the built-in ones)",
                )
                .took(answer.ms),
                Some(n) => {
                    Check::pass("mcp.tools", format!("tools/list: {n} tool(s)")).took(answer.ms)
                }
                None => Check::fail(
                    "mcp.tools",
                    "tools/list: 200 without a list of tools",
                    "check that the URL is latchkey's MCP endpoint",
                ),
            }
        }
        Ok(answer) => Check::fail(
            "mcp.tools",
            format!("tools/list: {}", answer.status),
            "check latchkey's log for the request",
        ),
        Err(error) => Check::fail(
            "mcp.tools",
            format!("tools/list: {error}"),
            "check latchkey's log for the request",
        ),
    }
}

/// `GET` of the endpoint's event stream: anything but 405 (a proxy that refuses GET).
async fn stream(
    probe: &Probe,
    target: &Target,
    agent: &str,
    session: Option<&reqwest::header::HeaderValue>,
) -> Check {
    let mut request = probe
        .http
        .get(target.keyed().clone())
        .header(ACCEPT, "text/event-stream")
        .header(USER_AGENT, agent)
        .timeout(Duration::from_secs(5));
    if let Some(key) = target.header_key() {
        request = request.header(API_KEY_HEADER, key.expose_secret());
    }
    if let Some(id) = session {
        request = request.header("mcp-session-id", id.clone());
    }
    match request.send().await {
        Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => Check::fail(
            "mcp.stream",
            "GET of the event stream: 405",
            "let GET through to latchkey's MCP endpoint, not only POST",
        ),
        Ok(response)
            if response.status() == StatusCode::OK
                && response
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.starts_with("text/event-stream")) =>
        {
            Check::pass(
                "mcp.stream",
                "GET of the event stream: 200, an event stream",
            )
        }
        Ok(response) => Check::warn(
            "mcp.stream",
            format!(
                "GET of the event stream: {}, not an event stream",
                response.status()
            ),
            "let GET with Accept: text/event-stream through to latchkey unchanged: clients open it after a while",
        ),
        Err(error) => Check::warn(
            "mcp.stream",
            format!("GET of the event stream: {}", error.without_url()),
            "check that nothing in front buffers or refuses the stream",
        ),
    }
}

/// The same `initialize` with each of the client's User-Agents and with the doctor's own:
/// a difference is a rule in front (a CDN's or WAF's "block AI bots").
async fn user_agents(probe: &Probe, target: &Target, client: Client, keyed: bool) -> Vec<Check> {
    let own = probe
        .send(probe.mcp_post(target, keyed, OWN_AGENT, INITIALIZE))
        .await
        .map(|a| a.status);
    let mut checks = Vec::new();
    for agent in client.user_agents() {
        let theirs = probe
            .send(probe.mcp_post(target, keyed, agent, INITIALIZE))
            .await
            .map(|a| a.status);
        checks.push(match (&own, theirs) {
            (Ok(own), Ok(theirs)) if *own == theirs => {
                Check::pass("user_agent", format!("{agent}: {theirs}, as any other"))
            }
            (Ok(own), Ok(theirs)) => Check::fail(
                "user_agent",
                format!("{agent}: {theirs}, where {OWN_AGENT} got {own}"),
                format!("something in front refuses the User-Agent {agent:?} (a CDN or WAF rule such as Cloudflare's \"Block AI bots\"): allow it for this host"),
            ),
            (Ok(own), Err(error)) => Check::fail(
                "user_agent",
                format!("{agent}: {error}, where {OWN_AGENT} got {own}"),
                "something in front drops this client's requests: allow its User-Agent",
            ),
            (Err(_), _) => Check::warn(
                "user_agent",
                format!("{agent}: not compared, the doctor's own request failed"),
                "check that the URL reaches latchkey, then run the doctor again",
            ),
        });
    }
    checks
}

/// The well-known documents, with GET and HEAD: JSON 404 without OAuth; with it, protected
/// resource metadata naming this URL and the authorization server's. Returns how long the
/// fetches took, when they answered, and whether the server offers OAuth.
async fn well_known(
    probe: &Probe,
    target: &Target,
    client: Client,
    checks: &mut Vec<Check>,
) -> (Option<u64>, bool) {
    let (origin, path) = target.origin_and_path();
    let prm_url = format!("{origin}/.well-known/oauth-protected-resource{path}");
    let mut total = 0;
    let mut oauth_offered = false;
    for method in [Method::HEAD, Method::GET] {
        let request = probe
            .http
            .request(method.clone(), &prm_url)
            .header(USER_AGENT, client.user_agents()[0]);
        let answer = match probe.send(request).await {
            Ok(answer) => answer,
            Err(error) => {
                checks.push(Check::fail(
                    "well_known",
                    format!("{method} /.well-known/oauth-protected-resource{path}: {error}"),
                    "check that /.well-known/ reaches latchkey",
                ));
                return (None, false);
            }
        };
        total += answer.ms;
        if method == Method::HEAD {
            if answer.status.is_server_error() || answer.status == StatusCode::METHOD_NOT_ALLOWED {
                checks.push(Check::fail(
                    "well_known",
                    format!(
                        "HEAD /.well-known/oauth-protected-resource{path}: {}",
                        answer.status
                    ),
                    "answer HEAD as GET (ChatGPT probes with HEAD)",
                ));
            }
            continue;
        }
        let shown = format!("/.well-known/oauth-protected-resource{path}");
        checks.push(match (answer.status, answer.is_json()) {
            (StatusCode::NOT_FOUND, true) => Check::pass("well_known", format!("GET {shown}: JSON 404 (no OAuth)")),
            (StatusCode::OK, true) => {
                oauth_offered = true;
                let (check, ms) = oauth(probe, target, client, &answer).await;
                total += ms;
                check
            }
            (StatusCode::OK, false) => Check::fail(
                "well_known",
                format!("GET {shown}: 200 that is not JSON (a catch-all page)"),
                "let /.well-known/ reach latchkey, or answer 404 there: a client takes a 200 for OAuth metadata",
            ),
            (status, _) => Check::fail(
                "well_known",
                format!("GET {shown}: {status}"),
                "let /.well-known/ reach latchkey: it answers JSON (404 without --oauth)",
            ),
        });
    }
    (Some(total), oauth_offered)
}

/// OAuth's metadata: the resource is this URL, and its authorization server advertises what
/// ChatGPT and Claude need (`S256`, `none`, registration, CIMD).
async fn oauth(probe: &Probe, target: &Target, client: Client, prm: &Answer) -> (Check, u64) {
    let Ok(document) = serde_json::from_str::<Value>(&prm.body) else {
        return (
            Check::fail(
                "oauth.prm",
                "the protected resource metadata is not JSON",
                "let latchkey answer it",
            ),
            0,
        );
    };
    let bare = target.bare();
    let resource = document["resource"].as_str().unwrap_or_default();
    let same = |a: &str, b: &str| {
        let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
        // As URLs: the host's case and a default port written out do not make another.
        match (Url::parse(a), Url::parse(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        }
    };
    if !same(resource, bare.as_str()) {
        let seen = format!("the protected resource metadata names {resource:?}, not {bare}");
        return (
            Check::fail(
                "oauth.prm",
                seen,
                "set --public-url to the URL clients use (the one pasted)",
            ),
            0,
        );
    }
    let Some(issuer) = document["authorization_servers"][0].as_str() else {
        return (
            Check::fail(
                "oauth.prm",
                "the protected resource metadata names no authorization server",
                "let latchkey answer it (--oauth)",
            ),
            0,
        );
    };
    // RFC 8414: the issuer's path goes after the well-known name.
    let as_url = match issuer
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
    {
        Some((_, path)) if !path.is_empty() => {
            let origin = &issuer[..issuer.len() - path.len() - 1];
            format!("{origin}/.well-known/oauth-authorization-server/{path}")
        }
        _ => format!(
            "{}/.well-known/oauth-authorization-server",
            issuer.trim_end_matches('/')
        ),
    };
    let answer = match probe.send(probe.http.get(&as_url)).await {
        Ok(answer) if answer.status == StatusCode::OK => answer,
        Ok(answer) => {
            return (
                Check::fail(
                    "oauth.as",
                    format!("authorization server metadata: {}", answer.status),
                    "let /.well-known/oauth-authorization-server reach latchkey",
                ),
                answer.ms,
            );
        }
        Err(error) => {
            return (
                Check::fail(
                    "oauth.as",
                    format!("authorization server metadata: {error}"),
                    "let /.well-known/oauth-authorization-server reach latchkey",
                ),
                0,
            );
        }
    };
    let metadata: Value = serde_json::from_str(&answer.body).unwrap_or_default();
    let lists = |field: &str, value: &str| {
        metadata[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == value))
    };
    let (dcr, cimd, none) = (
        metadata["registration_endpoint"].is_string(),
        metadata["client_id_metadata_document_supported"] == true,
        lists("token_endpoint_auth_methods_supported", "none"),
    );
    // Claude takes the metadata-document path only with `none` listed too, else registers
    // (../shared/notes: "Claude's CIMD path"); ChatGPT does either.
    let registers = match client {
        Client::Claude | Client::Any => dcr || (cimd && none),
        Client::Chatgpt | Client::ClaudeCode => dcr || cimd,
    };
    let missing: Vec<&str> = [
        (metadata["issuer"] == issuer, "its issuer"),
        (lists("code_challenge_methods_supported", "S256"), "S256"),
        (
            registers,
            "a way to register (registration_endpoint, or CIMD with none)",
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| what)
    .collect();
    let offered: Vec<&str> = [(dcr, "registration"), (cimd, "CIMD"), (none, "none")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, what)| what)
        .collect();
    let check = if missing.is_empty() {
        Check::pass(
            "oauth",
            format!(
                "OAuth metadata: the resource is this URL; S256, {} advertised",
                offered.join(", ")
            ),
        )
    } else {
        Check::fail(
            "oauth.as",
            format!("authorization server metadata lacks {}", missing.join(", ")),
            "serve the metadata latchkey --oauth writes: Claude needs registration, or CIMD with none; ChatGPT S256 and a way to register",
        )
    };
    (check, answer.ms)
}

/// A step that answered, against what the client waits.
fn timed(id: &'static str, what: &str, ms: u64, budget: Duration) -> Check {
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

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
