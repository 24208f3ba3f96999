//! Signing in and out, and the page that shows which.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::page;
use super::paths::CONSOLE;
use super::state::Console;
use crate::clients::ClientAddr;
use crate::oauth::Typed;

/// The tools view when signed in (its history read on a blocking thread), else sign-in.
pub(super) async fn tools(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(session) = console.session(&headers) else {
        return page::sign_in(&console, StatusCode::OK, None);
    };
    let history = console.activity().history().cloned();
    let stats = tokio::task::spawn_blocking(move || match history {
        Some(history) => history.tools().map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    page::tools(&console, &session, stats)
}

/// The calls page when signed in, the sign-in page otherwise.
pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.session(&headers) {
        Some(session) => page::calls(&console, &session),
        None => page::sign_in(&console, StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    #[serde(default)]
    secret: String,
}

/// Checks the typed secret (counted against the address first, as the consent page does)
/// and opens a session.
pub(super) async fn sign_in(
    State(console): State<Arc<Console>>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignIn>,
) -> Response {
    if !console.posted_here(&headers) {
        return not_posted_here();
    }
    let client = client.map_or(ClientAddr::Local, |c| c.0);
    let counted = if form.secret.trim().is_empty() {
        console.lockout().check(client)
    } else {
        console.lockout().attempt(client)
    };
    if let Err(retry_after) = counted {
        let minutes = retry_after.as_secs().div_ceil(60);
        let problem =
            format!("Too many wrong secrets from this address: try again in {minutes} min.");
        return page::sign_in(&console, StatusCode::TOO_MANY_REQUESTS, Some(&problem));
    }
    let secret_id = match console.secret_id(&form.secret).await {
        Typed::Secret(id) => id,
        Typed::Wrong => {
            let problem = "That is not an API key (or the passphrase) of this server.";
            return page::sign_in(&console, StatusCode::UNAUTHORIZED, Some(problem));
        }
        Typed::Busy => {
            let problem = "The server is checking other sign-ins; try again in a moment.";
            return page::sign_in(&console, StatusCode::SERVICE_UNAVAILABLE, Some(problem));
        }
    };
    console.lockout().succeeded(client);
    let Ok(opened) = console.sessions().open(secret_id) else {
        let problem = "The server has no randomness for a session; see its log.";
        return page::sign_in(&console, StatusCode::INTERNAL_SERVER_ERROR, Some(problem));
    };
    let max_age = console.sessions().lifetime().as_secs();
    let cookie = console.cookie(opened.cookie.expose_secret(), max_age);
    tracing::info!("console: signed in");
    page::see_other(&console.path(CONSOLE), Some(cookie))
}

/// The session a changing form (unlock, revoke, approve) was posted in: from this server's
/// own page, by a signed-in browser, with the session's CSRF token — or the answer instead.
pub(super) fn form_session(
    console: &Console,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<super::sessions::Session, Box<Response>> {
    if !console.posted_here(headers) {
        return Err(Box::new(not_posted_here()));
    }
    let Some(session) = console.session(headers) else {
        let sign_in = page::sign_in(console, StatusCode::UNAUTHORIZED, None);
        return Err(Box::new(sign_in));
    };
    if !session.csrf_matches(csrf) {
        return Err(Box::new(not_this_session()));
    }
    Ok(session)
}

/// A form whose CSRF token is not the session's.
fn not_this_session() -> Response {
    (
        StatusCode::FORBIDDEN,
        "The form is not this session's (CSRF).",
    )
        .into_response()
}

/// A form posted from another site's page.
fn not_posted_here() -> Response {
    (
        StatusCode::FORBIDDEN,
        "The console's forms are answered only from its own pages.",
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// Ends the session, when the form carries its CSRF token.
pub(super) async fn sign_out(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignOut>,
) -> Response {
    if !console.posted_here(&headers) {
        return not_posted_here();
    }
    let Some((cookie, session)) = console.cookie_and_session(&headers) else {
        return page::see_other(&console.path(CONSOLE), Some(console.cookie("", 0)));
    };
    if !session.csrf_matches(&form.csrf) {
        return not_this_session();
    }
    console.sessions().close(&cookie);
    page::see_other(&console.path(CONSOLE), Some(console.cookie("", 0)))
}
