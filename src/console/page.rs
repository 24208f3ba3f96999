//! The console's pages: server-rendered, every value a client or upstream chose escaped
//! (`crate::html`), and a Content-Security-Policy that allows only this server's own script
//! and style files — no inline code, nothing from elsewhere (a VPS console works offline).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

use super::paths::{
    CHANGES, CLIENTS, CONSOLE, EVENTS, REFUSALS, SCRIPT, SIGN_IN, SIGN_OUT, STYLE, TOOLS, UPSTREAMS,
};
use super::sessions::Session;
use super::state::Console;
use crate::activity::Call;
use crate::history::{Hour, ToolStats, WINDOWS, Window};
use crate::html::escape;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SCRIPT_FILE: &str = include_str!("assets/console.js");
const STYLE_FILE: &str = include_str!("assets/console.css");

/// Rows the page is rendered with (the script keeps up to `activity::LIVE_ROWS`).
const ROWS_SHOWN: usize = 200;

/// Headers every console answer gets (`html::harden`, under the console's CSP).
fn harden(response: &mut Response) {
    crate::html::harden(response.headers_mut(), CSP);
}

pub(super) fn document(console: &Console, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{style}\"></head>\
         <body>{body}</body></html>",
        style = escape(&console.path(STYLE)),
    )
}

pub(super) fn respond(status: StatusCode, html: String) -> Response {
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
    format!(
        "<tr data-at=\"{at}\" data-name=\"{name}\" data-client=\"{client}\" data-outcome=\"{oc}\">\
         <td class=\"at\"></td><td>{client}</td><td>{method}</td><td>{name}</td>\
         <td class=\"{oc}\">{outcome}</td><td class=\"n\">{ms:.1}</td><td class=\"n\">{args}</td>\
         <td class=\"n\">{answer}</td><td class=\"trace\">{trace}</td><td>{io}</td></tr>",
        at = call.at_ms,
        name = escape(name),
        client = escape(client),
        oc = call.outcome.as_str(),
        method = escape(&call.method),
        outcome = escape(&call.outcome_text()),
        ms = call.duration_ms,
        args = bytes(call.arguments_bytes),
        answer = bytes(call.answer_bytes),
        trace = escape(call.trace_id.as_deref().unwrap_or("")),
        io = io(call),
    )
}

/// A tool call's arguments and result (`--trace-tool-io`), folded.
fn io(call: &Call) -> String {
    if call.arguments.is_none() && call.result.is_none() {
        return String::new();
    }
    let part = |name: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| format!("{name}: {}\n", escape(t)))
            .unwrap_or_default()
    };
    format!(
        "<details><summary>show</summary><pre>{}{}</pre></details>",
        part("arguments", &call.arguments),
        part("result", &call.result)
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
        "{header}<main data-events=\"{events}\" data-after=\"{last}\">\
         <h2>Calls</h2><div class=\"filters\">\
         <input id=\"f-name\" placeholder=\"tool or prompt\" aria-label=\"filter by tool or prompt\">\
         <input id=\"f-client\" placeholder=\"client\" aria-label=\"filter by client\">\
         <select id=\"f-outcome\" aria-label=\"filter by outcome\"><option value=\"\">any outcome</option>\
         <option value=\"ok\">ok</option><option value=\"tool_error\">tool error</option>\
         <option value=\"error\">error</option><option value=\"cancelled\">cancelled</option></select></div>\
         <table><thead><tr><th>time</th><th>client</th><th>method</th><th>tool / prompt</th>\
         <th>outcome</th><th>ms</th><th>args B</th><th>answer B</th><th>trace</th><th>io</th></tr></thead>\
         <tbody id=\"calls\">{rows}</tbody></table>\
         <p class=\"empty\" id=\"empty\">No call yet: connect a client and call a tool.</p></main>\
         <script src=\"{script}\"></script>",
        header = header(console, session, Some(CONSOLE)),
        events = escape(&console.path(EVENTS)),
        script = escape(&console.path(SCRIPT)),
    );
    respond(StatusCode::OK, document(console, "Calls – latchkey", &body))
}

/// The views, the current one marked; the live status; sign-out with the session's token.
pub(super) fn header(console: &Console, session: &Session, current: Option<&str>) -> String {
    let views: String = [
        (CONSOLE, "Calls"),
        (TOOLS, "Tools"),
        (CLIENTS, "Clients"),
        (UPSTREAMS, "Upstreams"),
        (CHANGES, "Tool changes"),
        (REFUSALS, "Refusals"),
    ]
    .iter()
    .map(|(path, name)| {
        let here = if current == Some(*path) {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!(
            "<a href=\"{}\"{here}>{name}</a>",
            escape(&console.path(path))
        )
    })
    .collect();
    format!(
        "<header><h1>latchkey console</h1><nav>{views}</nav><span id=\"status\"></span>\
         <form method=\"post\" action=\"{sign_out}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Sign out</button></form></header>",
        sign_out = escape(&console.path(SIGN_OUT)),
        csrf = escape(session.csrf()),
    )
}

pub(super) fn ms(value: Option<f64>) -> String {
    match value {
        Some(ms) if ms < 10.0 => format!("{ms:.2}"),
        Some(ms) => format!("{ms:.0}"),
        None => "–".to_owned(),
    }
}

/// A tool's window as a table row: calls, error rate, percentiles.
fn window_row(name: &str, window: &Window) -> String {
    let rate = if window.calls == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", 100.0 * window.errors as f64 / window.calls as f64)
    };
    let q = |p| ms(window.durations.quantile(p));
    format!(
        "<tr><td>last {name}</td><td class=\"n\">{}</td><td class=\"n\">{rate}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        window.calls,
        q(0.5),
        q(0.95),
        q(0.99)
    )
}

/// The week hour by hour, drawn: calls as bars (errors in red over them) and p95 as a line,
/// each on its own scale. Plain SVG elements, no script or style attribute.
fn chart(hours: &[Hour]) -> String {
    const W: f64 = 672.0;
    const H: f64 = 80.0;
    let step = W / hours.len().max(1) as f64;
    let most = hours.iter().map(|h| h.calls).max().unwrap_or(0).max(1) as f64;
    let slowest = hours
        .iter()
        .filter_map(|h| h.p95_ms)
        .fold(0.0f64, f64::max)
        .max(0.001);
    let mut bars = String::new();
    let mut line = String::new();
    for (i, hour) in hours.iter().enumerate() {
        let x = i as f64 * step;
        if hour.calls > 0 {
            let h = H * hour.calls as f64 / most;
            let e = H * hour.errors as f64 / most;
            bars.push_str(&format!(
                "<rect class=\"calls\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
                H - h,
                step.max(1.0)
            ));
            if hour.errors > 0 {
                bars.push_str(&format!(
                    "<rect class=\"errors\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{e:.1}\"/>",
                    H - e,
                    step.max(1.0)
                ));
            }
        }
        if let Some(p95) = hour.p95_ms {
            line.push_str(&format!(
                "{:.1},{:.1} ",
                x + step / 2.0,
                H - H * p95 / slowest
            ));
        }
    }
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"calls and p95 latency per hour, last 7 days\">\
         <line class=\"axis\" x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\"/>{bars}\
         <polyline class=\"p95\" points=\"{line}\"/></svg>\
         <p class=\"legend\"><span class=\"key calls\"></span>calls per hour (at most {most}) \
         <span class=\"key errors\"></span>errors <span class=\"key p95\"></span>p95 (at most {slowest} ms), last 7 days</p>",
        most = most as u64,
        slowest = ms(Some(slowest)),
    )
}

/// Per tool: its hour, day and week, when it was last called and by whom, and its chart.
pub fn tools(
    console: &Console,
    session: &Session,
    tools: Result<Vec<ToolStats>, String>,
) -> Response {
    let content = match tools {
        Err(problem) => format!(
            "<p class=\"problem\">The history cannot be read: {}</p>",
            escape(&problem)
        ),
        Ok(tools) if tools.is_empty() => {
            "<p class=\"empty\">No tool has been called yet.</p>".to_owned()
        }
        Ok(tools) => tools.iter().map(tool_card).collect(),
    };
    let body = format!(
        "{header}<main><h2>Tools</h2>{content}</main>",
        header = header(console, session, Some(TOOLS)),
    );
    respond(StatusCode::OK, document(console, "Tools – latchkey", &body))
}

fn tool_card(tool: &ToolStats) -> String {
    let windows: String = tool
        .windows
        .iter()
        .zip(WINDOWS)
        .map(|(window, (name, _))| window_row(name, window))
        .collect();
    let last = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(tool.last_ms),
    );
    format!(
        "<section class=\"tool\"><h3>{name}</h3>\
         <p>last called {last} by {client}</p>\
         <table><thead><tr><th></th><th>calls</th><th>errors</th><th>p50 ms</th><th>p95 ms</th>\
         <th>p99 ms</th></tr></thead><tbody>{windows}</tbody></table>{chart}</section>",
        name = escape(&tool.tool),
        client = escape(tool.last_client.as_deref().unwrap_or("an unnamed client")),
        chart = chart(&tool.hours),
    )
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
    use crate::activity::Outcome;

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
            arguments: None,
            result: None,
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
