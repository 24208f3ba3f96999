//! latchkey as its own OAuth 2.1 authorization server, for one person (`--oauth`).
//!
//! ChatGPT and Claude connect with "OAuth": they discover the endpoints (`metadata`),
//! identify themselves by a metadata document (`cimd`) or by registering (`register`), send
//! the person to a consent page that asks for an API key or the passphrase once
//! (`authorize`, `page`), and trade the code for tokens (`token`). From then on a request's
//! `Authorization: Bearer` holds an access token that [`OAuth::check`] admits beside the
//! keys. Tokens are opaque random strings; only their hashes are kept (`store`).
//!
//! Every grant remembers which secret it was made with: when that key leaves the key set
//! (SIGHUP rotation) or the passphrase changes, its tokens stop working.

mod allowance;
pub mod args;
mod authorize;
mod cimd;
mod consents;
mod error;
mod metadata;
mod page;
pub mod passphrase;
mod redirect_uris;
mod register;
mod secret;
mod server;
pub mod store;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use metadata::well_known;
pub use server::{
    AUTHORIZE, ENDPOINTS, GrantShown, OAuth, REGISTER, REVOKE, SCOPE, TOKEN, TokenCheck, Typed,
};

/// The OAuth routes under `base` (`{base}/oauth/…`); discovery is served by
/// [`well_known`], which the routes' `/.well-known/` handler calls.
pub fn router(oauth: Arc<OAuth>, base: &str) -> Router {
    Router::new()
        .route(
            &format!("{base}{AUTHORIZE}"),
            get(authorize::show).post(authorize::decide),
        )
        .route(&format!("{base}{TOKEN}"), post(token::token))
        .route(
            &format!("{base}{REGISTER}"),
            post(register::register).delete(register::unregister),
        )
        .route(&format!("{base}{REVOKE}"), post(token::revoke))
        .layer(axum::middleware::from_fn_with_state(
            oauth.intake(),
            crate::intake::bounded,
        ))
        .with_state(oauth)
}
