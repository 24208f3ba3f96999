//! The clients view: each client seen (`activity::clients`), by what it says of itself or
//! its User-Agent, how it authenticated, and its connection timeline — what a person reads
//! when "the connector could not be created". With `--oauth`, the grants, each with a revoke
//! button (a POST with the session's CSRF token).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::page::{document, header, ms, respond, see_other};
use super::paths::{CLIENTS, REVOKE};
use super::sessions::Session;
use super::sign_in::form_session;
use super::state::Console;
use crate::activity::{ClientRow, Step};
use crate::html::escape;
use crate::oauth::GrantShown;

fn at(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

fn step_row(step: &Step) -> String {
    let status_class = if step.status >= 400 { "error" } else { "ok" };
    let flag = step
        .too_slow
        .map(|why| format!("<span class=\"slow\">{}</span>", escape(why)))
        .unwrap_or_default();
    format!(
        "<tr><td>{at}</td><td>{method} {path}</td><td>{mcp}</td>\
         <td class=\"{status_class}\">{status} {error}</td><td class=\"n\">{duration}</td>\
         <td>{flag}</td></tr>",
        at = at(step.at_ms),
        method = escape(&step.method),
        path = escape(&step.path),
        mcp = escape(step.mcp_method.as_deref().unwrap_or("")),
        status = step.status,
        error = escape(step.error.as_deref().unwrap_or("")),
        duration = ms(Some(step.duration_ms)),
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn client_card(client: &ClientRow) -> String {
    let name = match &client.name {
        Some(name) => format!(
            "{} <small>({})</small>",
            escape(name),
            escape(&client.agent)
        ),
        None => escape(&client.agent),
    };
    let mut auth = if client.auth.is_empty() {
        "never authenticated".to_owned()
    } else {
        format!("authenticated by {}", client.auth.join(", "))
    };
    if !client.keys.is_empty() {
        let keys: Vec<String> = client.keys.iter().map(|k| escape(k)).collect();
        auth.push_str(&format!(
            " with the key{} {}",
            plural(keys.len()),
            keys.join(", ")
        ));
    }
    let steps: String = client.steps.iter().map(step_row).collect();
    format!(
        "<section class=\"client\"><h3>{name}</h3>\
         <p>{auth}; {requests} request(s), first {first}, last {last} from {address}</p>\
         <table><thead><tr><th>time</th><th>request</th><th>MCP</th><th>status</th>\
         <th>ms</th><th></th></tr></thead><tbody>{steps}</tbody></table></section>",
        requests = client.requests,
        first = at(client.first_ms),
        last = at(client.last_ms),
        address = escape(client.address.as_deref().unwrap_or("an unknown address")),
    )
}

fn grant_row(console: &Console, session: &Session, grant: &GrantShown) -> String {
    let seconds = |s: u64| at(s.saturating_mul(1000));
    format!(
        "<tr><td>{name}</td><td><code>{id}</code></td><td>{created}</td><td>{refreshed}</td>\
         <td><form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"client\" value=\"{id}\">\
         <button type=\"submit\">Revoke</button></form></td></tr>",
        name = escape(grant.client_name.as_deref().unwrap_or("(unnamed)")),
        id = escape(&grant.client_id),
        created = seconds(grant.created_at),
        refreshed = seconds(grant.refreshed_at),
        action = escape(&console.path(REVOKE)),
        csrf = escape(session.csrf()),
    )
}

fn grants(console: &Console, session: &Session) -> String {
    let Some(oauth) = console.oauth() else {
        return String::new();
    };
    let grants = oauth.grants_shown();
    if grants.is_empty() {
        return "<h2>OAuth grants</h2><p class=\"empty\">No client holds a grant.</p>".to_owned();
    }
    let rows: String = grants
        .iter()
        .map(|g| grant_row(console, session, g))
        .collect();
    format!(
        "<h2>OAuth grants</h2><table><thead><tr><th>client</th><th>id</th><th>granted</th>\
         <th>refreshed</th><th></th></tr></thead><tbody id=\"grants\">{rows}</tbody></table>"
    )
}

fn page(console: &Console, session: &Session) -> Response {
    let clients = console.clients().recent();
    let content = if clients.is_empty() {
        "<p class=\"empty\">No client has connected yet.</p>".to_owned()
    } else {
        clients.iter().map(client_card).collect()
    };
    let body = format!(
        "{header}<main>{grants}<h2>Clients</h2>\
         <p>Each client's connection, step by step: discovery, the 401, metadata, \
         registration, authorize, token, <code>initialize</code> and the first \
         <code>tools/list</code>. Later calls are in the calls view.</p>{content}</main>",
        header = header(console, session, Some(CLIENTS)),
        grants = grants(console, session),
    );
    respond(
        StatusCode::OK,
        document(console, "Clients – latchkey", &body),
    )
}

/// The clients view when signed in, the sign-in page otherwise.
pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.session(&headers) {
        Some(session) => page(&console, &session),
        None => super::page::sign_in(&console, StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
pub(super) struct Revoke {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client: String,
}

/// Revokes a client's grants and registration, when the form carries the session's token.
pub(super) async fn revoke(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Revoke>,
) -> Response {
    if let Err(answer) = form_session(&console, &headers, &form.csrf) {
        return *answer;
    }
    let Some(oauth) = console.oauth() else {
        return (StatusCode::NOT_FOUND, "OAuth is off (--oauth).").into_response();
    };
    match oauth.revoke_client(&form.client) {
        Ok((registrations, grants)) => {
            tracing::info!("console: revoked {grants} grant(s), {registrations} registration(s)");
            see_other(&console.path(CLIENTS), None)
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The grant could not be revoked: {e:#}"),
        )
            .into_response(),
    }
}
