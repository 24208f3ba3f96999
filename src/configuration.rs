//! Configuration values that need checking beyond their flag, and where keys come from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::SecretString;

use crate::keys::{self, Configured};

/// Where MCP is served, under the base path: the one place this path is written.
pub const MCP_PATH: &str = "/mcp";

/// The path prefix of every route: empty, or `/seg[/seg…]` without a trailing slash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BasePath(String);

impl BasePath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `route` (which starts with `/`) under this base path.
    pub fn join(&self, route: &str) -> String {
        format!("{}{route}", self.0)
    }

    /// The MCP endpoint's path: [`MCP_PATH`] under this base path.
    pub fn mcp(&self) -> String {
        self.join(MCP_PATH)
    }
}

impl FromStr for BasePath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(BasePath::default());
        }
        let valid = trimmed.starts_with('/')
            && trimmed[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            });
        if !valid {
            return Err(
                "expected a path such as /mcptest: starting with /, made of letters, \
                 digits and - . _ ~ between single slashes"
                    .into(),
            );
        }
        Ok(BasePath(trimmed.to_owned()))
    }
}

impl fmt::Display for BasePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `--public-url`: how clients reach latchkey's base path from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    /// Without a trailing slash, e.g. `https://example.com/mcptest`.
    url: String,
    /// `scheme://host[:port]`.
    origin: String,
    /// The host as a Host header names it (with the port when one is given).
    authority: String,
}

impl PublicUrl {
    pub fn as_str(&self) -> &str {
        &self.url
    }
    pub fn origin(&self) -> &str {
        &self.origin
    }
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl FromStr for PublicUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HINT: &str = "expected an http(s) URL such as https://example.com/mcptest";
        let uri: http::Uri = s.parse().map_err(|_| HINT.to_owned())?;
        let scheme = uri.scheme_str().unwrap_or("");
        if scheme != "https" && scheme != "http" {
            return Err(HINT.into());
        }
        let Some(authority) = uri.authority() else {
            return Err(HINT.into());
        };
        if authority.as_str().contains('@') {
            return Err("the URL must not hold a user name or password".into());
        }
        if uri.query().is_some() || s.contains('#') {
            return Err("the URL must not hold a query or fragment (no key here)".into());
        }
        let authority = authority.as_str().to_ascii_lowercase();
        let origin = format!("{scheme}://{authority}");
        let path = uri.path().trim_end_matches('/');
        Ok(PublicUrl {
            url: format!("{origin}{path}"),
            origin,
            authority,
        })
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Where the keys come from, resolved once at start and again on every SIGHUP.
#[derive(Debug)]
pub struct KeySources {
    flag_entries: Vec<Configured>,
    /// `--api-key-file`, or the generated key file when no key is configured.
    pub file: Option<PathBuf>,
    /// True when `file` is the key latchkey generated.
    pub generated: bool,
    /// True when the generated key file was created by this call.
    pub newly_generated: bool,
    /// `--api-key-file` when it was empty at start, so the generated key stands in for it.
    pub empty_file: Option<PathBuf>,
}

impl KeySources {
    /// Checks the configured keys (`--api-key`'s, and `--api-key-file`); with none
    /// configured, makes (or finds) the generated key in `state_dir` (or the default one).
    pub fn resolve(
        api_key: &[SecretString],
        api_key_file: Option<&Path>,
        state_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let flag_entries = keys::parse_flag_entries(api_key)?;
        // An empty key file (a secret left unset) means: no key configured. A missing or
        // unreadable one is an error, so a mistyped path never goes unnoticed.
        let empty_file = match api_key_file {
            Some(path) if flag_entries.is_empty() && keys::key_file_is_empty(path)? => {
                Some(path.to_owned())
            }
            _ => None,
        };
        if empty_file.is_none() && (!flag_entries.is_empty() || api_key_file.is_some()) {
            return Ok(KeySources {
                flag_entries,
                file: api_key_file.map(Path::to_owned),
                generated: false,
                newly_generated: false,
                empty_file: None,
            });
        }
        let state_dir = state_dir_or_default(state_dir)
            .map_err(|e| anyhow::anyhow!("no key configured, and {e} (or set --api-key-file)"))?;
        let (file, newly_generated) = keys::ensure_generated_key(&state_dir)?;
        Ok(KeySources {
            flag_entries,
            file: Some(file),
            generated: true,
            newly_generated,
            empty_file,
        })
    }

    /// The keys now configured: the flag entries, then the file's.
    pub fn load(&self) -> anyhow::Result<Vec<Configured>> {
        let mut entries = self.flag_entries.clone();
        if let Some(file) = &self.file {
            entries.extend(keys::read_key_file(file)?);
        }
        Ok(entries)
    }

    /// Where the keys come from, for a log line.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.flag_entries.is_empty() {
            parts.push("--api-key".to_owned());
        }
        if let Some(file) = &self.file {
            parts.push(display_path(file));
        }
        parts.join(" and ")
    }
}

/// `--state-dir` when given, else `$XDG_STATE_HOME/latchkey`, else `~/.local/state/latchkey`:
/// where the generated key and the OAuth grants are kept.
pub fn state_dir_or_default(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = configured {
        return Ok(dir.to_owned());
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("latchkey"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/latchkey")),
        None => anyhow::bail!(
            "neither XDG_STATE_HOME nor HOME is set: set --state-dir (LATCHKEY_STATE_DIR)"
        ),
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        assert_eq!("".parse::<BasePath>().unwrap().as_str(), "");
        assert_eq!("/".parse::<BasePath>().unwrap().as_str(), "");
        assert_eq!(
            "/mcptest/".parse::<BasePath>().unwrap().as_str(),
            "/mcptest"
        );
        assert_eq!(
            "/a/b-c".parse::<BasePath>().unwrap().join("/mcp"),
            "/a/b-c/mcp"
        );
        for bad in ["mcptest", "/a//b", "/a b", "/a?x=1", "/%2e"] {
            assert!(bad.parse::<BasePath>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn public_urls() {
        let url: PublicUrl = "https://Example.com/mcptest/".parse().unwrap();
        assert_eq!(url.as_str(), "https://example.com/mcptest");
        assert_eq!(url.origin(), "https://example.com");
        assert_eq!(url.authority(), "example.com");
        let url: PublicUrl = "http://host:8443".parse().unwrap();
        assert_eq!(url.as_str(), "http://host:8443");
        assert_eq!(url.authority(), "host:8443");
        for bad in [
            "example.com",
            "ftp://x/",
            "https://x/?api_key=1",
            "https://u:p@x/",
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad:?} accepted");
        }
    }
}
