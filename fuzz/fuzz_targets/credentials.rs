//! Key extraction and query redaction (`auth::take_credentials`, `auth::take_path_key`):
//! whatever the URI and the `Authorization` / `X-API-Key` headers, no key is left in the
//! request (a `/mcp/<key>` path goes on as `/mcp`; a segment left there cannot be a key:
//! shorter than a key or not visible ASCII), and the query as it may be recorded holds no
//! sensitive value.
#![no_main]

use latchkey::auth::{take_credentials, take_path_key};
use latchkey::keys::MIN_KEY_LEN;
use latchkey::redact::{REDACTED, is_sensitive_param, percent_decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let uri = parts.next().unwrap_or_default();
    let authorization = parts.next();
    let api_key = parts.next();
    let Ok(uri) = http::Uri::try_from(uri) else {
        return;
    };
    let mut request = http::Request::get(uri).body(()).unwrap();
    if let Some(value) = authorization.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
        request.headers_mut().insert("authorization", value);
    }
    if let Some(value) = api_key.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
        request.headers_mut().insert("x-api-key", value);
    }
    let mut taken = take_credentials(&mut request);
    take_path_key(&mut request, "/mcp", &mut taken);
    let path = request.uri().path();
    if let Some(segment) = path.strip_prefix("/mcp/").filter(|s| !s.contains('/')) {
        let segment = percent_decoded(segment);
        assert!(
            segment.len() < MIN_KEY_LEN || !segment.iter().all(u8::is_ascii_graphic),
            "a key segment is left in {path}"
        );
    }

    assert!(!request.headers().contains_key("x-api-key"));
    for value in request.headers().get_all("authorization") {
        let value = value.as_bytes();
        assert!(!(value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ")));
    }
    // The query left for the routes holds no key, and the recorded one no sensitive value.
    if let Some(query) = request.uri().query() {
        for pair in query.split('&') {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            assert_ne!(&*percent_decoded(name), b"api_key", "{query}");
        }
    }
    if let Some(recorded) = taken.recorded_query {
        for pair in recorded.split('&') {
            if let Some((name, value)) = pair.split_once('=')
                && is_sensitive_param(&percent_decoded(name))
            {
                assert_eq!(value, REDACTED, "{recorded}");
            }
        }
    }
});
