//! `/.well-known/*`, without a key (discovery comes before any credential is known).
//!
//! With `--oauth`, the OAuth discovery documents (`oauth::well_known` says which paths);
//! everything else — and everything when OAuth is off — is a 404 with a small JSON body, for
//! every method. ChatGPT and Claude probe the OAuth documents (GET and HEAD) before
//! connecting; a 401, 405 or HTML page there makes them conclude OAuth is required or
//! broken, and a JSON 404 tells them there is none.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::error_response::json_error;
use crate::oauth::{self, OAuth};

#[derive(Clone)]
pub struct Discovery {
    pub oauth: Option<Arc<OAuth>>,
    /// The base path (empty, or `/seg…`).
    pub base: String,
}

pub async fn serve(State(discovery): State<Discovery>, method: Method, uri: Uri) -> Response {
    let Some(oauth) = &discovery.oauth else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "This server does not use OAuth discovery: it takes an API key.",
        );
    };
    let path = uri.path();
    let under_base = format!("{}/.well-known/", discovery.base);
    let (rest, is_under_base) = match path.strip_prefix(&under_base) {
        Some(rest) if !discovery.base.is_empty() => (rest, true),
        _ => (path.strip_prefix("/.well-known/").unwrap_or(""), false),
    };
    let Some(document) = oauth::well_known(oauth, rest, &discovery.base, is_under_base) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such discovery document here.",
        );
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Discovery documents answer GET and HEAD.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Json(document).into_response();
    // Public documents: any page may read them (browser-based clients such as MCP Inspector).
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if method == Method::HEAD {
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}
