//! What an upstream writes that latchkey logs (its stderr, skipped stdout lines, its log
//! messages), made safe to log: one line, cut to a bounded length, control characters
//! escaped, and the secrets latchkey gave it (configured environment values, header values)
//! and `Bearer` tokens replaced.

use std::sync::Arc;

use crate::redact::REDACTED;

/// The longest line logged whole; the rest is cut.
const MAX_LOGGED_LINE: usize = 2048;

/// Values shorter than this are not treated as secrets (`1`, `true`, a port).
const MIN_SECRET_LEN: usize = 6;

/// Cuts and redacts an upstream's lines; cheap to clone.
#[derive(Clone, Default)]
pub struct LogLines {
    secrets: Arc<[String]>,
}

impl LogLines {
    /// Redacts each of `secrets` (the short ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        LogLines {
            secrets: secrets
                .into_iter()
                .filter(|s| s.len() >= MIN_SECRET_LEN)
                .collect(),
        }
    }

    /// `line` as it may be logged.
    /// `line` as it may be logged. Secrets are replaced before the line is cut, so that
    /// none is cut in two and half shown.
    pub fn show(&self, line: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(line).into_owned();
        for secret in self.secrets.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        let text = redact_bearer(text.trim_end());
        let mut end = text.len().min(MAX_LOGGED_LINE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // Control characters escaped (a terminal reading the log must not obey them); quotes
        // and backslashes left as they are, since the log's JSON escapes them once already.
        let mut shown = String::with_capacity(end);
        for c in text[..end].chars() {
            if c.is_control() {
                shown.extend(c.escape_debug());
            } else {
                shown.push(c);
            }
        }
        if end < text.len() {
            shown.push_str(" …");
        }
        shown
    }
}

/// `text` with the word after each `Bearer ` replaced (one lowercased copy searched, so a
/// long line with many of them stays linear).
fn redact_bearer(text: &str) -> std::borrow::Cow<'_, str> {
    const BEARER: &str = "bearer ";
    let lower = text.to_ascii_lowercase();
    if !lower.contains(BEARER) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(BEARER) {
        let token_start = at + found + BEARER.len();
        out.push_str(&text[at..token_start]);
        let token_len = text[token_start..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
            .unwrap_or(text.len() - token_start);
        if token_len > 0 {
            out.push_str(REDACTED);
        }
        at = token_start + token_len;
    }
    out.push_str(&text[at..]);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_bearer_tokens_are_replaced_and_long_lines_cut() {
        let lines = LogLines::new(["s3cret-token".to_owned(), "1".to_owned()]);
        assert_eq!(
            lines.show(b"using s3cret-token for 1 call\n"),
            "using REDACTED for 1 call"
        );
        assert_eq!(
            lines.show(b"Authorization: Bearer abc.def, then BEARER xyz"),
            "Authorization: Bearer REDACTED, then BEARER REDACTED"
        );
        assert_eq!(lines.show(b"a\tb\x1b[0m"), "a\\tb\\u{1b}[0m");
        let long = vec![b'x'; MAX_LOGGED_LINE + 10];
        let shown = lines.show(&long);
        assert!(shown.ends_with(" …") && shown.len() == MAX_LOGGED_LINE + " …".len());
    }
}
