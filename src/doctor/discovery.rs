//! The well-known documents a client fetches before anything else: with GET and HEAD, a JSON
//! 404 without OAuth; with OAuth, the protected resource metadata naming the URL pasted and
//! the authorization server's metadata at RFC 8414's path, with what ChatGPT and Claude need
//! of it.

use reqwest::header::USER_AGENT;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::probe::{Answer, Probe};
use super::registration;
use super::report::Check;
use super::target::{Client, Target};

/// The well-known documents, with GET and HEAD: JSON 404 without OAuth; with it, protected
/// resource metadata naming this URL and the authorization server's. Returns how long the
/// fetches took, when they answered, and whether the server offers OAuth. With `register`,
/// a registration is tried (and removed).
pub async fn well_known(
    probe: &Probe,
    target: &Target,
    (client, register): (Client, bool),
    checks: &mut Vec<Check>,
) -> (Option<u64>, bool) {
    let (origin, path) = target.origin_and_path();
    let prm_url = format!("{origin}/.well-known/oauth-protected-resource{path}");
    let mut total = 0;
    let mut oauth_offered = false;
    for method in [Method::HEAD, Method::GET] {
        let request = probe
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
        if answer.status == StatusCode::OK && answer.is_json() {
            oauth_offered = true;
            let (check, ms, endpoint) = oauth(probe, target, client, &answer).await;
            total += ms;
            checks.push(check);
            if let Some(endpoint) = endpoint {
                checks.extend(match register {
                    true => registration::trial(probe, &endpoint, client).await,
                    false => vec![registration::not_tried(client)],
                });
            }
            continue;
        }
        let shown = format!("/.well-known/oauth-protected-resource{path}");
        checks.push(match (answer.status, answer.is_json()) {
            (StatusCode::NOT_FOUND, true) => Check::pass("well_known", format!("GET {shown}: JSON 404 (no OAuth)")),
            (StatusCode::OK, _) => Check::fail(
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
/// ChatGPT and Claude need (`S256`, `none`, registration, CIMD); and, when it does, its
/// registration endpoint.
async fn oauth(
    probe: &Probe,
    target: &Target,
    client: Client,
    prm: &Answer,
) -> (Check, u64, Option<String>) {
    let Ok(document) = serde_json::from_str::<Value>(&prm.body) else {
        return (
            Check::fail(
                "oauth.prm",
                "the protected resource metadata is not JSON",
                "let latchkey answer it",
            ),
            0,
            None,
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
            None,
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
            None,
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
    let answer = match probe.send(probe.request(Method::GET, &as_url)).await {
        Ok(answer) if answer.status == StatusCode::OK => answer,
        Ok(answer) => {
            return (
                Check::fail(
                    "oauth.as",
                    format!("authorization server metadata: {}", answer.status),
                    "let /.well-known/oauth-authorization-server reach latchkey",
                ),
                answer.ms,
                None,
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
                None,
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
    let endpoint = metadata["registration_endpoint"]
        .as_str()
        .filter(|_| missing.is_empty())
        .map(str::to_owned);
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
    (check, answer.ms, endpoint)
}
