//! Values given on the command line or in the configuration file that may be secrets:
//! literal, `@/path` (the file's contents, trimmed) or `$NAME` (an environment variable),
//! so that a secret need not sit in a command line or a file under version control.

use anyhow::Context as _;
use axum::http::{HeaderName, HeaderValue};

/// The value `given` stands for; `what` names it in errors (never the value).
pub fn resolve(given: &str, what: &str) -> anyhow::Result<String> {
    if let Some(path) = given.strip_prefix('@') {
        Ok(std::fs::read_to_string(path)
            .with_context(|| format!("{what}: cannot read {path}"))?
            .trim()
            .to_owned())
    } else if let Some(var) = given.strip_prefix('$') {
        if var.starts_with("LATCHKEY_") {
            // latchkey's own settings hold its keys: none may reach an upstream.
            anyhow::bail!("{what}: ${var} is latchkey's own setting, never passed to an upstream");
        }
        std::env::var(var).with_context(|| format!("{what}: ${var} is not set"))
    } else {
        Ok(given.to_owned())
    }
}

/// A header to send an upstream, its value resolved and marked sensitive.
pub fn header(name: &str, value: &str, what: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let name = HeaderName::try_from(name.trim())
        .with_context(|| format!("{what}: {:?} is not a header name", name.trim()))?;
    let what = format!("{what} {name}");
    let value = resolve(value.trim(), &what)?;
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| anyhow::anyhow!("{what}: the value is not a valid header value"))?;
    value.set_sensitive(true);
    Ok((name, value))
}
