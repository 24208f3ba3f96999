//! The console's pages: server-rendered, every value a client or upstream chose escaped
//! (`crate::html`), and a Content-Security-Policy that allows only this server's own script
//! and style files — no inline code, nothing from elsewhere (a VPS console works offline).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

use super::paths::{EVENTS, SCRIPT, SIGN_IN, SIGN_OUT, STYLE};
use super::sessions::Session;
use super::state::Console;
use crate::activity::{Call, Outcome};
use crate::html::escape;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SCRIPT_FILE: &str = include_str!("assets/console.js");
const STYLE_FILE: &str = include_str!("assets/console.css");

/// Rows the page is rendered with (the script keeps up to `activity::LIVE_ROWS`).
const ROWS_SHOWN: usize = 200;

/// Headers every console answer gets: never cached, framed, sniffed, or referred from.
fn harden(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with the page's own forms,
    // which the Host/Origin guard refuses. `same-origin` tells no other site anything.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
}

fn document(console: &Console, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{style}\"></head>\
         <body>{body}</body></html>",
        style = escape(&console.path(STYLE)),
    )
}

fn respond(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    harden(&mut response);
    response
}

/// A redirect after a form, with the session cookie set or cleared.
pub fn see_other(location: &str, cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    harden(&mut response);
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::try_from(location) {
        headers.insert(header::LOCATION, location);
    }
    if let Some(cookie) = cookie {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

pub fn sign_in(console: &Console, status: StatusCode, problem: Option<&str>) -> Response {
    let problem = problem
        .map(|p| format!("<p class=\"problem\" role=\"alert\">{}</p>", escape(p)))
        .unwrap_or_default();
    let what = if console.takes_passphrase() {
        "Your API key or OAuth passphrase"
    } else {
        "Your API key"
    };
    let body = format!(
        "<main class=\"narrow\"><h1>latchkey console</h1>\
         <p>See what ChatGPT, Claude and other clients do with your tools.</p>{problem}\
         <form method=\"post\" action=\"{action}\">\
         <label for=\"secret\">{what}</label>\
         <input type=\"password\" id=\"secret\" name=\"secret\" autocomplete=\"current-password\" autofocus>\
         <button type=\"submit\">Sign in</button></form></main>",
        action = escape(&console.path(SIGN_IN)),
    );
    respond(status, document(console, "Sign in – latchkey", &body))
}

fn outcome(call: &Call) -> String {
    match (call.outcome, &call.error) {
        (Outcome::Ok, _) => "ok".to_owned(),
        (Outcome::ToolError, _) => "tool error".to_owned(),
        (Outcome::Error, Some(code)) => format!("error {code}"),
        (Outcome::Error, None) => "error".to_owned(),
        (Outcome::Cancelled, _) => "cancelled".to_owned(),
    }
}

fn bytes(n: Option<usize>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

/// One call as a table row; the script renders new ones the same way, as text.
fn row(call: &Call) -> String {
    let name = call
        .tool
        .as_deref()
        .or(call.prompt.as_deref())
        .unwrap_or("");
    let client = call.client.as_deref().unwrap_or("");
    let outcome_class = serde_json::to_value(call.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "<tr data-at=\"{at}\" data-name=\"{name}\" data-client=\"{client}\" data-outcome=\"{oc}\">\
         <td class=\"at\"></td><td>{client}</td><td>{method}</td><td>{name}</td>\
         <td class=\"{oc}\">{outcome}</td><td class=\"n\">{ms:.1}</td><td class=\"n\">{args}</td>\
         <td class=\"n\">{answer}</td><td class=\"trace\">{trace}</td></tr>",
        at = call.at_ms,
        name = escape(name),
        client = escape(client),
        oc = escape(&outcome_class),
        method = escape(&call.method),
        outcome = escape(&outcome(call)),
        ms = call.duration_ms,
        args = bytes(call.arguments_bytes),
        answer = bytes(call.answer_bytes),
        trace = escape(call.trace_id.as_deref().unwrap_or("")),
    )
}

/// The live calls, newest first.
pub fn calls(console: &Console, session: &Session) -> Response {
    let recent = console.activity().recent(0);
    let last = recent.last().map_or(0, |c| c.id);
    let rows: String = recent
        .iter()
        .rev()
        .take(ROWS_SHOWN)
        .map(|c| row(c))
        .collect();
    let body = format!(
        "<header><h1>latchkey console</h1><span id=\"status\">connecting…</span>\
         <form method=\"post\" action=\"{sign_out}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Sign out</button></form></header>\
         <main data-events=\"{events}\" data-after=\"{last}\">\
         <h2>Calls</h2><div class=\"filters\">\
         <input id=\"f-name\" placeholder=\"tool or prompt\" aria-label=\"filter by tool or prompt\">\
         <input id=\"f-client\" placeholder=\"client\" aria-label=\"filter by client\">\
         <select id=\"f-outcome\" aria-label=\"filter by outcome\"><option value=\"\">any outcome</option>\
         <option value=\"ok\">ok</option><option value=\"tool_error\">tool error</option>\
         <option value=\"error\">error</option><option value=\"cancelled\">cancelled</option></select></div>\
         <table><thead><tr><th>time</th><th>client</th><th>method</th><th>tool / prompt</th>\
         <th>outcome</th><th>ms</th><th>args B</th><th>answer B</th><th>trace</th></tr></thead>\
         <tbody id=\"calls\">{rows}</tbody></table>\
         <p class=\"empty\" id=\"empty\">No call yet: connect a client and call a tool.</p></main>\
         <script src=\"{script}\"></script>",
        sign_out = escape(&console.path(SIGN_OUT)),
        csrf = escape(session.csrf()),
        events = escape(&console.path(EVENTS)),
        script = escape(&console.path(SCRIPT)),
    );
    respond(StatusCode::OK, document(console, "Calls – latchkey", &body))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    harden(&mut response);
    response
}

pub async fn script(State(_): State<Arc<Console>>) -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT_FILE)
}

pub async fn style(State(_): State<Arc<Console>>) -> Response {
    asset("text/css; charset=utf-8", STYLE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shows_what_a_client_chose_as_text() {
        let call = Call {
            id: 1,
            at_ms: 0,
            method: "tools/call".into(),
            tool: Some("<script>alert(1)</script>".into()),
            prompt: None,
            client: Some("\"Claude\u{202E}gpj.exe".into()),
            outcome: Outcome::Error,
            error: Some("-32602".into()),
            duration_ms: 1.25,
            arguments_bytes: Some(2),
            answer_bytes: None,
            trace_id: None,
        };
        let html = row(&call);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("&quot;Claude[U+202E]gpj.exe"), "{html}");
        assert!(html.contains("error -32602"), "{html}");
    }
}
