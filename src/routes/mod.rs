//! The HTTP routes and which checks stand in front of each.
//!
//! | route                          | Host/Origin guard | key |
//! |--------------------------------|-------------------|-----|
//! | `/healthz`, `{base}/healthz`   | no                | no  |
//! | `/.well-known/*` (and `{base}`)| yes               | no  |
//! | `{base}/mcp`, everything else  | yes               | yes |
//!
//! Before any of this, `auth::take_credentials` has taken the key out of the request.

pub mod health;
pub mod mcp;
pub mod redirect;
pub mod well_known;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get};

use crate::auth;
use crate::configuration::BasePath;
use crate::error_response::json_error;
use crate::host_origin::{self, HostOriginGuard};
use crate::keys::KeySet;
use crate::telemetry::Export;
use crate::telemetry::access_log;

pub use mcp::{McpOptions, SessionLimits};

/// Everything the routes need.
pub struct RouteConfig {
    pub base_path: BasePath,
    pub keys: Arc<ArcSwap<KeySet>>,
    pub guard: Arc<HostOriginGuard>,
    pub mcp: McpOptions,
    /// Present when spans and metrics are exported.
    pub export: Option<Export>,
}

/// `route` at the root and, when there is one, under the base path too.
fn both(base: &BasePath, route: &str) -> Vec<String> {
    let mut paths = vec![route.to_owned()];
    if !base.as_str().is_empty() {
        paths.push(base.join(route));
    }
    paths
}

pub fn router(config: RouteConfig) -> Router {
    let base = &config.base_path;
    let mcp_path = base.join("/mcp");

    let mcp = mcp::endpoint(&config.mcp);
    let protected = Router::new()
        .route(&mcp_path, mcp.clone())
        .route(&format!("{mcp_path}/"), mcp)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            config.keys,
            auth::require_key,
        ));

    let mut well_known = Router::new();
    for path in both(base, "/.well-known/{*rest}") {
        well_known = well_known.route(&path, any(well_known::not_here));
    }

    let guarded = protected
        .merge(well_known)
        .layer(middleware::from_fn_with_state(
            config.guard,
            host_origin::guard,
        ));

    let mut health = Router::new();
    for path in both(base, "/healthz") {
        health = health.route(&path, get(health::healthz));
    }

    // Outermost of the route layers, so refusals (401, 403) are logged too.
    health.merge(guarded).layer(middleware::from_fn_with_state(
        config.export,
        access_log::access_log,
    ))
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "Nothing here: MCP is served at the /mcp path (under the base path, if one is set).",
    )
}
