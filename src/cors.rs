//! CORS for browser-based MCP clients (the MCP Inspector in direct mode, web apps): a
//! preflight from an origin the Host/Origin guard allows is answered without a key, and
//! every answer to such an origin says the browser may read it.
//!
//! Only origins that `host_origin` already allowed ever reach this module, so it never
//! decides who is allowed: a preflight from any other origin gets the guard's 403.
//! Written here rather than with tower-http's `CorsLayer`, which answers a preflight from a
//! refused origin with 200 (without the allow headers) and would sit apart from the gate,
//! which is where the guard and the key check run.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

/// What MCP clients send: the methods of Streamable HTTP.
const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, POST, DELETE, OPTIONS");

/// Headers a browser client may read from an answer: the session it was given, and the
/// challenge of a 401 (OAuth discovery starts from it).
const EXPOSE_HEADERS: HeaderValue =
    HeaderValue::from_static("mcp-session-id, mcp-protocol-version, www-authenticate");

/// The request headers MCP clients send (the key's two headers among them).
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static(
    "authorization, x-api-key, content-type, accept, mcp-session-id, mcp-protocol-version, \
     mcp-method, mcp-name, last-event-id",
);

/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: HeaderValue = HeaderValue::from_static("86400");

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight<B>(request: &axum::http::Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight from `origin` (already allowed): no key is asked for, since a
/// browser never sends credentials with a preflight.
pub fn preflight(origin: HeaderValue) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// Lets the page of `origin` (already allowed) read `response`.
pub fn allow(response: &mut Response, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> axum::http::Request<()> {
        let mut builder = axum::http::Request::builder().method(method).uri("/mcp");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn only_an_options_with_origin_and_requested_method_is_a_preflight() {
        let origin = ("origin", "http://localhost:6274");
        let method = ("access-control-request-method", "POST");
        assert!(is_preflight(&request(Method::OPTIONS, &[origin, method])));
        assert!(!is_preflight(&request(Method::OPTIONS, &[origin])));
        assert!(!is_preflight(&request(Method::OPTIONS, &[method])));
        assert!(!is_preflight(&request(Method::POST, &[origin, method])));
    }

    #[test]
    fn a_preflight_answer_names_what_mcp_clients_send() {
        let response = preflight(HeaderValue::from_static("http://localhost:6274"));
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let headers = response.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:6274"
        );
        let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap();
        for name in [
            "authorization",
            "x-api-key",
            "content-type",
            "accept",
            "mcp-session-id",
            "mcp-protocol-version",
            "mcp-method",
            "mcp-name",
            "last-event-id",
        ] {
            assert!(allowed.split(", ").any(|h| h == name), "{name}: {allowed}");
        }
        assert!(
            headers[header::ACCESS_CONTROL_ALLOW_METHODS]
                .to_str()
                .unwrap()
                .contains("DELETE")
        );
        assert_eq!(headers[header::VARY], "origin");
    }
}
