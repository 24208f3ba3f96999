//! What the refusals and clients tables share: a field cut to [`MAX_TEXT`] bytes (a path,
//! a User-Agent, an error's words are the client's), and the time their rows keep.

use std::time::SystemTime;

/// The most of any field a refusal or client row keeps.
pub const MAX_TEXT: usize = 256;

/// `text` cut to [`MAX_TEXT`] bytes, at a character.
pub fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
