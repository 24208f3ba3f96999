//! Host and Origin checks against DNS rebinding: a web page must not be able to reach
//! latchkey through the victim's browser under a name or origin latchkey does not serve.
//! The MCP spec requires servers to validate Origin; requests without one (servers, CLIs)
//! pass.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;

use crate::configuration::PublicUrl;
use crate::error_response::json_error;

/// Origins of the hosted clients latchkey is built for.
pub const DEFAULT_ORIGINS: [&str; 4] = [
    "https://chatgpt.com",
    "https://chat.openai.com",
    "https://claude.ai",
    "https://claude.com",
];

/// Host names that always mean this machine.
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// An `--allowed-host` entry: `*`, `host` (any port) or `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Host { host: String, port: Option<u16> },
}

/// Splits `host[:port]` / `[v6][:port]` / bare `v6`; the host comes back lowercase, without
/// brackets or a trailing dot. `port` is `Some(None)` for `*` when `star_port` is allowed.
fn split_host_port(s: &str, star_port: bool) -> Option<(Cow<'_, str>, Option<Option<u16>>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else if s.bytes().filter(|&b| b == b':').count() > 1 {
        (s, None) // a bare IPv6 address
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let host = lowercase(host.trim_end_matches('.'));
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None => None,
        Some("*") if star_port => Some(None),
        Some(p) => Some(Some(p.parse::<u16>().ok()?)),
    };
    Some((host, port))
}

/// `s` in lowercase, copied only when it is not already (this runs on every request).
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        match split_host_port(s, false) {
            Some((host, port)) => Ok(HostPattern::Host {
                host: host.into_owned(),
                port: port.flatten(),
            }),
            None => Err("expected a host name, host:port, [v6]:port or *".into()),
        }
    }
}

impl HostPattern {
    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Host { host: h, port: p } => h == host && (p.is_none() || *p == port),
        }
    }
}

/// An `--allowed-origin` entry: `*`, `null`, or `scheme://host[:port|:*]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginPattern {
    Any,
    Null,
    Origin {
        scheme: String,
        host: String,
        /// `None` matches any port; an origin without a port means the scheme's default.
        port: Option<u16>,
    },
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

/// Parses `scheme://host[:port]` (and `:*` when `star_port`) into scheme, host and port
/// (`None` = any port).
fn parse_origin(s: &str, star_port: bool) -> Option<(Cow<'_, str>, Cow<'_, str>, Option<u16>)> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = lowercase(scheme);
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let (host, port) = split_host_port(rest, star_port)?;
    let port = match port {
        Some(port) => port,
        None => Some(default_port(&scheme)?),
    };
    Some((scheme, host, port))
}

impl FromStr for OriginPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "*" => Ok(OriginPattern::Any),
            "null" => Ok(OriginPattern::Null),
            _ => parse_origin(s.trim_end_matches('/'), true)
                .map(|(scheme, host, port)| OriginPattern::Origin {
                    scheme: scheme.into_owned(),
                    host: host.into_owned(),
                    port,
                })
                .ok_or_else(|| "expected scheme://host[:port] (port * for any), null, or *".into()),
        }
    }
}

impl OriginPattern {
    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Null => origin == "null",
            OriginPattern::Origin { scheme, host, port } => parse_origin(origin, false)
                .is_some_and(|(s, h, p)| {
                    s == scheme.as_str() && h == host.as_str() && (port.is_none() || *port == p)
                }),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Host(String),
    Origin(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Host(host) => write!(
                f,
                "Host {host:?} is not served here; start latchkey with --allowed-host or \
                 --public-url naming it"
            ),
            Refusal::Origin(origin) => write!(
                f,
                "Origin {origin:?} is not allowed; start latchkey with --allowed-origin naming it \
                 if a browser app of yours needs it"
            ),
        }
    }
}

/// The allowed Host and Origin values.
#[derive(Debug)]
pub struct HostOriginGuard {
    hosts: Vec<HostPattern>,
    origins: Vec<OriginPattern>,
}

impl HostOriginGuard {
    /// Explicit lists replace the defaults; the defaults include `--public-url`'s host/origin.
    pub fn new(
        hosts: &[HostPattern],
        origins: &[OriginPattern],
        public_url: Option<&PublicUrl>,
        domains: &[String],
    ) -> Self {
        let mut hosts = if hosts.is_empty() {
            DEFAULT_HOSTS
                .iter()
                .copied()
                .chain(public_url.map(PublicUrl::authority))
                .map(|h| h.parse().expect("default hosts parse"))
                .collect()
        } else {
            hosts.to_vec()
        };
        let mut origins = if origins.is_empty() {
            DEFAULT_ORIGINS
                .iter()
                .copied()
                .chain(public_url.map(PublicUrl::origin))
                .map(|o| o.parse().expect("default origins parse"))
                .collect()
        } else {
            origins.to_vec()
        };
        // Domains latchkey has certificates for are its own, whatever the lists say.
        for domain in domains {
            hosts.push(domain.parse().expect("ACME domains are host names"));
            origins.push(
                format!("https://{domain}")
                    .parse()
                    .expect("ACME domains make origins"),
            );
        }
        Self { hosts, origins }
    }

    /// Allows the request when its `Host` is allowed and each `Origin` is either allowed, the
    /// request's own origin, or — for a loopback `Host` — a loopback origin. DNS rebinding
    /// is a *foreign* page reaching latchkey under a name it serves; a page of the host
    /// itself, or a local page talking to a local listener, is not that attack. Returns the
    /// (first) `Origin` allowed, whose page may then read the answer (`cors`).
    pub fn check<'h>(
        &self,
        headers: &'h HeaderMap,
        uri: &Uri,
    ) -> Result<Option<&'h HeaderValue>, Refusal> {
        let mut host_headers = headers.get_all(header::HOST).iter();
        let host_header = host_headers.next();
        // Two Hosts: which one a proxy in front routed by is anyone's guess.
        if host_headers.next().is_some() {
            return Err(Refusal::Host("several Host headers".into()));
        }
        // An absolute-form request (`POST http://other/mcp`) names a host of its own, which
        // must be allowed as much as the Host header.
        if let (Some(_), Some(authority)) = (host_header, uri.authority()) {
            let allowed = split_host_port(authority.as_str(), false).is_some_and(|(name, port)| {
                self.hosts.iter().any(|p| p.matches(&name, port.flatten()))
            });
            if !allowed {
                return Err(Refusal::Host(without_userinfo(authority.as_str())));
            }
        }
        let raw = host_header
            .map(|h| String::from_utf8_lossy(h.as_bytes()))
            .or_else(|| uri.authority().map(|a| Cow::Borrowed(a.as_str())));
        // No Host at all (HTTP/1.0, some local tools) cannot come from a rebinding browser.
        let host = match &raw {
            None => None,
            Some(raw) => {
                let parsed = split_host_port(raw, false).and_then(|(name, port)| {
                    let port = port.flatten();
                    let pattern = self.hosts.iter().find(|p| p.matches(&name, port))?;
                    Some(OwnHost {
                        // `*` checks nothing, so it cannot vouch for a same-origin page:
                        // that is exactly what a rebinding page looks like.
                        named: matches!(pattern, HostPattern::Host { .. }),
                        name,
                        port,
                    })
                });
                match parsed {
                    Some(host) => Some(host),
                    None => return Err(Refusal::Host(without_userinfo(raw))),
                }
            }
        };
        let origins = headers.get_all(header::ORIGIN);
        for value in &origins {
            let origin = String::from_utf8_lossy(value.as_bytes());
            let allowed = self.origins.iter().any(|p| p.matches(&origin))
                || host.as_ref().is_some_and(|host| host.vouches_for(&origin));
            if !allowed {
                return Err(Refusal::Origin(origin.into_owned()));
            }
        }
        Ok(origins.iter().next())
    }
}

/// The request's `Host`, once an allowed pattern matched it.
struct OwnHost<'a> {
    name: Cow<'a, str>,
    port: Option<u16>,
    /// Matched by a named pattern, not `*`.
    named: bool,
}

impl OwnHost<'_> {
    /// Whether `origin` is this host's own (same name; same port, or the scheme's default
    /// when `Host` has none) or, for a loopback host, any loopback origin.
    fn vouches_for(&self, origin: &str) -> bool {
        let Some((scheme, name, port)) = parse_origin(origin, false) else {
            return false;
        };
        // Asked only when there is an Origin: most requests (servers, CLIs) send none.
        if is_loopback(&self.name) && is_loopback(&name) && matches!(&*scheme, "http" | "https") {
            return true;
        }
        self.named
            && name == self.name
            && match self.port {
                Some(own) => port == Some(own),
                None => port == default_port(&scheme),
            }
    }
}

/// `localhost` or a loopback address (host names come lowercase, without brackets).
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The 403 for a request whose Host or Origin is not allowed (logged, with the reason).
/// An authority as a refusal may quote it: without the `user:password@` a request line or
/// Host header may carry (a key could be put there), which is never repeated.
fn without_userinfo(authority: &str) -> String {
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("[userinfo removed]@{host}"),
        None => authority.to_owned(),
    }
}

pub fn refuse(refusal: &Refusal) -> Response {
    tracing::warn!(reason = %refusal, "refused a request (DNS-rebinding guard)");
    json_error(StatusCode::FORBIDDEN, "forbidden", &refusal.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_authority_is_quoted_without_its_userinfo() {
        assert_eq!(
            without_userinfo("user:secret-key@evil.example:8080"),
            "[userinfo removed]@evil.example:8080"
        );
        assert_eq!(without_userinfo("evil.example"), "evil.example");
    }

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, host.parse().unwrap());
        }
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, origin.parse().unwrap());
        }
        h
    }

    fn check(guard: &HostOriginGuard, host: Option<&str>, origin: Option<&str>) -> bool {
        guard
            .check(&headers(host, origin), &Uri::from_static("/mcp"))
            .is_ok()
    }

    #[test]
    fn defaults_allow_loopback_and_the_public_url() {
        let public: PublicUrl = "https://example.com/mcptest".parse().unwrap();
        let guard = HostOriginGuard::new(&[], &[], Some(&public), &[]);
        assert!(check(&guard, Some("localhost"), None));
        assert!(check(&guard, Some("127.0.0.1:8080"), None));
        assert!(check(&guard, Some("[::1]:8080"), None));
        assert!(check(&guard, Some("LOCALHOST."), None));
        assert!(check(&guard, Some("example.com"), None));
        assert!(check(&guard, None, None));
        assert!(!check(&guard, Some("evil.com"), None));
        assert!(!check(&guard, Some("example.com.evil.com"), None));
        assert!(
            check(&guard, Some("example.com:8443"), None),
            "a bare host allows any port"
        );
        assert!(check(
            &guard,
            Some("localhost"),
            Some("https://chatgpt.com")
        ));
        assert!(check(
            &guard,
            Some("localhost"),
            Some("https://claude.ai:443")
        ));
        assert!(check(
            &guard,
            Some("localhost"),
            Some("https://example.com")
        ));
        assert!(!check(
            &guard,
            Some("localhost"),
            Some("http://chatgpt.com")
        ));
        assert!(!check(
            &guard,
            Some("localhost"),
            Some("https://chatgpt.com:8443")
        ));
        assert!(!check(&guard, Some("localhost"), Some("https://evil.com")));
        assert!(!check(&guard, Some("localhost"), Some("null")));
    }

    #[test]
    fn a_page_of_the_host_itself_or_a_local_page_on_a_loopback_host_passes() {
        let guard = HostOriginGuard::new(&[], &[], None, &[]);
        // Same origin.
        assert!(check(
            &guard,
            Some("localhost:8080"),
            Some("http://localhost:8080")
        ));
        // Loopback origins, any port, for a loopback Host.
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost",
        ] {
            for origin in [
                "http://localhost:6274",
                "http://127.0.0.1:8080",
                "http://[::1]:3000",
                "https://localhost",
            ] {
                assert!(check(&guard, Some(host), Some(origin)), "{host} {origin}");
            }
            // Foreign origins stay out, even for a loopback Host.
            for origin in [
                "https://evil.example",
                "http://localhost.evil.example",
                "null",
            ] {
                assert!(!check(&guard, Some(host), Some(origin)), "{host} {origin}");
            }
        }
        // A rebinding attempt: the foreign name in Host.
        assert!(!check(
            &guard,
            Some("evil.example"),
            Some("http://evil.example")
        ));
        // Same origin for a named public host: same port (or the scheme's default) only.
        let guard = HostOriginGuard::new(&["mcp.example.org".parse().unwrap()], &[], None, &[]);
        assert!(check(
            &guard,
            Some("mcp.example.org"),
            Some("https://mcp.example.org")
        ));
        assert!(check(
            &guard,
            Some("mcp.example.org:8443"),
            Some("https://mcp.example.org:8443")
        ));
        assert!(!check(
            &guard,
            Some("mcp.example.org"),
            Some("https://mcp.example.org:8443")
        ));
        assert!(!check(
            &guard,
            Some("mcp.example.org"),
            Some("http://localhost:8080")
        ));
        // `*` checks no Host, so it vouches for no origin: a rebinding page is same-origin.
        let any = HostOriginGuard::new(&[HostPattern::Any], &[], None, &[]);
        assert!(!check(
            &any,
            Some("evil.example"),
            Some("http://evil.example")
        ));
        assert!(check(
            &any,
            Some("127.0.0.1:8080"),
            Some("http://localhost:5173")
        ));
    }

    #[test]
    fn explicit_lists_replace_defaults() {
        let hosts = ["mcp.example.org:8443".parse().unwrap()];
        let origins = [
            "http://localhost:*".parse().unwrap(),
            "null".parse().unwrap(),
        ];
        let guard = HostOriginGuard::new(&hosts, &origins, None, &[]);
        assert!(check(&guard, Some("mcp.example.org:8443"), None));
        assert!(!check(&guard, Some("mcp.example.org"), None));
        assert!(!check(&guard, Some("localhost"), None));
        assert!(check(
            &guard,
            Some("mcp.example.org:8443"),
            Some("http://localhost:6274")
        ));
        assert!(check(&guard, Some("mcp.example.org:8443"), Some("null")));
        assert!(!check(
            &guard,
            Some("mcp.example.org:8443"),
            Some("https://chatgpt.com")
        ));
        let any = HostOriginGuard::new(&[HostPattern::Any], &[OriginPattern::Any], None, &[]);
        assert!(check(
            &any,
            Some("anything.test"),
            Some("https://whatever.test")
        ));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a b", "host:port", "[::1", "host:*"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} accepted");
        }
        for bad in ["chatgpt.com", "https://", "ftp://x", "https://x:y"] {
            assert!(bad.parse::<OriginPattern>().is_err(), "{bad:?} accepted");
        }
    }
}
