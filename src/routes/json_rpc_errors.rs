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

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use serde_json::{Value, json};
use tower::{Layer, Service};

/// JSON-RPC's codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INTERNAL_ERROR: i64 = -32603;

/// The largest rmcp error text passed on (its own fixed messages are far shorter).
const MAX_TEXT: usize = 512;

/// A layer around rmcp's service, not `axum::middleware::from_fn` on the method router:
/// that boxed a future per request and wrapped each method's route in a second boxed route.
/// The whole layer, body read included, measured about 2,000 instructions a request
/// (BENCHMARKS.md, *Instructions per request*).
#[derive(Clone, Copy)]
pub struct JsonRpcErrorsLayer {
    pub max_body: usize,
}

impl<S> Layer<S> for JsonRpcErrorsLayer {
    type Service = JsonRpcErrors<S>;

    fn layer(&self, inner: S) -> JsonRpcErrors<S> {
        JsonRpcErrors {
            inner,
            max_body: self.max_body,
        }
    }
}

#[derive(Clone)]
pub struct JsonRpcErrors<S> {
    inner: S,
    max_body: usize,
}

impl<S, B> Service<Request> for JsonRpcErrors<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = JsonRpcFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was ready answers this request; a clone waits for the next.
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        if request.method() != Method::POST {
            let mut inner = inner;
            return JsonRpcFuture::Calling {
                future: inner.call(request),
                body: Bytes::new(),
            };
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body as u64) {
            return JsonRpcFuture::Answered {
                response: Some(too_large(self.max_body)),
            };
        }
        let (parts, body) = request.into_parts();
        JsonRpcFuture::Reading {
            collect: Limited::new(body, self.max_body).collect(),
            parts: Some(parts),
            inner: Some(inner),
            max_body: self.max_body,
        }
    }
}

pin_project! {
    /// Reading the body, then the routes' answer, then (rarely) rewriting it.
    #[project = Step]
    pub enum JsonRpcFuture<S: Service<Request>> {
        Reading {
            #[pin]
            collect: Collect<Limited<Body>>,
            parts: Option<Parts>,
            inner: Option<S>,
            max_body: usize,
        },
        Calling {
            #[pin]
            future: S::Future,
            // The body as sent, to tell why rmcp refused it.
            body: Bytes,
        },
        Rewriting {
            future: BoxFuture<'static, Response>,
        },
        Answered {
            response: Option<Response>,
        },
    }
}

impl<S, B> Future for JsonRpcFuture<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                Step::Reading {
                    collect,
                    parts,
                    inner,
                    max_body,
                } => {
                    let body = match ready!(collect.poll(cx)) {
                        Ok(collected) => collected.to_bytes(),
                        Err(e) if e.is::<LengthLimitError>() => {
                            return Poll::Ready(Ok(too_large(*max_body)));
                        }
                        Err(_) => {
                            return Poll::Ready(Ok(error(
                                StatusCode::BAD_REQUEST,
                                Value::Null,
                                INVALID_REQUEST,
                                "Invalid Request: the request body could not be read",
                            )));
                        }
                    };
                    let parts = parts.take().expect("polled after completion");
                    let mut inner = inner.take().expect("polled after completion");
                    let request = Request::from_parts(parts, Body::from(body.clone()));
                    JsonRpcFuture::Calling {
                        future: inner.call(request),
                        body,
                    }
                }
                Step::Calling { future, body } => {
                    let Ok(response) = ready!(future.poll(cx));
                    let response = response.map(Body::new);
                    if response.status().is_success() || is_json(&response) {
                        return Poll::Ready(Ok(response));
                    }
                    let body = std::mem::take(body);
                    JsonRpcFuture::Rewriting {
                        future: Box::pin(rewrite(response, body)),
                    }
                }
                Step::Rewriting { future } => return future.as_mut().poll(cx).map(Ok),
                Step::Answered { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            };
            self.set(next);
        }
    }
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"))
}

/// rmcp's plain-text refusal, as a JSON-RPC error.
async fn rewrite(response: Response, request_body: Bytes) -> Response {
    let status = response.status();
    let text = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&text[..text.len().min(MAX_TEXT)]).into_owned();
    if text.starts_with("fail to deserialize") {
        return not_a_message(&request_body);
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
