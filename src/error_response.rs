//! The small JSON error body every refusal uses: `{"error": …, "error_description": …}`
//! (the OAuth 2 error shape, which MCP clients already know how to show). The response
//! carries the same two as a [`Refusal`] extension, for the record of the request (the
//! console's refusals view) to say why without reading the body.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request was refused, as its body says (never a key: the bodies name none).
#[derive(Clone, Debug)]
pub struct Refusal {
    pub error: &'static str,
    pub description: Arc<str>,
}

pub fn json_error(status: StatusCode, error: &'static str, description: &str) -> Response {
    let mut response = (
        status,
        Json(serde_json::json!({ "error": error, "error_description": description })),
    )
        .into_response();
    response.extensions_mut().insert(Refusal {
        error,
        description: description.into(),
    });
    response
}
