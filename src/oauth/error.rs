//! What an OAuth endpoint refuses with: an error code of RFC 6749 §5.2 (token, revoke) or
//! RFC 7591 §3.2.2 (registration) and a description, answered as JSON that is never cached.
//! Handlers return it with `?`; the response is made only when it is answered.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error_response::json_error;

#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: Cow<'static, str>,
    retry_after: Option<HeaderValue>,
}

impl OAuthError {
    fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        OAuthError {
            status,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    /// A registration access token that is not this client's (RFC 7592 §2): the same answer
    /// for an unknown client, a wrong token and none.
    pub fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }

    pub fn invalid_target() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "resource is not this server's MCP endpoint",
        )
    }

    pub fn unsupported_grant_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        )
    }

    pub fn server_error(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            description,
        )
    }

    /// A registration whose metadata cannot be used.
    pub fn invalid_client_metadata(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            description,
        )
    }

    pub fn invalid_redirect_uri(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
    }

    /// Too many at once from one address: try again after `seconds`.
    pub fn too_many_requests(description: impl Into<Cow<'static, str>>, seconds: u32) -> Self {
        OAuthError {
            retry_after: Some(HeaderValue::from(seconds)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                description,
            )
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = json_error(self.status, self.code, &self.description);
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}
