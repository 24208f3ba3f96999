//! The activity console at `{base}/console`: a person signs in with an API key or the OAuth
//! passphrase and watches every MCP call as it finishes (`crate::activity`); `{base}/activity`
//! is the same feed for `latchkey watch`, behind an API key (an OAuth token, an AI client's,
//! is refused).
//!
//! - `paths`: where it is served; `state`: what its handlers share (`Console`);
//! - `sign_in`: signing in and out; `sessions`: the signed-in browsers (a cookie naming a
//!   server-side session);
//! - `page`: the server-rendered pages (the script and style are files served here, so the
//!   Content-Security-Policy allows no inline code);
//! - `feed`: the live streams, Server-Sent Events for the page and JSON lines for `watch`;
//! - `clients`: each client seen, with its connection timeline, and the OAuth grants;
//! - `upstreams`: each upstream's state, reconnects, last error and tools;
//! - `changes`: the upstream tool changes as diffs, and (`--pin-tools`) approving them;
//! - `refusals`: the requests refused lately and the addresses locked out, with unlock.
//!
//! Before a key is known, the sign-in reads a bounded body (`crate::intake`), counts a wrong
//! secret against the address as the gate does (`crate::lockout`), and checks a passphrase
//! in one of the bounded argon2 turns (`oauth::passphrase`). Deliberately absent: anything
//! that shows headers or any part of a key, and arguments or results unless
//! `--trace-tool-io` asks for them (redacted, cut, never kept).

mod changes;
mod clients;
mod feed;
mod page;
mod paths;
mod refusals;
mod sessions;
mod sign_in;
mod state;
mod upstreams;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use paths::*;
use state::Console;
pub use state::ConsoleParts;

/// The console's routes, and the feed's; the gate stands in front of both.
pub fn router(parts: ConsoleParts) -> Router {
    let base = parts.base.clone();
    let intake = parts.intake.clone();
    let console = Arc::new(Console::new(parts));
    let forms = Router::new()
        .route(&format!("{base}{SIGN_IN}"), post(sign_in::sign_in))
        .route(&format!("{base}{SIGN_OUT}"), post(sign_in::sign_out))
        .route(&format!("{base}{UNLOCK}"), post(refusals::unlock))
        .route(&format!("{base}{REVOKE}"), post(clients::revoke))
        .route(&format!("{base}{APPROVE}"), post(changes::approve))
        .layer(axum::middleware::from_fn_with_state(
            intake,
            crate::intake::bounded,
        ));
    Router::new()
        .route(&format!("{base}{CONSOLE}"), get(sign_in::show))
        .route(&format!("{base}{EVENTS}"), get(feed::events))
        .route(&format!("{base}{TOOLS}"), get(sign_in::tools))
        .route(&format!("{base}{REFUSALS}"), get(refusals::show))
        .route(&format!("{base}{UPSTREAMS}"), get(upstreams::show))
        .route(&format!("{base}{CLIENTS}"), get(clients::show))
        .route(&format!("{base}{CHANGES}"), get(changes::show))
        .route(&format!("{base}{SCRIPT}"), get(page::script))
        .route(&format!("{base}{STYLE}"), get(page::style))
        .route(&format!("{base}{ACTIVITY}"), get(feed::lines))
        .merge(forms)
        .with_state(console)
}
