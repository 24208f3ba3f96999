//! The small JSON error body every refusal uses: `{"error": …, "error_description": …}`
//! (the OAuth 2 error shape, which MCP clients already know how to show).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": error, "error_description": description })),
    )
        .into_response()
}
