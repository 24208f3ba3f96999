//! The MCP endpoint's checks: `initialize` without the key (401 and how to sign in) and with
//! it, in the form the client sends; when refused, the same key in another form, which tells a
//! key latchkey does not know from a form something in front drops; who answers (latchkey's
//! name and version) and HSTS; `tools/list`; the event stream; whether `Authorization`
//! reaches the server; and the same `initialize` with each client's User-Agent.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, USER_AGENT, WWW_AUTHENTICATE};
use secrecy::ExposeSecret as _;
use serde_json::Value;

use super::probe::{Answer, INITIALIZE, INITIALIZED, OWN_AGENT, Probe, Sent, TOOLS_LIST, timed};
use super::report::Check;
use super::target::{Client, KeyForm, Target};
use crate::auth::API_KEY_HEADER;

/// `initialize` without the key: 401 with `WWW-Authenticate` (with `resource_metadata`
/// when the server does OAuth).
pub async fn without_key(probe: &Probe, target: &Target) -> Check {
    let answer = match probe
        .send(probe.mcp_post(target, Sent::Bare, OWN_AGENT, INITIALIZE))
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
    match (answer.status, answer.header(WWW_AUTHENTICATE)) {
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
/// and whether the key was taken (a key refused is not sent again: each refusal counts
/// toward the lockout).
pub async fn with_key(
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
        .send(probe.mcp_post(target, Sent::AsGiven, agent, INITIALIZE))
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
    if !answer.initialized() {
        checks.push(refused(probe, target, &answer, form).await);
        return (checks, answer.status != StatusCode::UNAUTHORIZED);
    }
    checks.push(timed(
        "mcp.initialize",
        "initialize with the key: 200",
        answer.ms,
        client.connect_budget(),
    ));
    checks.extend(identity(target, &answer));
    let session = answer.headers.get("mcp-session-id").cloned();
    checks.push(tools(probe, target, agent, session.as_ref()).await);
    checks.push(stream(probe, target, agent, session.as_ref()).await);
    if form != KeyForm::Header {
        checks.push(authorization(probe, target, agent, oauth).await);
    }
    (checks, true)
}

/// Why `initialize` with the key did not work: for a 401, the key tried once in another form
/// (the query and the path against a header; a header against the query).
async fn refused(probe: &Probe, target: &Target, answer: &Answer, form: KeyForm) -> Check {
    let seen = format!("initialize with {}: {}", form.words(), answer.status);
    match answer.status {
        StatusCode::UNAUTHORIZED => {}
        StatusCode::TOO_MANY_REQUESTS => {
            return Check::fail(
                "mcp.initialize",
                seen,
                "this address is locked out after wrong keys: wait for --lockout (15 min by default), or unlock it in latchkey's console",
            );
        }
        StatusCode::NOT_FOUND => return not_found(answer, seen),
        _ => {
            return Check::fail(
                "mcp.initialize",
                seen,
                "check that the URL is latchkey's MCP endpoint (…/mcp)",
            );
        }
    }
    let other = match form {
        KeyForm::Query | KeyForm::Path => KeyForm::Header,
        KeyForm::Header => KeyForm::Query,
    };
    let retried = probe
        .send(probe.mcp_post(target, Sent::As(other), OWN_AGENT, INITIALIZE))
        .await;
    if !retried.as_ref().is_ok_and(Answer::initialized) {
        return Check::fail(
            "mcp.initialize",
            format!("{seen}, and as {} too", other.words()),
            "latchkey does not know this key: compare it with the key file (`latchkey url` prints the URL with it)",
        );
    }
    let fix = match form {
        KeyForm::Query => {
            "something in front drops the query string (Apache: a RewriteRule to a fixed URL, or without QSA): pass it on, or put the key in the path"
        }
        KeyForm::Path => {
            "something in front rewrites the path, and the key's segment does not reach latchkey: proxy …/mcp/ and everything under it unchanged"
        }
        KeyForm::Header => {
            "something in front strips Authorization and X-API-Key (Apache: RequestHeader unset): let them through"
        }
    };
    Check::fail(
        "mcp.initialize",
        format!("{seen}, but as {}: 200", other.words()),
        fix,
    )
}

/// A 404 for a key that was taken: latchkey says where its MCP endpoint is.
fn not_found(answer: &Answer, seen: String) -> Check {
    let said: Option<Value> = serde_json::from_str(&answer.body).ok();
    let at = said
        .as_ref()
        .filter(|s| s["error"] == "not_found")
        .and_then(|s| s["error_description"].as_str())
        .and_then(|d| d.strip_prefix("Nothing here: MCP is served at "))
        .map(|at| at.trim_end_matches('.'));
    match at {
        Some(at) => Check::fail(
            "mcp.path",
            format!("{seen}: latchkey took the key, but serves MCP at {at}"),
            format!(
                "end the URL's path with {at} (behind a proxy, its prefix and latchkey's --base-path must be the same)"
            ),
        ),
        None => Check::fail(
            "mcp.initialize",
            seen,
            "check that the URL is latchkey's MCP endpoint (…/mcp)",
        ),
    }
}

/// Who answered `initialize` (latchkey says its name and version), and, over https, HSTS.
fn identity(target: &Target, answer: &Answer) -> Vec<Check> {
    let message = answer.message().unwrap_or_default();
    let info = &message["result"]["serverInfo"];
    let (name, version) = (
        info["name"].as_str().unwrap_or("?"),
        info["version"].as_str().unwrap_or("?"),
    );
    let latchkey = name == "latchkey";
    let mut checks = vec![if !latchkey {
        Check::pass("server", format!("{name} {version} answers (not latchkey)"))
    } else if version == env!("CARGO_PKG_VERSION") {
        Check::pass("server", format!("latchkey {version}, as this doctor"))
    } else {
        Check::pass(
            "server",
            format!(
                "latchkey {version} (this doctor is {})",
                env!("CARGO_PKG_VERSION")
            ),
        )
    }];
    if target.https() {
        checks.push(match answer.header("strict-transport-security") {
            Some(hsts) => Check::pass("tls.hsts", format!("Strict-Transport-Security: {hsts}")),
            None if latchkey => Check::warn(
                "tls.hsts",
                "no Strict-Transport-Security",
                "serve with --hsts (on by default with --acme-domain), or set it in the proxy in front",
            ),
            None => Check::warn(
                "tls.hsts",
                "no Strict-Transport-Security",
                "send Strict-Transport-Security, so that a browser never tries plain http",
            ),
        });
    }
    checks
}

/// `tools/list`: how many tools a client will see.
async fn tools(
    probe: &Probe,
    target: &Target,
    agent: &str,
    session: Option<&HeaderValue>,
) -> Check {
    let with_session = |body| {
        let request = probe.mcp_post(target, Sent::AsGiven, agent, body);
        match session {
            Some(id) => request.header("mcp-session-id", id.clone()),
            None => request,
        }
    };
    if session.is_some() {
        let _ = probe.send(with_session(INITIALIZED)).await;
    }
    let answer = match probe.send(with_session(TOOLS_LIST)).await {
        Ok(answer) if answer.status == StatusCode::OK => answer,
        Ok(answer) => {
            return Check::fail(
                "mcp.tools",
                format!("tools/list: {}", answer.status),
                "check latchkey's log for the request",
            );
        }
        Err(error) => {
            return Check::fail(
                "mcp.tools",
                format!("tools/list: {error}"),
                "check latchkey's log for the request",
            );
        }
    };
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
        Some(n) => Check::pass("mcp.tools", format!("tools/list: {n} tool(s)")).took(answer.ms),
        None => Check::fail(
            "mcp.tools",
            "tools/list: 200 without a list of tools",
            "check that the URL is latchkey's MCP endpoint",
        ),
    }
}

/// `GET` of the endpoint's event stream: an event stream, not 405 (a proxy that refuses GET).
async fn stream(
    probe: &Probe,
    target: &Target,
    agent: &str,
    session: Option<&HeaderValue>,
) -> Check {
    let mut request = probe
        .request(reqwest::Method::GET, target.keyed().clone())
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
            format!("GET of the event stream: {}", super::probe::said(error)),
            "check that nothing in front buffers or refuses the stream",
        ),
    }
}

/// The key as `Authorization: Bearer` alone: OAuth's tokens travel so, and Claude Code's
/// header configurations; a proxy that strips it breaks them though the URL's key works.
async fn authorization(probe: &Probe, target: &Target, agent: &str, oauth: bool) -> Check {
    let answer = probe
        .send(probe.mcp_post(target, Sent::BearerOnly, agent, INITIALIZE))
        .await;
    match answer {
        Ok(answer) if answer.initialized() => {
            Check::pass("mcp.bearer", "Authorization: Bearer reaches latchkey")
        }
        Ok(answer) if answer.status == StatusCode::UNAUTHORIZED => {
            let seen = "the key as Authorization: Bearer: 401, where the URL's key is taken";
            let fix = "something in front strips the Authorization header (Apache: RequestHeader unset Authorization): let it through";
            if oauth {
                Check::fail(
                    "mcp.bearer",
                    seen,
                    format!("{fix} — OAuth's tokens travel in it"),
                )
            } else {
                Check::warn(
                    "mcp.bearer",
                    seen,
                    format!("{fix}, for OAuth and header-sending clients"),
                )
            }
        }
        Ok(answer) => Check::warn(
            "mcp.bearer",
            format!("the key as Authorization: Bearer: {}", answer.status),
            "check latchkey's log for the request",
        ),
        Err(error) => Check::warn(
            "mcp.bearer",
            format!("the key as Authorization: Bearer: {error}"),
            "check that nothing in front refuses the header",
        ),
    }
}

/// The same `initialize` with each of the client's User-Agents and with the doctor's own:
/// a difference is a rule in front (a CDN's or WAF's "block AI bots").
pub async fn user_agents(
    probe: &Probe,
    target: &Target,
    client: Client,
    keyed: bool,
) -> Vec<Check> {
    let sent = if keyed { Sent::AsGiven } else { Sent::Bare };
    let own = probe
        .send(probe.mcp_post(target, sent, OWN_AGENT, INITIALIZE))
        .await
        .map(|a| a.status);
    let mut checks = Vec::new();
    for agent in client.user_agents() {
        let theirs = probe
            .send(probe.mcp_post(target, sent, agent, INITIALIZE))
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
