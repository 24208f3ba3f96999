//! `/.well-known/*`: 404 with a small JSON body, for every method and without a key.
//!
//! ChatGPT and Claude probe the OAuth discovery documents (GET and HEAD) before connecting;
//! a 401, 405 or HTML page there makes them conclude OAuth is required or broken. A JSON 404
//! tells them there is none.

use axum::http::StatusCode;
use axum::response::Response;

use crate::error_response::json_error;

pub async fn not_here() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "This server does not use OAuth discovery: it takes an API key.",
    )
}
