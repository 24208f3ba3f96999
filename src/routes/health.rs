//! `/healthz`, without a key: 200 `ok` when latchkey can answer MCP; while an upstream is not
//! ready yet, down, or degraded (its last requests all timed out), 503 and a JSON body
//! saying which and a short reason class. Anyone may ask, so the upstream's own error (which
//! may name a password or a path) is never here: it is in latchkey's (redacted) log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::upstream::{State as UpstreamState, Upstreams};

pub async fn healthz(State(upstreams): State<Option<Upstreams>>) -> Response {
    let not_ready: Vec<_> = upstreams
        .iter()
        .flat_map(Upstreams::iter)
        .filter_map(|upstream| {
            let (status, reason) = match upstream.state() {
                UpstreamState::Ready(_) => match upstream.degraded() {
                    None => return None,
                    Some(n) => (
                        "degraded",
                        format!("its last {n} requests timed out; see latchkey's log"),
                    ),
                },
                UpstreamState::Starting => ("starting", "connecting and initializing".to_owned()),
                UpstreamState::Down(_) => (
                    "down",
                    "cannot connect or initialize; the error is in latchkey's log".to_owned(),
                ),
                UpstreamState::Stopped => ("stopped", "latchkey is shutting down".to_owned()),
            };
            Some(serde_json::json!({
                "status": status,
                "upstream": upstream.name(),
                "reason": reason,
            }))
        })
        .collect();
    let Some(first) = not_ready.first() else {
        return "ok".into_response();
    };
    // The first upstream that is not ready, at the top; every one under "upstreams".
    let mut body = first.clone();
    body["upstreams"] = serde_json::Value::Array(not_ready);
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}
