//! The JSON-RPC entry: any body POSTed with the right key to `/mcp` goes through the gate,
//! the router, `json_rpc_errors` and rmcp to latchkey's tools, and comes back as an HTTP
//! answer with a JSON body (a JSON-RPC answer or error) — never a panic, never a hang.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use latchkey::gate::{GateLayer, RequestLimits};
use latchkey::host_origin::HostOriginGuard;
use latchkey::keys::{KeyEntry, KeySet};
use latchkey::routes::{McpOptions, Paths};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt};

const KEY: &str = "lk-fuzz-key-0123456789abcdef0123456789abcdef";

type App = latchkey::gate::Gate<axum::Router>;

fn app() -> &'static (tokio::runtime::Runtime, App) {
    static APP: OnceLock<(tokio::runtime::Runtime, App)> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let app = runtime.block_on(async {
            let paths = Paths::new(&Default::default(), false);
            let router = paths.router(&McpOptions {
                sessions: None,
                shutdown: Default::default(),
                max_body: 64 * 1024,
                tracing: None,
                upstreams: None,
            }, None);
            let keys = KeySet::new(&[KeyEntry::Plain(KEY.into())]);
            let limits = RequestLimits {
                max_uri_bytes: 8192,
                max_requests: 16,
                allowed_clients: Default::default(),
                lockout: Arc::new(latchkey::lockout::Lockout::new(0, Duration::from_secs(1))),
            };
            GateLayer::new(
                paths,
                HostOriginGuard::new(&[], &[], None, &[]),
                Arc::new(arc_swap::ArcSwap::from_pointee(keys)),
                limits,
                None,
                None,
            )
            .layer(router)
        });
        (runtime, app)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, app) = app();
    let request = http::Request::post("/mcp")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Body::from(data.to_vec()))
        .unwrap();
    runtime.block_on(async {
        let response = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(request))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        if status == http::StatusCode::ACCEPTED {
            // A notification or a response: no body.
            return;
        }
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("{status}: not JSON ({e}): {:?}", String::from_utf8_lossy(&body))
        });
        assert_eq!(value["jsonrpc"], "2.0", "{status}: {value}");
        assert!(
            status.is_success() || status.is_client_error(),
            "{status}: {value}"
        );
    });
});
