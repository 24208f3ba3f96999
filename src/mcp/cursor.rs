//! The cursor of a listing across several upstreams: each upstream's own cursor for its next
//! page, by upstream name, as base64url JSON. A page holds the next page of every upstream
//! that has one, so a client that follows the cursors gets each upstream's items once, in
//! the upstream's own page sizes (latchkey holds nothing between pages).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::ErrorData as McpError;

/// The longest cursor read back (each upstream's cursor is its own business, but a client
/// could send anything).
const MAX_CURSOR: usize = 64 * 1024;

/// The cursor for the upstreams' next pages; `None` when no upstream has one, or when
/// their cursors together are longer than latchkey reads back (the listing then ends
/// there, logged, rather than with a cursor latchkey would refuse).
pub fn encode(next: &[(&str, String)]) -> Option<String> {
    if next.is_empty() {
        return None;
    }

    let object: serde_json::Map<String, serde_json::Value> = next
        .iter()
        .map(|(name, cursor)| ((*name).to_owned(), cursor.clone().into()))
        .collect();
    let cursor = URL_SAFE_NO_PAD.encode(serde_json::Value::Object(object).to_string());
    if cursor.len() > MAX_CURSOR {
        tracing::warn!("the upstreams' cursors are too long to pass on: the listing ends here");
        return None;
    }
    Some(cursor)
}

/// Each upstream's cursor, by name, from a cursor [`encode`] made.
pub fn decode(cursor: &str) -> Result<Vec<(String, String)>, McpError> {
    let invalid = || McpError::invalid_params("invalid cursor: not one latchkey gave", None);
    if cursor.len() > MAX_CURSOR {
        return Err(invalid());
    }
    let json = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|_| invalid())?;
    object
        .into_iter()
        .map(|(name, cursor)| match cursor {
            serde_json::Value::String(cursor) => Ok((name, cursor)),
            _ => Err(invalid()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_upstreams_cursor_comes_back() {
        assert_eq!(encode(&[]), None);
        let cursor = encode(&[("files", "p=2".into()), ("notes", "{\"x\":1}".into())]).unwrap();
        assert_eq!(
            decode(&cursor).unwrap(),
            [
                ("files".to_owned(), "p=2".to_owned()),
                ("notes".to_owned(), "{\"x\":1}".to_owned())
            ]
        );
    }

    #[test]
    fn a_cursor_latchkey_did_not_give_is_refused() {
        for bad in [
            "not base64!",
            "bnVsbA",
            &URL_SAFE_NO_PAD.encode("{\"a\":1}"),
        ] {
            let error = decode(bad).unwrap_err();
            assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{bad}");
        }
        assert!(decode(&"A".repeat(MAX_CURSOR + 1)).is_err());
        let huge = "x".repeat(MAX_CURSOR);
        assert_eq!(encode(&[("files", huge)]), None, "never one decode refuses");
    }
}
