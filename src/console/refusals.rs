//! The refusals view: the requests refused lately, why (the error body's words, never a
//! key), and the addresses locked out now, each with an unlock button (a POST with the
//! session's CSRF token).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::page::{document, header, respond, see_other};
use super::paths::REFUSALS;
use super::sessions::Session;
use super::sign_in::form_session;
use super::state::Console;
use crate::activity::RefusalRow;
use crate::html::escape;
use crate::lockout::Locked;

/// Locked-out addresses listed at most (the table holds up to `lockout::CAPACITY`).
const LOCKED_SHOWN: usize = 100;

fn at(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

fn refusal_row(row: &RefusalRow) -> String {
    format!(
        "<tr><td>{last}</td><td class=\"n\">{count}</td><td class=\"n\">{status}</td>\
         <td>{error}</td><td>{description}</td><td>{client}</td><td>{method} {path}</td>\
         <td>{agent}</td><td>{first}</td></tr>",
        last = at(row.last_ms),
        count = row.count,
        status = row.status,
        error = escape(&row.error),
        description = escape(&row.description),
        client = escape(row.client.as_deref().unwrap_or("")),
        method = escape(&row.method),
        path = escape(&row.path),
        agent = escape(row.user_agent.as_deref().unwrap_or("")),
        first = at(row.first_ms),
    )
}

fn locked_row(console: &Console, session: &Session, locked: &Locked) -> String {
    format!(
        "<tr><td>{who}</td><td class=\"n\">{failures}</td><td class=\"n\">{minutes}</td>\
         <td><form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"who\" value=\"{who}\">\
         <button type=\"submit\">Unlock</button></form></td></tr>",
        who = escape(&locked.who),
        failures = locked.failures,
        minutes = locked.retry_after.as_secs().div_ceil(60),
        action = escape(&console.path(super::paths::UNLOCK)),
        csrf = escape(session.csrf()),
    )
}

fn page(console: &Console, session: &Session) -> Response {
    let locked = console.lockout().locked(LOCKED_SHOWN);
    let locked = if locked.is_empty() {
        "<p class=\"empty\">No address is locked out.</p>".to_owned()
    } else {
        let rows: String = locked
            .iter()
            .map(|l| locked_row(console, session, l))
            .collect();
        format!(
            "<table><thead><tr><th>address</th><th>wrong secrets</th><th>minutes left</th>\
             <th></th></tr></thead><tbody id=\"locked\">{rows}</tbody></table>"
        )
    };
    let refusals = console.refusals().recent();
    let refusals = if refusals.is_empty() {
        "<p class=\"empty\">Nothing has been refused.</p>".to_owned()
    } else {
        let rows: String = refusals.iter().map(refusal_row).collect();
        format!(
            "<table><thead><tr><th>last</th><th>times</th><th>status</th><th>error</th>\
             <th>why</th><th>client</th><th>request</th><th>user agent</th><th>first</th>\
             </tr></thead><tbody id=\"refusals\">{rows}</tbody></table>"
        )
    };
    let body = format!(
        "{header}<main><h2>Locked out now</h2>{locked}<h2>Refused lately</h2>\
         <p>The same refusal from the same client is counted on one row.</p>{refusals}</main>",
        header = header(console, session, Some(REFUSALS)),
    );
    respond(
        StatusCode::OK,
        document(console, "Refusals – latchkey", &body),
    )
}

/// The refusals view when signed in, the sign-in page otherwise.
pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.session(&headers) {
        Some(session) => page(&console, &session),
        None => super::page::sign_in(&console, StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
pub(super) struct Unlock {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    who: String,
}

/// Forgets a locked-out address, when the form carries the session's CSRF token.
pub(super) async fn unlock(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Unlock>,
) -> Response {
    if let Err(answer) = form_session(&console, &headers, &form.csrf) {
        return *answer;
    }
    if console.lockout().unlock(&form.who) {
        tracing::info!(address = %form.who, "console: unlocked an address");
    }
    see_other(&console.path(REFUSALS), None)
}
