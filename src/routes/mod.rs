//! The HTTP routes, and which checks the gate in front of them makes for each.
//!
//! | route                          | Host/Origin guard | key |
//! |--------------------------------|-------------------|-----|
//! | `/healthz`, `{base}/healthz`   | no                | no  |
//! | `/.well-known/*` (and `{base}`)| yes               | no  |
//! | `{base}/mcp`, everything else  | yes               | yes |
//!
//! The checks themselves run in [`crate::gate`], before routing; [`Paths`] is the one table
//! both the gate and the router are built from, so they cannot disagree on a path.

pub mod health;
pub mod mcp;
pub mod redirect;
pub mod well_known;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get};

use crate::configuration::BasePath;
use crate::error_response::json_error;

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

/// The paths latchkey serves.
#[derive(Clone, Debug)]
pub struct Paths {
    health: Vec<String>,
    /// `…/.well-known/` prefixes; the route is the prefix plus `{*rest}`.
    well_known: Vec<(String, String)>,
    /// `{base}/mcp` and `{base}/mcp/`.
    mcp: [String; 2],
}

impl Paths {
    pub fn new(base: &BasePath) -> Self {
        // Health and discovery at the root and, when there is one, under the base path too.
        let mut roots = vec![String::new()];
        if !base.as_str().is_empty() {
            roots.push(base.as_str().to_owned());
        }
        let mcp = base.join("/mcp");
        Self {
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
        }
    }

    /// The MCP endpoint's path.
    pub fn mcp(&self) -> &str {
        &self.mcp[1]
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
    pub fn router(&self, mcp: &McpOptions) -> Router {
        let endpoint = mcp::endpoint(mcp);
        let mut router = Router::new().fallback(not_found);
        for path in &self.mcp {
            router = router.route(path, endpoint.clone());
        }
        for path in &self.health {
            router = router.route(path, get(health::healthz));
        }
        for (_, route) in &self.well_known {
            router = router.route(route, any(well_known::not_here));
        }
        router
    }
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "Nothing here: MCP is served at the /mcp path (under the base path, if one is set).",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_as_the_router_routes_them() {
        let paths = Paths::new(&"/p".parse().unwrap());
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
        ];
        for (path, access, route) in cases {
            assert_eq!(paths.classify(path), Matched { access, route }, "{path}");
        }
        let root = Paths::new(&BasePath::default());
        assert_eq!(root.classify("/mcp").access, Access::Protected);
        assert_eq!(root.classify("/mcp").route, Some("/mcp"));
        assert_eq!(root.classify("/healthz").access, Access::Open);
        assert_eq!(root.health.len(), 1);
    }
}
