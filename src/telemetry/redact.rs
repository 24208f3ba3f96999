//! What is never recorded: sensitive query parameters and JSON values.

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

fn is_sensitive_param(name: &str) -> bool {
    let name = percent_decoded(name);
    SENSITIVE_PARAMS
        .iter()
        .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
}

/// `query` with the value of every sensitive parameter replaced: `a=1&api_key=REDACTED`.
pub fn query(query: &str) -> String {
    let mut recorded = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            recorded.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_sensitive_param(name) => {
                recorded.push_str(name);
                recorded.push('=');
                recorded.push_str(REDACTED);
            }
            _ => recorded.push_str(pair),
        }
    }
    recorded
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
    fn sensitive_query_values_are_replaced() {
        assert_eq!(
            query("a=1&api_key=s3cret&Token=x&api%5Fkey=y&code=z&keep=2&flag"),
            "a=1&api_key=REDACTED&Token=REDACTED&api%5Fkey=REDACTED&code=REDACTED&keep=2&flag"
        );
        assert_eq!(
            query("password=p&access_token=t&key=k"),
            "password=REDACTED&access_token=REDACTED&key=REDACTED"
        );
        assert_eq!(query("&a=1&&KEY=k&"), "&a=1&&KEY=REDACTED&");
        assert_eq!(query(""), "");
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
