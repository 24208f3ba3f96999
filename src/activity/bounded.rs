//! What the refusals and clients tables share: a field cut to [`MAX_TEXT`] bytes (a path,
//! a User-Agent, an error's words are the client's), and the time their rows keep.

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

/// Milliseconds since the Unix epoch (0 before it), asked of the clock directly: through
/// `SystemTime`'s `duration_since` and its `u128` milliseconds, it cost twice as much, and
/// every request's client and every call's record asks (bench/instructions, profiled: 84
/// instructions a time).
pub fn now_ms() -> u64 {
    let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME) else {
        return 0;
    };
    let (secs, nanos) = (now.tv_sec(), now.tv_nsec());
    u64::try_from(secs).map_or(0, |s| s * 1000 + nanos as u64 / 1_000_000)
}

#[cfg(test)]
mod tests {
    /// The clock read directly says what `SystemTime` says.
    #[test]
    fn now_is_the_system_times() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let now = super::now_ms();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!((before..=after).contains(&now), "{before} {now} {after}");
    }
}
