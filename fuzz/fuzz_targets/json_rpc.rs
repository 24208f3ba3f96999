//! The JSON-RPC entry: any body POSTed with the right key to `/mcp` goes through the gate,
//! the router, `json_rpc_errors` and rmcp to latchkey's tools, and comes back as an HTTP
//! answer with a JSON body (a JSON-RPC answer or error) — never a panic, never a hang.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use clap::Parser as _;
use latchkey::cli::{Cli, Command};
use latchkey::connections::WithPeer as _;
use latchkey::listen::Peer;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const KEY: &str = "lk-fuzz-key-0123456789abcdef0123456789abcdef";

type App = latchkey::startup::Gated;

/// The server's own app, as `latchkey serve` builds it (`startup::build`), served in-process.
fn app() -> &'static (tokio::runtime::Runtime, App) {
    static APP: OnceLock<(tokio::runtime::Runtime, App)> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let line = ["latchkey", "serve", "--api-key", KEY, "--no-console", "--max-body", "64KiB"];
        let Command::Serve(args) = Cli::try_parse_from(line).unwrap().command else {
            unreachable!("serve was asked for")
        };
        let app = runtime.block_on(async {
            let app = latchkey::startup::build(&args, None).unwrap();
            app.gated().with_peer(Peer::Tcp("127.0.0.1:40000".parse().unwrap()))
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
