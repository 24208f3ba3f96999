//! `--redirect-listen`: plain HTTP that answers ACME HTTP-01 challenges and sends everything
//! else to HTTPS. The query string is dropped, so a key in it is not bounced around.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rustls_acme::ResolvesServerCertAcme;

use crate::error_response::json_error;

#[derive(Clone)]
struct Redirect {
    /// `:port` when HTTPS is not on 443.
    port_suffix: String,
    http01: Option<Arc<ResolvesServerCertAcme>>,
}

/// The router of the redirect listener; `https_port` is the first --tls-listen port.
pub fn router(https_port: u16, http01: Option<Arc<ResolvesServerCertAcme>>) -> Router {
    let state = Redirect {
        port_suffix: if https_port == 443 {
            String::new()
        } else {
            format!(":{https_port}")
        },
        http01,
    };
    Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            get(challenge).fallback(to_https),
        )
        .fallback(to_https)
        .with_state(state)
}

async fn challenge(State(state): State<Redirect>, Path(token): Path<String>) -> Response {
    match state
        .http01
        .as_ref()
        .and_then(|r| r.get_http_01_key_auth(&token))
    {
        Some(key_auth) => {
            tracing::info!("ACME: answering an HTTP-01 validation");
            (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                key_auth,
            )
                .into_response()
        }
        None => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "No ACME challenge with this token is pending.",
        ),
    }
}

async fn to_https(State(state): State<Redirect>, headers: HeaderMap, uri: Uri) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
    let Some(host) = host else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_host",
            "A Host header is needed to redirect to HTTPS.",
        );
    };
    let location = format!("https://{}{}{}", host.host(), state.port_suffix, uri.path());
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, location)],
    )
        .into_response()
}
