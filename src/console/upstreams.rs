//! The upstreams view: each upstream's state (starting, ready, down, degraded, stopped), the
//! server it reached, how often it connected again, its last error in full (here, behind the
//! sign-in, not on `/healthz`), and its tools as it lists them now.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rmcp::model::Tool;

use super::page::{document, header, respond};
use super::paths::UPSTREAMS;
use super::state::Console;
use crate::html::{escape, escape_lines};
use crate::upstream::{self, Upstream};

/// How long the view waits for an upstream's tool list.
const LIST_WAIT: Duration = Duration::from_secs(5);

/// An upstream's tools now, or why there are none to show.
async fn tools(upstream: &Upstream) -> Result<Vec<Tool>, String> {
    let connection = upstream.connection().map_err(|e| e.message.to_string())?;
    match tokio::time::timeout(LIST_WAIT, connection.peer.list_all_tools()).await {
        Ok(Ok(tools)) => Ok(tools),
        Ok(Err(e)) => Err(format!("it did not list its tools: {e}")),
        Err(_) => Err(format!("it did not list its tools within {LIST_WAIT:?}")),
    }
}

fn state_of(upstream: &Upstream) -> (&'static str, String) {
    match upstream.state() {
        upstream::State::Ready(connection) => {
            let server = connection
                .info
                .server_info
                .as_ref()
                .map(|s| format!("{} {}", s.name, s.version))
                .unwrap_or_default();
            match upstream.degraded() {
                Some(n) => (
                    "degraded",
                    format!("{n} requests in a row timed out; {server}"),
                ),
                None => ("ready", server),
            }
        }
        upstream::State::Starting => ("starting", String::new()),
        upstream::State::Down(reason) => ("down", reason),
        upstream::State::Stopped => ("stopped", String::new()),
    }
}

fn tool_rows(upstream: &Upstream, tools: &Result<Vec<Tool>, String>) -> String {
    let tools = match tools {
        Err(why) => return format!("<p class=\"problem\">{}</p>", escape(why)),
        Ok(tools) if tools.is_empty() => return "<p class=\"empty\">No tools.</p>".to_owned(),
        Ok(tools) => tools,
    };
    let rows: String = tools
        .iter()
        .map(|tool| {
            let offered = if !upstream.offers_tool(&tool.name) {
                "not offered (tools.allow / tools.deny)".to_owned()
            } else if !upstream.inventory().offers(upstream.name(), tool, tools) {
                "withheld, awaiting approval (Tool changes)".to_owned()
            } else {
                escape(&upstream.naming.name(&tool.name))
            };
            format!(
                "<tr><td>{name}</td><td>{offered}</td><td>{description}</td></tr>",
                name = escape(&tool.name),
                description = escape(tool.description.as_deref().unwrap_or("")),
            )
        })
        .collect();
    format!(
        "<table><thead><tr><th>tool</th><th>offered as</th><th>description</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    )
}

async fn card(upstream: &Upstream) -> String {
    let (state, detail) = state_of(upstream);
    let tools = tools(upstream).await;
    let track = upstream.track();
    let last_error = match track.last_error() {
        Some((at, why)) => format!(
            "<p>last error, {at}: <code class=\"error\">{why}</code></p>",
            at = humantime::format_rfc3339_seconds(at),
            why = escape_lines(&why),
        ),
        None => "<p>no error since start</p>".to_owned(),
    };
    format!(
        "<section class=\"upstream\"><h3>{name}</h3>\
         <p><span class=\"state {state}\">{state}</span> {detail}</p>\
         <p>connected again {reconnects} time(s) since start</p>{last_error}{tools}</section>",
        name = escape(upstream.name()),
        detail = escape(&detail),
        reconnects = track.reconnects(),
        tools = tool_rows(upstream, &tools),
    )
}

/// The upstreams view when signed in, the sign-in page otherwise.
pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(session) = console.session(&headers) else {
        return super::page::sign_in(&console, StatusCode::OK, None);
    };
    let content = match console.upstreams() {
        None => "<p class=\"empty\">No upstream: latchkey serves its own tools.</p>".to_owned(),
        Some(upstreams) => {
            let cards = upstreams.iter().map(card);
            futures::future::join_all(cards).await.concat()
        }
    };
    let body = format!(
        "{header}<main><h2>Upstreams</h2>{content}</main>",
        header = header(&console, &session, Some(UPSTREAMS)),
    );
    respond(
        StatusCode::OK,
        document(&console, "Upstreams – latchkey", &body),
    )
}
