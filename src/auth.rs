//! Authentication: where a request's key is taken out and checked.
//!
//! [`take_credentials`] is the first thing done to every request (in `gate`): it removes the
//! key from the `api_key` query parameter, the `Authorization: Bearer` header and the
//! `X-API-Key` header, and keeps only its SHA-256 digest; [`take_path_key`] does the same
//! for a key sent as `{base}/mcp/<key>`. Nothing after them — logs, spans, router, handlers,
//! rmcp, tools — can see the key. [`check`] then admits a request whose digest matches a
//! configured key (the gate asks `oauth` about the `Bearer` digests that match none).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;

use crate::error_response::json_error;
use crate::keys::{KeyDigest, KeySet, MIN_KEY_LEN};
use crate::redact;

/// The query parameter that carries the key in a connector URL.
pub const QUERY_PARAM: &str = "api_key";
/// The header Claude's static-header allowlist accepts.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// How a client sent its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Bearer,
    Header,
    Query,
    /// The last segment of `{base}/mcp/<key>`, for clients that drop query strings and
    /// cannot send headers.
    Path,
    /// An OAuth access token (`--oauth`) in `Authorization: Bearer`.
    OAuth,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Bearer => "bearer",
            AuthMethod::Header => "header",
            AuthMethod::Query => "query",
            AuthMethod::Path => "path",
            AuthMethod::OAuth => "oauth",
        }
    }
}

/// The keys a request carried, as digests, in the order they are tried.
#[derive(Clone, Debug, Default)]
pub struct Credentials(Vec<(AuthMethod, KeyDigest)>);

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How the first key presented came: what the access record says of a refused one.
    pub fn first_method(&self) -> Option<AuthMethod> {
        self.0.first().map(|(how, _)| *how)
    }

    /// The digests of `Authorization: Bearer` values: where OAuth access tokens come.
    pub fn bearer_digests(&self) -> impl Iterator<Item = &KeyDigest> {
        self.0
            .iter()
            .filter(|(how, _)| *how == AuthMethod::Bearer)
            .map(|(_, digest)| digest)
    }
}

/// What [`take_credentials`] took out of a request.
#[derive(Debug, Default)]
pub struct Taken {
    pub credentials: Credentials,
    /// The original query as it may be recorded: every sensitive value replaced.
    pub recorded_query: Option<String>,
}

/// Takes every key out of `request`, keeping their digests.
pub fn take_credentials<B>(request: &mut http::Request<B>) -> Taken {
    let mut found = Vec::new();
    take_bearer(request.headers_mut(), &mut found);
    take_api_key(request.headers_mut(), &mut found);
    let mut recorded_query = None;
    if let Some(query) = request.uri().query() {
        let (stripped, recorded) = split_query(request.uri(), query, &mut found);
        recorded_query = Some(recorded);
        if let Some(stripped) = stripped {
            *request.uri_mut() = stripped;
        }
    }
    Taken {
        credentials: Credentials(found),
        recorded_query,
    }
}

/// Takes a key sent as the last segment of `{mcp}/<key>` and sends the request to `mcp`,
/// its query kept.
pub fn take_path_key<B>(request: &mut http::Request<B>, mcp: &str, taken: &mut Taken) {
    let path = request.uri().path();
    let Some(key) = path
        .strip_prefix(mcp)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|key| !key.is_empty() && !key.contains('/'))
    else {
        return;
    };
    let key = redact::percent_decoded(key);
    // Only a segment that could be a key is one: `/mcp/sse` (what old SSE clients and
    // scanners ask for) is no guess, and must not count towards a lockout.
    if key.len() < MIN_KEY_LEN || !key.iter().all(u8::is_ascii_graphic) {
        return;
    }
    let digest = KeyDigest::of(&key);
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{mcp}?{query}"),
        None => mcp.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = path_and_query.try_into().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
        taken.credentials.0.push((AuthMethod::Path, digest));
    }
}

/// Takes `Authorization: Bearer …` values; other schemes (e.g. a proxy's Basic) stay.
fn take_bearer(headers: &mut HeaderMap, found: &mut Vec<(AuthMethod, KeyDigest)>) {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(_), None) = (values.next(), values.next()) else {
        return take_bearers(headers, found);
    };
    // One value, the usual case: `remove` takes it without draining a list.
    let value = headers
        .remove(header::AUTHORIZATION)
        .expect("the value just seen");
    match bearer_token(value.as_bytes()) {
        Some(token) => found.push((AuthMethod::Bearer, KeyDigest::of(token))),
        None => {
            headers.insert(header::AUTHORIZATION, value);
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let is_bearer = value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ");
    is_bearer.then(|| value[7..].trim_ascii())
}

/// [`take_bearer`] for several (or no) `Authorization` values.
fn take_bearers(headers: &mut HeaderMap, found: &mut Vec<(AuthMethod, KeyDigest)>) {
    let header::Entry::Occupied(entry) = headers.entry(header::AUTHORIZATION) else {
        return;
    };
    let mut others = Vec::new();
    for value in entry.remove_entry_mult().1 {
        match bearer_token(value.as_bytes()) {
            Some(token) => found.push((AuthMethod::Bearer, KeyDigest::of(token))),
            None => others.push(value),
        }
    }
    for value in others {
        headers.append(header::AUTHORIZATION, value);
    }
}

/// Takes every `X-API-Key` value.
fn take_api_key(headers: &mut HeaderMap, found: &mut Vec<(AuthMethod, KeyDigest)>) {
    // `entry` may grow the map, so it is only asked for a header that is there.
    if !headers.contains_key(API_KEY_HEADER) {
        return;
    }
    if let header::Entry::Occupied(entry) = headers.entry(API_KEY_HEADER) {
        for value in entry.remove_entry_mult().1 {
            found.push((AuthMethod::Header, KeyDigest::of(value.as_bytes())));
        }
    }
}

/// One pass over `uri`'s `query`: takes its `api_key` parameters (the rest of the query kept
/// byte for byte in the returned URI, `None` when there was none to take), and writes the
/// query as it may be recorded, every sensitive value replaced.
fn split_query(
    uri: &Uri,
    query: &str,
    found: &mut Vec<(AuthMethod, KeyDigest)>,
) -> (Option<Uri>, String) {
    let mut recorded = String::with_capacity(query.len());
    let mut path_and_query = String::with_capacity(uri.path().len() + query.len() + 1);
    path_and_query.push_str(uri.path());
    let mut stripped = false;
    for (i, pair) in query.split('&').enumerate() {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Percent-decoding only: keys hold no spaces, so a `+` is taken as itself.
        let decoded = redact::percent_decoded(name);
        if i > 0 {
            recorded.push('&');
        }
        if pair.contains('=') && redact::is_sensitive_param(&decoded) {
            recorded.push_str(name);
            recorded.push('=');
            recorded.push_str(redact::REDACTED);
        } else {
            recorded.push_str(pair);
        }
        if *decoded == *QUERY_PARAM.as_bytes() {
            let value = redact::percent_decoded(value);
            found.push((AuthMethod::Query, KeyDigest::of(&value)));
            stripped = true;
        } else if !pair.is_empty() {
            // The first parameter kept opens the query.
            path_and_query.push(if path_and_query.len() == uri.path().len() {
                '?'
            } else {
                '&'
            });
            path_and_query.push_str(pair);
        }
    }
    if !stripped {
        return (None, recorded);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .try_into()
            .expect("a path and query taken from a valid URI stays valid"),
    );
    let uri = Uri::from_parts(parts).expect("only the query changed");
    (Some(uri), recorded)
}

const HOW_TO_SEND: &str = "Send the API key as an `Authorization: Bearer <key>` header, as an \
     `X-API-Key: <key>` header, as the `api_key` query parameter (…/mcp?api_key=<key>), or as \
     the last path segment (…/mcp/<key>).";

/// Why a request's key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    Missing,
    Invalid,
    /// Different values at once (150 `api_key`s in one request were one guess each): a
    /// guess, answered 400.
    Several,
}

impl KeyRefusal {
    /// The answer: 401, or 400 for several different keys.
    pub fn response(self) -> Response {
        match self {
            KeyRefusal::Missing => unauthorized("No API key was sent."),
            KeyRefusal::Invalid => unauthorized("The API key is not valid."),
            KeyRefusal::Several => json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request carries more than one different API key or token; send one.",
            ),
        }
    }

    /// Whether the request carried something that may be a guess at a key.
    pub fn presented(self) -> bool {
        self != KeyRefusal::Missing
    }
}

/// Admits `credentials` holding a configured key, with the method that carried it and the
/// key's label.
pub fn check(
    keys: &KeySet,
    credentials: &Credentials,
) -> Result<(AuthMethod, Option<Arc<str>>), KeyRefusal> {
    if let [(_, first), rest @ ..] = credentials.0.as_slice()
        && rest.iter().any(|(_, other)| other != first)
    {
        return Err(KeyRefusal::Several);
    }
    // Every presented key is checked, so the time taken does not depend on which one matched.
    let mut method = None;
    for (how, digest) in &credentials.0 {
        if let Some(label) = keys.matching(digest)
            && method.is_none()
        {
            method = Some((*how, label));
        }
    }
    method.ok_or(if credentials.is_empty() {
        KeyRefusal::Missing
    } else {
        KeyRefusal::Invalid
    })
}

fn unauthorized(problem: &str) -> Response {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        &format!("{problem} {HOW_TO_SEND}"),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"latchkey\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k3y-0123456789abcdef0123456789abcdef";

    fn run(
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (http::Request<()>, Credentials, Vec<AuthMethod>) {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        let taken = take_credentials(&mut request);
        let methods = taken.credentials.0.iter().map(|c| c.0).collect();
        (request, taken.credentials, methods)
    }

    #[test]
    fn query_key_is_removed_and_the_rest_kept() {
        let (req, _, methods) = run(&format!("/mcp?a=1&api_key={KEY}&b=%20x"), &[]);
        assert_eq!(req.uri().to_string(), "/mcp?a=1&b=%20x");
        assert_eq!(methods, [AuthMethod::Query]);
        let (req, _, _) = run(&format!("/mcp?api_key={KEY}&a=1&&b=2"), &[]);
        assert_eq!(req.uri().to_string(), "/mcp?a=1&b=2");
        let (req, _, _) = run(&format!("http://h/mcp?api_key={KEY}"), &[]);
        assert_eq!(req.uri().to_string(), "http://h/mcp");
        let (req, _, _) = run(&format!("/mcp?api%5Fkey={KEY}&api_key=x"), &[]);
        assert_eq!(req.uri().to_string(), "/mcp");
        let (req, _, methods) = run("/mcp?x=1", &[]);
        assert_eq!(req.uri().to_string(), "/mcp?x=1");
        assert!(methods.is_empty());
    }

    #[test]
    fn the_recorded_query_has_every_sensitive_value_replaced() {
        let recorded = |query: &str| {
            let mut request = http::Request::builder()
                .uri(format!("/mcp?{query}"))
                .body(())
                .unwrap();
            take_credentials(&mut request).recorded_query.unwrap()
        };
        assert_eq!(
            recorded("a=1&api_key=s3cret&Token=x&api%5Fkey=y&code=z&keep=2&flag"),
            "a=1&api_key=REDACTED&Token=REDACTED&api%5Fkey=REDACTED&code=REDACTED&keep=2&flag"
        );
        assert_eq!(
            recorded("password=p&access_token=t&key=k"),
            "password=REDACTED&access_token=REDACTED&key=REDACTED"
        );
        assert_eq!(recorded("&a=1&&KEY=k&"), "&a=1&&KEY=REDACTED&");
        assert_eq!(recorded(""), "");
    }

    #[test]
    fn a_key_in_the_path_is_taken_and_the_request_sent_to_mcp() {
        let take = |uri: &str| {
            let mut request = http::Request::builder().uri(uri).body(()).unwrap();
            let mut taken = Taken::default();
            take_path_key(&mut request, "/p/mcp", &mut taken);
            let methods: Vec<_> = taken.credentials.0.iter().map(|c| c.0).collect();
            (request.uri().to_string(), methods, taken.credentials)
        };
        let (uri, methods, credentials) = take(&format!("/p/mcp/{KEY}?x=1"));
        assert_eq!(
            (uri.as_str(), methods.as_slice()),
            ("/p/mcp?x=1", &[AuthMethod::Path][..])
        );
        assert_eq!(credentials.0[0].1, KeyDigest::of(KEY.as_bytes()));
        for kept in ["/p/mcp", "/p/mcp/", "/p/mcp/a/b", "/mcp/x", "/p/mcpx"] {
            let (uri, methods, _) = take(kept);
            assert_eq!(uri, kept);
            assert!(methods.is_empty(), "{kept}");
        }
    }

    #[test]
    fn percent_encoded_query_key_digests_like_the_plain_key() {
        let encoded = KEY.replace('-', "%2D");
        let (_, credentials, _) = run(&format!("/mcp?api_key={encoded}"), &[]);
        let found = &credentials.0;
        assert_eq!(found[0].1, KeyDigest::of(KEY.as_bytes()));
    }

    #[test]
    fn a_single_authorization_value_is_taken_only_if_bearer() {
        let (req, _, methods) = run("/mcp", &[("authorization", &format!("Bearer {KEY}"))]);
        assert_eq!(methods, [AuthMethod::Bearer]);
        assert!(req.headers().get("authorization").is_none());
        let (req, _, methods) = run("/mcp", &[("authorization", "Basic dXNlcjpwYXNz")]);
        assert!(methods.is_empty());
        assert_eq!(req.headers()["authorization"], "Basic dXNlcjpwYXNz");
        let (_, _, methods) = run("/mcp", &[("authorization", "Bearer")]);
        assert!(methods.is_empty(), "a scheme without a token is not a key");
    }

    #[test]
    fn headers_are_removed_but_other_schemes_stay() {
        let (req, credentials, methods) = run(
            "/mcp",
            &[
                ("authorization", &format!("bearer  {KEY} ")),
                ("authorization", "Basic dXNlcjpwYXNz"),
                ("x-api-key", KEY),
            ],
        );
        assert_eq!(methods, [AuthMethod::Bearer, AuthMethod::Header]);
        let found = &credentials.0;
        assert_eq!(found[0].1, KeyDigest::of(KEY.as_bytes()));
        assert!(req.headers().get("x-api-key").is_none());
        let left: Vec<_> = req.headers().get_all("authorization").iter().collect();
        assert_eq!(left, ["Basic dXNlcjpwYXNz"]);
    }
}
