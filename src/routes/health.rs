//! `/healthz`, without a key: 200 `ok` when latchkey can answer MCP; with an upstream that is
//! not ready yet (or down), 503 and a JSON body saying which and why.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::upstream::{State as UpstreamState, Upstream};

pub async fn healthz(State(upstream): State<Option<Upstream>>) -> Response {
    let Some(upstream) = upstream else {
        return "ok".into_response();
    };
    let (status, reason) = match upstream.state() {
        UpstreamState::Ready(_) => return "ok".into_response(),
        UpstreamState::Starting => ("starting", "connecting and initializing".to_owned()),
        UpstreamState::Down(reason) => ("down", reason),
        UpstreamState::Stopped => ("stopped", "latchkey is shutting down".to_owned()),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "status": status,
            "upstream": upstream.name(),
            "reason": reason,
        })),
    )
        .into_response()
}
