//! What is never recorded: sensitive query parameters (`auth` writes the recorded query in
//! the same pass that takes the key out) and JSON values (tool arguments and results).

use std::borrow::Cow;

/// Query parameters whose values are replaced by `REDACTED` wherever a query is recorded.
const SENSITIVE_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "auth",
    "authorization",
    "sig",
    "signature",
    "x-amz-signature",
    "x-goog-signature",
    "awsaccesskeyid",
    "credential",
];

/// Words that make a JSON object key sensitive (compared without case, `-` and `_`).
const SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "key",
    "auth",
    "credential",
    "cookie",
    "session",
    "private",
    "signature",
];

pub const REDACTED: &str = "REDACTED";

/// `s` percent-decoded; borrowed, after one `memchr`, when it holds no `%` (a key never does).
pub fn percent_decoded(s: &str) -> Cow<'_, [u8]> {
    if s.contains('%') {
        percent_encoding::percent_decode_str(s).into()
    } else {
        Cow::Borrowed(s.as_bytes())
    }
}

/// Whether a query parameter of this (percent-decoded) name holds a secret.
pub fn is_sensitive_param(name: &[u8]) -> bool {
    SENSITIVE_PARAMS
        .iter()
        .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
}

/// `url` as it may be shown: a password in it and the values of sensitive query parameters
/// replaced (an upstream's URL can carry its own key, as latchkey's connector URL does).
pub fn url_for_display(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (url, None),
    };
    let mut shown = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                    format!("{scheme}://{user}:{REDACTED}@{host}{path}")
                }
                None => before_query.to_owned(),
            }
        }
        None => before_query.to_owned(),
    };
    if let Some(query) = query {
        shown.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                shown.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if is_sensitive_param(&percent_decoded(name)) => {
                    shown.push_str(name);
                    shown.push('=');
                    shown.push_str(REDACTED);
                }
                _ => shown.push_str(pair),
            }
        }
    }
    shown
}

fn is_sensitive_key(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SENSITIVE_WORDS.iter().any(|w| folded.contains(w))
}

/// A copy of `value` with the values under sensitive-looking keys replaced, at any depth.
pub fn json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive_key(k) {
                        Value::String(REDACTED.into())
                    } else {
                        json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(json).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_secrets() {
        assert_eq!(
            url_for_display("https://me:pw@mcp.example/mcp?api_key=s3cret&x=1&Token=t"),
            "https://me:REDACTED@mcp.example/mcp?api_key=REDACTED&x=1&Token=REDACTED"
        );
        assert_eq!(url_for_display("http://h:1/mcp"), "http://h:1/mcp");
        assert_eq!(url_for_display("not a url?key=k"), "not a url?key=REDACTED");
    }

    #[test]
    fn sensitive_json_values_are_replaced_at_any_depth() {
        let value = serde_json::json!({
            "name": "Ada",
            "apiKey": "s1",
            "nested": [{"Client-Secret": "s2", "count": 3}, {"auth": {"user": "u"}}],
            "session_id": "s3",
        });
        let redacted = json(&value);
        assert_eq!(
            redacted,
            serde_json::json!({
                "name": "Ada",
                "apiKey": "REDACTED",
                "nested": [{"Client-Secret": "REDACTED", "count": 3}, {"auth": "REDACTED"}],
                "session_id": "REDACTED",
            })
        );
    }
}
