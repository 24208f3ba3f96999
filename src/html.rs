//! Escaping for the pages latchkey renders (the consent page, the console): whatever a client
//! or an upstream chose is shown as text, never as markup, and never reordered.

use axum::http::{HeaderMap, HeaderValue, header};

/// Headers every page latchkey renders gets: never cached, framed, sniffed, or referred
/// from to another site, under the page's `csp`. Not `no-referrer`: under it Chromium sends
/// the page's own form with `Origin: null`, which the Host/Origin guard refuses (every
/// consent was a 403).
pub fn harden(headers: &mut HeaderMap, csp: &'static str) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
}

/// `text` as HTML text or an attribute value: markup characters escaped, control characters
/// dropped, and bidi controls shown as what they are.
pub fn escape(text: &str) -> String {
    escape_keeping(text, false)
}

/// [`escape`], keeping line breaks and tabs: for a `<pre>` (a diff, an error in full).
pub fn escape_lines(text: &str) -> String {
    escape_keeping(text, true)
}

fn escape_keeping(text: &str, lines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' if lines => out.push(c),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            // Bidi controls would reorder what is shown (U+202E before "moc.evil" shows "live.com"):
            // shown as what they are.
            '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("[U+{:04X}]", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_client_chose_is_escaped() {
        assert_eq!(
            escape("<script>\"&'\u{7}"),
            "&lt;script&gt;&quot;&amp;&#39;"
        );
        assert_eq!(
            escape("Claude\u{202E}moc.evil\u{2066}"),
            "Claude[U+202E]moc.evil[U+2066]"
        );
    }
}
