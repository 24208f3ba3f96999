//! The HTTP routes, and which checks the gate in front of them makes for each.
//!
//! | route                          | Host/Origin guard | key |
//! |--------------------------------|-------------------|-----|
//! | `/healthz`, `{base}/healthz`   | no                | no  |
//! | `/.well-known/*` (and `{base}`)| yes               | no  |
//! | `{base}/oauth/*` (`--oauth`)   | yes               | no  |
//! | `{base}/console/*` (console)   | yes               | no (it signs in itself) |
//! | `{base}/activity` (console)    | yes               | yes (an API key) |
//! | `{base}/mcp`, everything else  | yes               | yes |
//!
//! The checks themselves run in [`crate::gate`], before routing; [`Paths`] is the one table
//! both the gate and the router are built from, so they cannot disagree on a path.

pub mod health;
mod in_flight;
mod json_rpc_errors;
pub mod mcp;
pub mod redirect;
pub mod well_known;

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get};

use crate::configuration::BasePath;
use crate::error_response::json_error;
use crate::oauth::{self, OAuth};

pub use mcp::{McpOptions, SessionLimits};

/// Which checks a request gets before it is routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Neither guard nor key: health checks come from load balancers and probes.
    Open,
    /// Host/Origin guard only: OAuth discovery probes come before any key is known.
    Guarded,
    /// Guard and key.
    Protected,
}

/// A path's [`Access`] and the route template it matched (`http.route`), if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub access: Access,
    pub route: Option<&'a str>,
}

/// What a recorded path shows in place of what it hides (a key may be a path segment).
pub const REDACTED_SEGMENTS: &str = "{redacted}";

/// Well-known documents that clients probe for (RFC 8615 names); any other name may be
/// anything, a key included, and is not recorded.
const WELL_KNOWN_NAMES: [&str; 5] = [
    "oauth-protected-resource",
    "oauth-authorization-server",
    "openid-configuration",
    "mcp",
    "acme-challenge",
];

/// The paths latchkey serves.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The base path with a trailing `/` (`/` when there is none): the prefix of every
    /// route, and the longest one an unknown path may be shown up to.
    base: String,
    health: Vec<String>,
    /// `…/.well-known/` prefixes; the route is the prefix plus `{*rest}`.
    well_known: Vec<(String, String)>,
    /// `{base}/mcp` and `{base}/mcp/`.
    mcp: [String; 2],
    /// The OAuth endpoints (`--oauth`), each served exactly.
    oauth: Vec<String>,
    /// The console's pages (unless `--no-console`), each served exactly.
    console: Vec<String>,
    /// `{base}/activity`, the feed of `latchkey watch` (with the console).
    activity: Option<String>,
}

impl Paths {
    /// `oauth`, `console`: whether the OAuth endpoints, the console are served.
    pub fn new(base: &BasePath, oauth: bool, console: bool) -> Self {
        // Health and discovery at the root and, when there is one, under the base path too.
        let mut roots = vec![String::new()];
        if !base.as_str().is_empty() {
            roots.push(base.as_str().to_owned());
        }
        let mcp = base.mcp();
        Self {
            base: base.join("/"),
            health: roots.iter().map(|r| format!("{r}/healthz")).collect(),
            well_known: roots
                .iter()
                .map(|r| {
                    let prefix = format!("{r}/.well-known/");
                    let route = format!("{prefix}{{*rest}}");
                    (prefix, route)
                })
                .collect(),
            mcp: [format!("{mcp}/"), mcp],
            oauth: if oauth {
                oauth::ENDPOINTS.iter().map(|e| base.join(e)).collect()
            } else {
                Vec::new()
            },
            console: if console {
                crate::console::PATHS.iter().map(|p| base.join(p)).collect()
            } else {
                Vec::new()
            },
            activity: console.then(|| base.join(crate::console::ACTIVITY)),
        }
    }

    /// The MCP endpoint's path.
    pub fn mcp(&self) -> &str {
        &self.mcp[1]
    }

    /// Whether a matched route is the activity feed (`latchkey watch`'s).
    pub fn is_activity(&self, route: &str) -> bool {
        self.activity.as_deref() == Some(route)
    }

    /// Whether a matched route is the MCP endpoint.
    pub fn is_mcp(&self, route: &str) -> bool {
        self.mcp.iter().any(|m| m == route)
    }

    /// What of `path` may be recorded in a log line or a span. A path is shown whole only
    /// when it is one latchkey serves (or a well-known probe for one); anything else is
    /// shown up to the longest prefix latchkey serves, the rest replaced by
    /// [`REDACTED_SEGMENTS`]: people whose client drops query strings are told to put
    /// the key in the path (`/mcp/<key>`), and it must not reach the log from there.
    pub fn shown<'p>(&self, path: &'p str) -> Cow<'p, str> {
        if self
            .mcp
            .iter()
            .chain(&self.health)
            .chain(&self.oauth)
            .chain(&self.console)
            .chain(&self.activity)
            .any(|p| p == path)
        {
            return Cow::Borrowed(path);
        }
        for (prefix, _) in &self.well_known {
            if let Some(rest) = path.strip_prefix(prefix.as_str()) {
                let (name, after) = match rest.split_once('/') {
                    Some((name, after)) => (name, Some(after)),
                    None => (rest, None),
                };
                if !WELL_KNOWN_NAMES.contains(&name) {
                    return Cow::Owned(format!("{prefix}{REDACTED_SEGMENTS}"));
                }
                // RFC 9728 puts the resource's path after the name: `…/oauth-protected-resource/mcp`.
                return match after {
                    None => Cow::Borrowed(path),
                    Some(after) if self.mcp[1].strip_prefix('/') == Some(after) => {
                        Cow::Borrowed(path)
                    }
                    Some(_) => Cow::Owned(format!("{prefix}{name}/{REDACTED_SEGMENTS}")),
                };
            }
        }
        // The base path itself (`/p` of `/p/`) holds nothing but what was configured.
        if path.len() + 1 == self.base.len() && self.base.starts_with(path) {
            return Cow::Borrowed(path);
        }
        let prefix = [self.mcp[0].as_str(), &self.base, "/"]
            .into_iter()
            .find(|p| path.starts_with(p))
            .unwrap_or("/");
        if path == prefix {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(format!("{prefix}{REDACTED_SEGMENTS}"))
        }
    }

    /// How the router will treat `path` (as axum matches it: the raw path, not decoded).
    pub fn classify(&self, path: &str) -> Matched<'_> {
        if let Some(route) = self.mcp.iter().find(|m| *m == path) {
            return Matched {
                access: Access::Protected,
                route: Some(route),
            };
        }
        if let Some(route) = self.health.iter().find(|h| *h == path) {
            return Matched {
                access: Access::Open,
                route: Some(route),
            };
        }
        if let Some(route) = self.activity.iter().find(|a| *a == path) {
            return Matched {
                access: Access::Protected,
                route: Some(route),
            };
        }
        if let Some(route) = self.oauth.iter().chain(&self.console).find(|o| *o == path) {
            return Matched {
                access: Access::Guarded,
                route: Some(route),
            };
        }
        for (prefix, route) in &self.well_known {
            // A catch-all matches one segment or more, never nothing.
            if path.len() > prefix.len() && path.starts_with(prefix.as_str()) {
                return Matched {
                    access: Access::Guarded,
                    route: Some(route),
                };
            }
        }
        Matched {
            access: Access::Protected,
            route: None,
        }
    }

    /// The router for these paths; `gate::Gate` must stand in front of it.
    pub fn router(
        &self,
        mcp: &McpOptions,
        oauth: Option<Arc<OAuth>>,
        console: Option<crate::console::ConsoleParts>,
    ) -> Router {
        let endpoint = mcp::endpoint(mcp);
        let mcp_at: Arc<str> = self.mcp[0].trim_end_matches('/').into();
        let mut router = Router::new().fallback(move || not_found(mcp_at.clone()));
        for path in &self.mcp {
            router = router.route(path, endpoint.clone());
        }
        for path in &self.health {
            router = router.route(path, get(health::healthz).with_state(mcp.upstreams.clone()));
        }
        let discovery = well_known::Discovery {
            oauth: oauth.clone(),
            base: self.base.trim_end_matches('/').to_owned(),
        };
        for (_, route) in &self.well_known {
            router = router.route(route, any(well_known::serve).with_state(discovery.clone()));
        }
        if let Some(console) = console {
            router = router.merge(crate::console::router(console));
        }
        match oauth {
            Some(oauth) => router.merge(oauth::router(oauth, discovery.base.as_str())),
            None => router,
        }
    }
}

/// Where MCP is, said: a client pointed at the wrong base path (a proxy's prefix, a
/// `--base-path` left out) learns the right one, and `latchkey doctor` shows it. The base
/// path is no secret: the protected resource metadata names it too.
async fn not_found(mcp_at: Arc<str>) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("Nothing here: MCP is served at {mcp_at}."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_as_the_router_routes_them() {
        let paths = Paths::new(&"/p".parse().unwrap(), true, true);
        let cases = [
            ("/p/mcp", Access::Protected, Some("/p/mcp")),
            ("/p/mcp/", Access::Protected, Some("/p/mcp/")),
            ("/mcp", Access::Protected, None),
            ("/healthz", Access::Open, Some("/healthz")),
            ("/p/healthz", Access::Open, Some("/p/healthz")),
            ("/healthz/", Access::Protected, None),
            ("/p/healthz/x", Access::Protected, None),
            (
                "/.well-known/oauth-authorization-server",
                Access::Guarded,
                Some("/.well-known/{*rest}"),
            ),
            (
                "/p/.well-known/a/b",
                Access::Guarded,
                Some("/p/.well-known/{*rest}"),
            ),
            ("/.well-known/", Access::Protected, None),
            ("/.well-known", Access::Protected, None),
            ("/nowhere", Access::Protected, None),
            ("/p/oauth/token", Access::Guarded, Some("/p/oauth/token")),
            ("/oauth/token", Access::Protected, None),
            ("/p/console", Access::Guarded, Some("/p/console")),
            (
                "/p/console/events",
                Access::Guarded,
                Some("/p/console/events"),
            ),
            ("/p/console/other", Access::Protected, None),
            ("/p/activity", Access::Protected, Some("/p/activity")),
        ];
        for (path, access, route) in cases {
            assert_eq!(paths.classify(path), Matched { access, route }, "{path}");
        }
        let root = Paths::new(&BasePath::default(), false, false);
        assert_eq!(root.classify("/mcp").access, Access::Protected);
        assert_eq!(root.classify("/mcp").route, Some("/mcp"));
        assert_eq!(root.classify("/healthz").access, Access::Open);
        assert_eq!(root.health.len(), 1);
    }

    #[test]
    fn only_served_paths_are_shown_whole() {
        let key = "lk-test-key-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e";
        let paths = Paths::new(&"/p".parse().unwrap(), true, true);
        let cases = [
            ("/p/mcp", "/p/mcp".to_owned()),
            ("/p/mcp/", "/p/mcp/".to_owned()),
            ("/healthz", "/healthz".to_owned()),
            ("/p", "/p".to_owned()),
            ("/p/", "/p/".to_owned()),
            ("/", "/".to_owned()),
            (
                "/.well-known/oauth-protected-resource/p/mcp",
                "/.well-known/oauth-protected-resource/p/mcp".to_owned(),
            ),
            (
                "/p/.well-known/oauth-authorization-server",
                "/p/.well-known/oauth-authorization-server".to_owned(),
            ),
            (
                &format!("/.well-known/oauth-protected-resource/p/mcp/{key}"),
                "/.well-known/oauth-protected-resource/{redacted}".to_owned(),
            ),
            (
                &format!("/.well-known/{key}"),
                "/.well-known/{redacted}".to_owned(),
            ),
            (&format!("/p/mcp/{key}"), "/p/mcp/{redacted}".to_owned()),
            (&format!("/p/{key}/mcp"), "/p/{redacted}".to_owned()),
            (&format!("/{key}"), "/{redacted}".to_owned()),
            (&format!("/{key}/p/mcp"), "/{redacted}".to_owned()),
            ("/mcp", "/{redacted}".to_owned()),
        ];
        for (path, shown) in cases {
            assert_eq!(paths.shown(path), shown, "{path}");
        }
        let root = Paths::new(&BasePath::default(), false, false);
        assert_eq!(root.shown("/mcp"), "/mcp");
        assert_eq!(root.shown(&format!("/mcp/{key}")), "/mcp/{redacted}");
        assert_eq!(root.shown(&format!("/{key}")), "/{redacted}");
        assert_eq!(root.shown(&format!("/{key}/mcp")), "/{redacted}");
        assert_eq!(
            root.shown("/.well-known/oauth-protected-resource/mcp"),
            "/.well-known/oauth-protected-resource/mcp"
        );
    }
}
