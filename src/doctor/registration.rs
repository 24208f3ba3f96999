//! `--register`: a registration made as ChatGPT and Claude make theirs (RFC 7591), one per
//! redirect URI so that a refusal names the one refused, each deleted again at once through
//! the `registration_client_uri` and token its answer holds (RFC 7592). Without the flag
//! nothing is written on the server: the metadata alone is read.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::probe::Probe;
use super::report::Check;
use super::target::Client;

/// One trial registration a redirect URI `client` uses, at `endpoint`, each removed again.
pub async fn trial(probe: &Probe, endpoint: &str, client: Client) -> Vec<Check> {
    if client.redirect_uris().is_empty() {
        return vec![not_tried(client)];
    }
    let mut checks = Vec::new();
    for uri in client.redirect_uris() {
        checks.push(register(probe, endpoint, uri).await);
    }
    checks
}

/// The line said when `--register` was not given.
pub fn not_tried(client: Client) -> Check {
    let id = "oauth.register";
    if client.redirect_uris().is_empty() {
        return Check::skip(
            id,
            "not tried: Claude Code registers a loopback redirect URI, which every server takes",
        );
    }
    Check::skip(
        id,
        "not tried: --register registers as the client would, to see its redirect URI accepted, and removes the registration",
    )
}

async fn register(probe: &Probe, endpoint: &str, uri: &str) -> Check {
    let metadata = serde_json::json!({
        "client_name": "latchkey doctor (a trial, removed at once)",
        "redirect_uris": [uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let request = probe
        .request(Method::POST, endpoint)
        .header(CONTENT_TYPE, "application/json")
        .body(metadata.to_string());
    let id = "oauth.register";
    let answer = match probe.send(request).await {
        Ok(answer) => answer,
        Err(error) => {
            return Check::fail(
                id,
                format!("registering {uri}: {error}"),
                "let the registration endpoint reach latchkey",
            );
        }
    };
    let registered: Value = serde_json::from_str(&answer.body).unwrap_or_default();
    if !answer.status.is_success() || !registered["client_id"].is_string() {
        let said = registered["error_description"]
            .as_str()
            .or(registered["error"].as_str())
            .unwrap_or("no OAuth error");
        let said: String = said.chars().take(200).filter(|c| !c.is_control()).collect();
        let fix = if answer.status == StatusCode::TOO_MANY_REQUESTS {
            "too many registrations from this address: retry after the server's Retry-After"
        } else {
            "allow this redirect URI on the authorization server (latchkey takes ChatGPT's and Claude's)"
        };
        return Check::fail(
            id,
            format!("registering {uri}: {} ({said})", answer.status),
            fix,
        )
        .took(answer.ms);
    }
    let removed = remove(probe, endpoint, &registered).await;
    let seen = format!("registering {uri}: {}, {removed}", answer.status);
    match removed {
        Removed::Yes => Check::pass(id, seen),
        Removed::No(_) => Check::warn(
            id,
            seen,
            "remove the trial client on the server (`latchkey oauth revoke`; latchkey forgets unused ones after a day)",
        ),
    }
    .took(answer.ms)
}

enum Removed {
    Yes,
    No(String),
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removed::Yes => f.write_str("removed again"),
            Removed::No(why) => write!(f, "left registered: {why}"),
        }
    }
}

/// Deletes the registration through what its answer gives for that.
async fn remove(probe: &Probe, endpoint: &str, registered: &Value) -> Removed {
    let (Some(uri), Some(token)) = (
        registered["registration_client_uri"].as_str(),
        registered["registration_access_token"].as_str(),
    ) else {
        return Removed::No("the server offers no way to delete it (RFC 7592)".into());
    };
    // The token goes nowhere but the server that registered: not to another origin.
    let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
    if origin(uri).is_none() || origin(uri) != origin(endpoint) {
        return Removed::No("its registration_client_uri is on another server".into());
    }
    let request = probe
        .request(Method::DELETE, uri)
        .header(AUTHORIZATION, format!("Bearer {token}"));
    match probe.send(request).await {
        Ok(answer)
            if answer.status == StatusCode::NO_CONTENT || answer.status == StatusCode::OK =>
        {
            Removed::Yes
        }
        Ok(answer) => Removed::No(format!("deleting it got {}", answer.status)),
        Err(error) => Removed::No(format!("deleting it: {error}")),
    }
}
