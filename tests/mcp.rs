//! A real MCP client (rmcp) against latchkey over TCP and a Unix socket, stateless and with
//! sessions; and the raw HTTP behaviour clients depend on.

mod common;

use common::{
    App, KEY, Spawn, Via, call_hello, exercise, http, mcp_client, mcp_client_unix, mcp_post, rpc,
};
use futures::StreamExt;
use reqwest::StatusCode;

#[tokio::test]
async fn mcp_client_over_tcp_each_way_of_sending_the_key() {
    let app = App::start(Spawn::default());
    for how in [Via::Query, Via::Bearer, Via::Header] {
        let client = mcp_client(&app.url("/mcp"), KEY, how).await;
        exercise(&client).await;
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn mcp_client_over_unix_socket() {
    let app = App::start(Spawn::default().unix().args(&["--base-path", "/mcptest"]));
    let socket = &app.sockets[0];
    // Behind Apache the backend sees `Host: localhost`.
    for how in [Via::Query, Via::Bearer] {
        let client = mcp_client_unix(socket, "http://localhost/mcptest/mcp", KEY, how).await;
        exercise(&client).await;
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn mcp_client_with_sessions() {
    // rmcp says at INFO when it makes a session: proof that sessions were really used.
    let app = App::start(
        Spawn::default()
            .unix()
            .args(&["--sessions"])
            .env("RUST_LOG", "info,rmcp=info"),
    );
    for how in [Via::Query, Via::Bearer] {
        let client = mcp_client(&app.url("/mcp"), KEY, how).await;
        exercise(&client).await;
        client.cancel().await.unwrap();
    }
    let client = mcp_client_unix(&app.sockets[0], "http://localhost/mcp", KEY, Via::Bearer).await;
    exercise(&client).await;
    client.cancel().await.unwrap();
    // Log lines come from a thread of their own: wait for the third before counting.
    common::wait_for("three sessions in the log", || {
        app.output().matches("create new session").count() >= 3
    });
    let made = app.output().matches("create new session").count();
    assert_eq!(made, 3, "{}", app.output());
}

async fn initialize(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let init = rpc(
        "initialize",
        serde_json::json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}
        }),
    );
    mcp_post(client, url, &init)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn stateless_answers_json_without_a_session() {
    let app = App::start(Spawn::default());
    let client = http();
    let response = initialize(&client, &app.url("/mcp")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("mcp-session-id").is_none());
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["result"]["serverInfo"]["name"], "latchkey");
    // ChatGPT's pattern: the next POST carries no session id, and works.
    let response = mcp_post(&client, &app.url("/mcp"), &call_hello("again"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("Hello again!"));
    // Arguments left out: the name defaults to "world".
    let response = mcp_post(
        &client,
        &app.url("/mcp"),
        &rpc("tools/call", serde_json::json!({"name": "hello"})),
    )
    .bearer_auth(KEY)
    .send()
    .await
    .unwrap();
    assert!(response.text().await.unwrap().contains("Hello world!"));
}

#[tokio::test]
async fn stateless_get_opens_a_kept_alive_event_stream() {
    let app = App::start(Spawn::default());
    let client = http();
    let response = client
        .get(app.url("/mcp"))
        .bearer_auth(KEY)
        .header("accept", "text/event-stream")
        .header("user-agent", "openai-mcp/1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(common::PATIENCE, body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b": latchkey"), "{first:?}");
    // The stream stays open: no end of body right after the comment.
    let next = tokio::time::timeout(std::time::Duration::from_millis(300), body.next()).await;
    assert!(next.is_err(), "the stream ended or sent more: {next:?}");
    // The key is still needed; without text/event-stream the answer is 406, not 405.
    let response = client
        .get(app.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .get(app.url("/mcp"))
        .bearer_auth(KEY)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn sessions_are_capped_and_expire() {
    let app = App::start(Spawn::default().args(&[
        "--sessions",
        "--max-sessions",
        "2",
        "--session-idle-timeout",
        "1s",
    ]));
    let client = http();
    let url = app.url("/mcp");
    let first = initialize(&client, &url).await;
    assert_eq!(first.status(), StatusCode::OK);
    let session = first.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(initialize(&client, &url).await.status(), StatusCode::OK);
    let third = initialize(&client, &url).await;
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.headers()["retry-after"], "5");
    let json: serde_json::Value = third.json().await.unwrap();
    assert_eq!(json["error"], "too_many_sessions");
    // An existing session still works while the cap holds.
    let ping = || {
        mcp_post(&client, &url, &rpc("ping", serde_json::json!({})))
            .bearer_auth(KEY)
            .header("mcp-session-id", &session)
            .send()
    };
    assert_eq!(ping().await.unwrap().status(), StatusCode::OK);
    // Idle sessions expire, and their slots free up.
    common::eventually("idle sessions to expire", || async {
        initialize(&client, &url).await.status() == StatusCode::OK
    })
    .await;
    // The pinged session expires too. A ping keeps a live session alive, so look less often
    // than the idle timeout (1 s): the waiting here is the behaviour under test.
    let start = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        if ping().await.unwrap().status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            start.elapsed() < common::PATIENCE,
            "the idle session never expired"
        );
    }
}

#[tokio::test]
async fn ending_a_session_answers_204_then_404() {
    let app = App::start(Spawn::default().args(&["--sessions"]));
    let client = http();
    let url = app.url("/mcp");
    let response = initialize(&client, &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let delete = |id: &str| {
        client
            .delete(&url)
            .bearer_auth(KEY)
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", id)
            .send()
    };
    let ended = delete(&session).await.unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert!(ended.bytes().await.unwrap().is_empty());
    // Ended: it is gone for DELETE and for everything else.
    for id in [session.as_str(), "no-such-session"] {
        let response = delete(id).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{id}");
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "session_not_found");
    }
    let ping = mcp_post(&client, &url, &rpc("ping", serde_json::json!({})))
        .bearer_auth(KEY)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), StatusCode::NOT_FOUND);
    // The key comes first: no answer about sessions without it.
    let response = client
        .delete(&url)
        .header("mcp-session-id", "no-such-session")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_message_over_max_body_gets_413_and_a_json_rpc_error_with_export_on_or_off() {
    let (endpoint, _) = common::otlp_receiver().await;
    for (spawn, limit) in [
        (Spawn::default(), 1024 * 1024),
        (
            Spawn::default()
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
                .args(&["--max-body", "2MiB"]),
            2 * 1024 * 1024,
        ),
    ] {
        let app = App::start(spawn);
        let padding = "x".repeat(limit);
        let body = rpc(
            "tools/call",
            serde_json::json!({"name": "hello", "arguments": {"name": padding}}),
        );
        let response = mcp_post(&http(), &app.url("/mcp"), &body)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["jsonrpc"], "2.0");
        assert_eq!(error["id"], serde_json::Value::Null);
        assert_eq!(error["error"]["code"], -32600);
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("--max-body ({limit} bytes)")),
            "{message}"
        );
        // Just under the limit (the JSON-RPC envelope is well under 1 KiB) is served.
        let near = "y".repeat(limit - 1024);
        let response = mcp_post(&http(), &app.url("/mcp"), &call_hello(&near))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
