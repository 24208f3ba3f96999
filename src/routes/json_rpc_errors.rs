//! What a POST to the MCP endpoint gets when it is not an MCP message: a JSON-RPC error
//! object (`id: null` unless the request's id can be read), with the status the MCP
//! transport and JSON-RPC prescribe, instead of rmcp's plain-text bodies:
//!
//! | the request | status | JSON-RPC code |
//! |---|---|---|
//! | body over `--max-body` | 413 | -32600 |
//! | not JSON (or not UTF-8, or nested too deep) | 400 | -32700 parse error |
//! | JSON, but not one JSON-RPC message (a batch among them) | 400 | -32600 |
//! | `Content-Type` not JSON | 415 | -32600 |
//! | `Accept` without JSON and SSE | 406 | -32600 |
//! | (rmcp failed: no answer from the handler) | 500 | -32603 |
//!
//! The body is read here, within the limit, before rmcp sees it; on the success path the
//! bytes are only handed on. Errors never quote the body: serde's messages for data errors
//! can repeat what they could not read.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};

/// JSON-RPC's codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INTERNAL_ERROR: i64 = -32603;

/// The largest rmcp error text passed on (its own fixed messages are far shorter).
const MAX_TEXT: usize = 512;

pub async fn json_rpc_errors(
    State(max_body): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body as u64) {
        return too_large(max_body);
    }
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(max_body),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                INVALID_REQUEST,
                "Invalid Request: the request body could not be read",
            );
        }
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if response.status().is_success() || is_json(&response) {
        return response;
    }
    rewrite(response, &bytes).await
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"))
}

/// rmcp's plain-text refusal, as a JSON-RPC error.
async fn rewrite(response: Response, request_body: &Bytes) -> Response {
    let status = response.status();
    let text = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&text[..text.len().min(MAX_TEXT)]).into_owned();
    if text.starts_with("fail to deserialize") {
        return not_a_message(request_body);
    }
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_owned()
    } else {
        text
    };
    let code = if status.is_server_error() {
        INTERNAL_ERROR
    } else {
        INVALID_REQUEST
    };
    error(status, Value::Null, code, &text)
}

/// The body rmcp could not read as an MCP message: not JSON at all, or the wrong JSON.
fn not_a_message(body: &Bytes) -> Response {
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(value) => value,
        Err(e) => {
            // Syntax errors name a position only, never the text.
            let why = if e.is_eof() {
                "the JSON ends early".to_owned()
            } else {
                format!("not valid JSON ({e})")
            };
            return error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                PARSE_ERROR,
                &format!("Parse error: {why}"),
            );
        }
    };
    let (id, why) = match &value {
        Value::Array(_) => (
            Value::Null,
            "a batch (an array); MCP takes one message per request",
        ),
        Value::Object(object) => (
            object
                .get("id")
                .filter(|id| id.is_string() || id.is_i64() || id.is_u64())
                .cloned()
                .unwrap_or(Value::Null),
            "not a JSON-RPC 2.0 request, notification or response that MCP knows \
             (jsonrpc \"2.0\", a method name, params an object, an integer or string id)",
        ),
        _ => (Value::Null, "not a JSON-RPC message (an object)"),
    };
    error(
        StatusCode::BAD_REQUEST,
        id,
        INVALID_REQUEST,
        &format!("Invalid Request: {why}"),
    )
}

fn too_large(max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        Value::Null,
        INVALID_REQUEST,
        &format!("Invalid Request: the body is larger than --max-body ({max} bytes)"),
    )
}

fn error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message },
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
