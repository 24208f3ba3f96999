//! Which redirect URIs a client may use: ChatGPT's, Claude's, loopback `http` on any port
//! (Claude Code, MCP Inspector, the SDKs' local callbacks), and what `--oauth-redirect-uri`
//! adds. A code is only ever sent to one of these, so a stranger who registers a client
//! cannot have the owner's consent delivered to a host of their own.

const EXACT: [&str; 3] = [
    "https://chatgpt.com/connector_platform_oauth_redirect",
    "https://claude.ai/api/mcp/auth_callback",
    "https://claude.com/api/mcp/auth_callback",
];
/// ChatGPT gives every connector its own callback under this prefix.
const CHATGPT_PREFIX: &str = "https://chatgpt.com/connector/oauth/";

#[derive(Clone, Debug, Default)]
pub struct RedirectUris {
    /// Configured URIs; those ending in `*` are prefixes.
    extra: Vec<String>,
}

impl RedirectUris {
    pub fn new(extra: &[String]) -> Self {
        Self {
            extra: extra.to_vec(),
        }
    }

    pub fn allows(&self, uri: &str) -> bool {
        if uri.contains('#') || uri.len() > 2048 || uri.bytes().any(|b| !b.is_ascii_graphic()) {
            return false;
        }
        if EXACT.contains(&uri) || is_loopback_http(uri) {
            return true;
        }
        if let Some(id) = uri.strip_prefix(CHATGPT_PREFIX) {
            return !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        }
        self.extra
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) => uri.starts_with(prefix),
                None => uri == allowed,
            })
    }
}

/// `http://localhost`, `127.0.0.1` or `[::1]`, any port and path, no user info.
fn is_loopback_http(uri: &str) -> bool {
    let Ok(parsed) = uri.parse::<http::Uri>() else {
        return false;
    };
    let Some(authority) = parsed.authority() else {
        return false;
    };
    // A port, when there is one, must be a port (`:99999` is none).
    let port_ok = match authority
        .as_str()
        .rsplit_once(']')
        .map_or(authority.as_str(), |(_, p)| p)
        .rsplit_once(':')
    {
        Some((_, port)) => port.parse::<u16>().is_ok_and(|p| p > 0),
        None => true,
    };
    parsed.scheme_str() == Some("http")
        && !authority.as_str().contains('@')
        && matches!(authority.host(), "localhost" | "127.0.0.1" | "[::1]")
        && port_ok
}

/// The host a redirect goes to, to show on the consent page.
pub fn host_of(uri: &str) -> String {
    uri.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ports_must_be_ports() {
        assert!(is_loopback_http("http://127.0.0.1:33418/callback"));
        assert!(is_loopback_http("http://[::1]:8080/cb"));
        assert!(is_loopback_http("http://localhost/cb"));
        for bad in [
            "http://127.0.0.1:99999/cb",
            "http://localhost:0/cb",
            "http://[::1]:65536/cb",
            "http://127.0.0.1:/cb",
        ] {
            assert!(!is_loopback_http(bad), "{bad}");
        }
    }

    #[test]
    fn chatgpt_claude_loopback_and_configured_uris_only() {
        let uris = RedirectUris::new(&[
            "https://app.example/cb".into(),
            "https://x.example/o/*".into(),
        ]);
        for ok in [
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "https://chatgpt.com/connector/oauth/AbC-123_x",
            "https://claude.ai/api/mcp/auth_callback",
            "https://claude.com/api/mcp/auth_callback",
            "http://localhost:33418/callback",
            "http://127.0.0.1:6274/oauth/callback",
            "http://[::1]:8/cb",
            "https://app.example/cb",
            "https://x.example/o/anything",
        ] {
            assert!(uris.allows(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/cb",
            "https://chatgpt.com/connector/oauth/",
            "https://chatgpt.com/connector/oauth/a/../../evil",
            "https://chatgpt.com.evil.example/connector_platform_oauth_redirect",
            "https://claude.ai/api/mcp/auth_callback#x",
            "http://localhost.evil.example/cb",
            "http://user@localhost/cb",
            "https://localhost/cb",
            "http://10.0.0.1/cb",
            "https://app.example/cb2",
            "javascript:alert(1)",
        ] {
            assert!(!uris.allows(bad), "{bad}");
        }
        assert_eq!(
            host_of("https://claude.ai/api/mcp/auth_callback"),
            "claude.ai"
        );
    }
}
