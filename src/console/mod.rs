//! The activity console at `{base}/console`: a person signs in with an API key or the OAuth
//! passphrase and watches every MCP call as it finishes (`crate::activity`); `{base}/activity`
//! is the same feed for `latchkey watch`, behind the key like `/mcp`.
//!
//! - `sessions`: the signed-in browsers (a cookie naming a server-side session);
//! - `page`: the server-rendered pages (the script and style are files served here, so the
//!   Content-Security-Policy allows no inline code);
//! - `feed`: the live streams, Server-Sent Events for the page and JSON lines for `watch`.
//!
//! Before a key is known, the sign-in reads a bounded body (`crate::intake`), counts a wrong
//! secret against the address as the gate does (`crate::lockout`), and checks a passphrase
//! in one of the bounded argon2 turns (`oauth::passphrase`). Deliberately absent: anything
//! that shows arguments, results, headers or any part of a key.

mod feed;
mod page;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::activity::Activity;
use crate::clients::ClientAddr;
use crate::intake::Intake;
use crate::keys::{KeyDigest, KeySet};
use crate::lockout::Lockout;
use crate::oauth::{OAuth, Typed};

pub use sessions::MAX_SESSIONS;

/// The console's paths, under the base path.
pub const CONSOLE: &str = "/console";
pub const SIGN_IN: &str = "/console/sign-in";
pub const SIGN_OUT: &str = "/console/sign-out";
pub const EVENTS: &str = "/console/events";
pub const SCRIPT: &str = "/console/console.js";
pub const STYLE: &str = "/console/console.css";
/// Every path above: the Host/Origin guard, no key (the console signs in itself).
pub const PATHS: [&str; 6] = [CONSOLE, SIGN_IN, SIGN_OUT, EVENTS, SCRIPT, STYLE];
/// The feed `latchkey watch` reads, behind the key.
pub const ACTIVITY: &str = "/activity";

/// The cookie naming a session, scoped to `{base}/console`.
const COOKIE: &str = "latchkey_console";

/// What the console needs from the rest of the server.
pub struct ConsoleParts {
    pub activity: Arc<Activity>,
    pub keys: Arc<ArcSwap<KeySet>>,
    pub lockout: Arc<Lockout>,
    pub oauth: Option<Arc<OAuth>>,
    pub intake: Arc<Intake>,
    /// The base path, without a trailing `/`.
    pub base: String,
    /// Whether browsers reach it over https (the cookie is `Secure` then).
    pub secure: bool,
    pub session_lifetime: Duration,
    pub shutdown: CancellationToken,
}

pub struct Console {
    activity: Arc<Activity>,
    keys: Arc<ArcSwap<KeySet>>,
    lockout: Arc<Lockout>,
    oauth: Option<Arc<OAuth>>,
    sessions: sessions::Sessions,
    base: String,
    secure: bool,
    shutdown: CancellationToken,
}

/// The console's routes, and the feed's; the gate stands in front of both.
pub fn router(parts: ConsoleParts) -> Router {
    let base = parts.base.clone();
    let intake = parts.intake.clone();
    let console = Arc::new(Console {
        activity: parts.activity,
        keys: parts.keys,
        lockout: parts.lockout,
        oauth: parts.oauth,
        sessions: sessions::Sessions::new(parts.session_lifetime),
        base: parts.base,
        secure: parts.secure,
        shutdown: parts.shutdown,
    });
    let forms = Router::new()
        .route(&format!("{base}{SIGN_IN}"), post(sign_in))
        .route(&format!("{base}{SIGN_OUT}"), post(sign_out))
        .layer(axum::middleware::from_fn_with_state(
            intake,
            crate::intake::bounded,
        ));
    Router::new()
        .route(&format!("{base}{CONSOLE}"), get(show))
        .route(&format!("{base}{EVENTS}"), get(feed::events))
        .route(&format!("{base}{SCRIPT}"), get(page::script))
        .route(&format!("{base}{STYLE}"), get(page::style))
        .route(&format!("{base}{ACTIVITY}"), get(feed::lines))
        .merge(forms)
        .with_state(console)
}

impl Console {
    /// Whether the secret a session was opened with is still configured.
    fn is_live(&self, secret_id: &str) -> bool {
        match &self.oauth {
            Some(oauth) => oauth.secret_is_live(secret_id),
            None => self.keys.load().has_grant_id(secret_id),
        }
    }

    /// The session the request's cookie names, if it is live.
    fn session(&self, headers: &HeaderMap) -> Option<sessions::Session> {
        let cookie = cookie_of(headers)?;
        self.sessions
            .find(cookie.expose_secret(), |id| self.is_live(id))
    }

    /// The grant id of a typed key (or, with `--oauth`, the passphrase).
    async fn secret_id(&self, typed: &str) -> Typed {
        if let Some(oauth) = &self.oauth {
            return oauth.secret_id(typed).await;
        }
        let digest = KeyDigest::of(typed.trim().as_bytes());
        if !typed.trim().is_empty() && self.keys.load().verify(&digest) {
            Typed::Secret(digest.grant_id())
        } else {
            Typed::Wrong
        }
    }

    fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `Set-Cookie` of a session (`max_age` 0 clears it).
    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            self.path(CONSOLE)
        );
        HeaderValue::try_from(cookie).expect("base64url and a configured path")
    }
}

/// The session cookie's value, when the request has one.
fn cookie_of(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| SecretString::from(value.to_owned()))
}

/// The calls page when signed in, the sign-in page otherwise.
async fn show(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.session(&headers) {
        Some(session) => page::calls(&console, &session),
        None => page::sign_in(&console, StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    secret: String,
}

/// Checks the typed secret (counted against the address first, as the consent page does)
/// and opens a session.
async fn sign_in(
    State(console): State<Arc<Console>>,
    client: Option<axum::Extension<ClientAddr>>,
    axum::Form(form): axum::Form<SignIn>,
) -> Response {
    let client = client.map_or(ClientAddr::Local, |c| c.0);
    let counted = if form.secret.trim().is_empty() {
        console.lockout.check(client)
    } else {
        console.lockout.attempt(client)
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
    console.lockout.succeeded(client);
    let Ok(opened) = console.sessions.open(secret_id) else {
        let problem = "The server has no randomness for a session; see its log.";
        return page::sign_in(&console, StatusCode::INTERNAL_SERVER_ERROR, Some(problem));
    };
    let max_age = console.sessions.lifetime().as_secs();
    let cookie = console.cookie(opened.cookie.expose_secret(), max_age);
    tracing::info!("console: signed in");
    page::see_other(&console.path(CONSOLE), Some(cookie))
}

#[derive(Deserialize)]
struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// Ends the session, when the form carries its CSRF token.
async fn sign_out(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignOut>,
) -> Response {
    let (Some(cookie), Some(session)) = (cookie_of(&headers), console.session(&headers)) else {
        return page::see_other(&console.path(CONSOLE), Some(console.cookie("", 0)));
    };
    if !session.csrf_matches(&form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "The form is not this session's (CSRF).",
        )
            .into_response();
    }
    console.sessions.close(&cookie);
    page::see_other(&console.path(CONSOLE), Some(console.cookie("", 0)))
}
