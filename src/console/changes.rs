//! The tool changes view: every change between two listings of an upstream's tools, as a
//! diff (an alert: a quietly rewritten description is how tool poisoning works), and with
//! `--pin-tools` the tools withheld until approved, each with an approve button (a POST
//! with the session's CSRF token, naming the version approved).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::page::{document, header, respond, see_other};
use super::paths::{APPROVE, CHANGES};
use super::sessions::Session;
use super::sign_in::form_session;
use super::state::Console;
use crate::html::{escape, escape_lines};
use crate::upstream::inventory::{Pending, ToolChange};

fn change_card(change: &ToolChange) -> String {
    format!(
        "<section class=\"change {kind}\"><h3>{upstream}: {tool} {kind}</h3>\
         <p>{at}</p><pre class=\"diff\">{diff}</pre></section>",
        kind = change.kind,
        upstream = escape(&change.upstream),
        tool = escape(&change.tool),
        at = humantime::format_rfc3339_seconds(change.at),
        diff = escape_lines(&change.diff),
    )
}

fn pending_row(console: &Console, session: &Session, pending: &Pending) -> String {
    format!(
        "<tr><td>{upstream}</td><td>{tool}</td><td><code>{short}</code>\
         <details><summary>what is approved</summary><pre class=\"diff\">{text}</pre></details></td>\
         <td><form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"upstream\" value=\"{upstream}\">\
         <input type=\"hidden\" name=\"tool\" value=\"{tool}\">\
         <input type=\"hidden\" name=\"digest\" value=\"{digest}\">\
         <button type=\"submit\">Approve</button></form></td></tr>",
        upstream = escape(&pending.upstream),
        tool = escape(&pending.tool),
        short = escape(pending.digest.get(..12).unwrap_or(&pending.digest)),
        text = escape_lines(&pending.text),
        digest = escape(&pending.digest),
        action = escape(&console.path(APPROVE)),
        csrf = escape(session.csrf()),
    )
}

fn page(console: &Console, session: &Session) -> Response {
    let upstreams: Vec<_> = console
        .upstreams()
        .map(|u| u.iter().collect())
        .unwrap_or_default();
    let pending: String = upstreams
        .iter()
        .flat_map(|u| u.inventory().pending(u.name()))
        .map(|p| pending_row(console, session, &p))
        .collect();
    let pending = if pending.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>Withheld, awaiting approval</h2><p>With <code>--pin-tools</code>, these are \
             not offered to clients until approved as they are now.</p><table><thead><tr>\
             <th>upstream</th><th>tool</th><th>version</th><th></th></tr></thead>\
             <tbody id=\"pending\">{pending}</tbody></table>"
        )
    };
    let mut changes: Vec<_> = upstreams
        .iter()
        .flat_map(|u| u.inventory().changes())
        .collect();
    changes.sort_by_key(|c| std::cmp::Reverse(c.at));
    let changes = if changes.is_empty() {
        "<p class=\"empty\">No upstream tool has changed since latchkey started.</p>".to_owned()
    } else {
        changes.iter().map(change_card).collect()
    };
    let body = format!(
        "{header}<main>{pending}<h2>Tool changes</h2>{changes}</main>",
        header = header(console, session, Some(CHANGES)),
    );
    respond(
        StatusCode::OK,
        document(console, "Tool changes – latchkey", &body),
    )
}

/// The tool changes view when signed in, the sign-in page otherwise.
pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.session(&headers) {
        Some(session) => page(&console, &session),
        None => super::page::sign_in(&console, StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
pub(super) struct Approve {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    upstream: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    digest: String,
}

/// Approves a withheld tool as it is listed now, when the form carries the session's token.
pub(super) async fn approve(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Approve>,
) -> Response {
    if let Err(answer) = form_session(&console, &headers, &form.csrf) {
        return *answer;
    }
    let upstream = console
        .upstreams()
        .and_then(|u| u.iter().find(|u| u.name() == form.upstream));
    let Some(upstream) = upstream else {
        return (StatusCode::NOT_FOUND, "No such upstream.").into_response();
    };
    match upstream
        .inventory()
        .approve(upstream.name(), &form.tool, &form.digest)
    {
        Ok(true) => {
            tracing::info!(upstream = upstream.name(), "console: approved a tool");
            see_other(&console.path(CHANGES), None)
        }
        Ok(false) => (
            StatusCode::CONFLICT,
            "The tool is not listed as it was shown (it changed again): reload and look again.",
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
