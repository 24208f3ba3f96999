//! Hostile input against the real binary: malformed JSON-RPC, oversized and slow requests,
//! too many connections and requests, key guessing, clients from networks not allowed. Each
//! gets its status and a JSON body, and the server keeps serving the owner.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::upstreams::{python, stdio_server, wait_ready};
use common::{App, KEY, PATIENCE, Spawn, call_hello, client_from, http, mcp_post, rpc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WRONG_KEY: &str = "lk-wrong-key-00000000000000000000000000000000";

fn addr(app: &App) -> SocketAddr {
    app.tcp[0].strip_prefix("http://").unwrap().parse().unwrap()
}

async fn post_raw(
    app: &App,
    body: impl Into<reqwest::Body>,
    content_type: &str,
    accept: &str,
) -> (StatusCode, Value) {
    let response = http()
        .post(app.url("/mcp"))
        .bearer_auth(KEY)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: not a JSON body ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

async fn hello_works(app: &App, client: &reqwest::Client) {
    let response = mcp_post(client, &app.url("/mcp"), &call_hello("Ada"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "Hello Ada!");
}

#[tokio::test]
async fn malformed_messages_get_json_rpc_errors_and_the_server_keeps_serving() {
    let app = App::start(Spawn::default());
    const BOTH: &str = "application/json, text/event-stream";
    const JSON: &str = "application/json";
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut bad_utf8 = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":""#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(br#""}}"#);
    // (what, body, content type, accept, status, JSON-RPC code, id)
    type Case = (
        &'static str,
        Vec<u8>,
        &'static str,
        &'static str,
        u16,
        i64,
        Value,
    );
    let cases: Vec<Case> = vec![
        (
            "not JSON",
            b"hello".to_vec(),
            JSON,
            BOTH,
            400,
            -32700,
            Value::Null,
        ),
        ("empty", Vec::new(), JSON, BOTH, 400, -32700, Value::Null),
        (
            "cut short",
            br#"{"jsonrpc":"2.0","id":1,"meth"#.to_vec(),
            JSON,
            BOTH,
            400,
            -32700,
            Value::Null,
        ),
        (
            "invalid UTF-8",
            bad_utf8,
            JSON,
            BOTH,
            400,
            -32700,
            Value::Null,
        ),
        (
            "nested 10,000 deep",
            deep.into_bytes(),
            JSON,
            BOTH,
            400,
            -32700,
            Value::Null,
        ),
        (
            "a number id beyond any integer",
            br#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#.to_vec(),
            JSON,
            BOTH,
            400,
            -32700,
            Value::Null,
        ),
        (
            "a batch",
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(),
            JSON,
            BOTH,
            400,
            -32600,
            Value::Null,
        ),
        (
            "no jsonrpc member",
            br#"{"id":7,"method":"ping"}"#.to_vec(),
            JSON,
            BOTH,
            400,
            -32600,
            json!(7),
        ),
        (
            "params not an object",
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/list","params":[1]}"#.to_vec(),
            JSON,
            BOTH,
            400,
            -32600,
            json!("x"),
        ),
        (
            "a JSON string",
            br#""ping""#.to_vec(),
            JSON,
            BOTH,
            400,
            -32600,
            Value::Null,
        ),
        (
            "Content-Type text/plain",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec(),
            "text/plain",
            BOTH,
            415,
            -32600,
            Value::Null,
        ),
        (
            "Accept without SSE",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec(),
            JSON,
            JSON,
            406,
            -32600,
            Value::Null,
        ),
    ];
    for (what, body, content_type, accept, status, code, id) in cases {
        let (got, error) = post_raw(&app, body, content_type, accept).await;
        assert_eq!(got.as_u16(), status, "{what}: {error}");
        assert_eq!(error["jsonrpc"], "2.0", "{what}: {error}");
        assert_eq!(error["error"]["code"], code, "{what}: {error}");
        assert_eq!(error["id"], id, "{what}: {error}");
        assert!(error["error"]["message"].is_string(), "{what}: {error}");
        hello_works(&app, &http()).await;
    }

    // Well-formed, but not something latchkey has: JSON-RPC errors with the request's id.
    let answers = [
        (rpc("no/such/method", json!({})), -32601),
        (
            rpc(
                "tools/call",
                json!({"name": "no_such_tool", "arguments": {}}),
            ),
            -32602,
        ),
    ];
    for (request, code) in answers {
        let response = mcp_post(&http(), &app.url("/mcp"), &request)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["id"], 1, "{answer}");
    }
    // Arguments that do not match the tool's schema: a tool error the model can read.
    let response = mcp_post(
        &http(),
        &app.url("/mcp"),
        &rpc(
            "tools/call",
            json!({"name": "hello", "arguments": {"name": {"not": "a string"}}}),
        ),
    )
    .bearer_auth(KEY)
    .send()
    .await
    .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    hello_works(&app, &http()).await;
    assert!(!app.output().contains("panicked"), "{}", app.output());
}

/// Writes `request` on a new connection and reads until the server closes it (or
/// `PATIENCE` passes, which fails).
async fn exchange(app: &App, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr(app)).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[tokio::test]
async fn oversized_heads_and_uris_are_refused() {
    let app = App::start(Spawn::default().args(&["--max-headers", "20"]));
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    assert_eq!(status_of(&exchange(&app, many.as_bytes()).await), 431);

    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    assert_eq!(status_of(&exchange(&app, big.as_bytes()).await), 431);

    let long = format!("{}?q={}", app.url("/mcp"), "a".repeat(9 * 1024));
    let response = http().get(long).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "uri_too_long");

    // Just under each limit is served.
    let mut fine = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..15 {
        fine.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(500)));
    }
    fine.push_str("Connection: close\r\n\r\n");
    assert_eq!(status_of(&exchange(&app, fine.as_bytes()).await), 200);
    hello_works(&app, &http()).await;
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    // A head sent too slowly (slowloris): cut off after --header-timeout.
    let app = App::start(Spawn::default().args(&["--header-timeout", "1s"]));
    let mut slow = TcpStream::connect(addr(&app)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let rest = read_to_close(&mut slow).await;
    assert!(!rest.contains("200 OK"), "{rest:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Meanwhile and after, others are served.
    hello_works(&app, &http()).await;

    // A kept-alive connection with nothing in flight: closed after --idle-timeout.
    let app =
        App::start(Spawn::default().args(&["--idle-timeout", "1s", "--header-timeout", "60s"]));
    let mut idle = TcpStream::connect(addr(&app)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answered_at = std::time::Instant::now();
    let answered = read_to_close(&mut idle).await;
    assert_eq!(status_of(&answered), 200);
    assert!(answered_at.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn connections_over_the_cap_get_503_and_the_rest_are_served() {
    let app = App::start(Spawn::default().args(&["--max-connections", "4"]));
    // Four connections with a request in flight (an open event stream) hold every place:
    // an idle connection would give its place up to a newcomer.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(common::open_event_stream(&app, KEY).await);
    }
    // Connections are counted once accepted: poll until the fifth is refused.
    let started = std::time::Instant::now();
    let refused = loop {
        let response = exchange(
            &app,
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        if status_of(&response) == 503 {
            break response;
        }
        assert!(started.elapsed() < PATIENCE, "never refused: {response}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert!(refused.contains("too_many_connections"), "{refused}");
    drop(held);
    common::eventually("a place to free up", || async {
        let response = http().get(app.url("/healthz")).send().await;
        matches!(response, Ok(r) if r.status() == StatusCode::OK)
    })
    .await;
    hello_works(&app, &http()).await;
    assert_eq!(
        app.output().matches("at --max-connections").count(),
        1,
        "one warning per episode: {}",
        app.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_cap_get_503_with_retry_after() {
    let app = Spawn::default()
        .args(&["--max-requests", "2", "--", &python(), &stdio_server()])
        .start();
    wait_ready(&app).await;
    // A slow call that finds both places taken (by the poll's ping below, which may arrive
    // first under load) tries again: which of the concurrent requests gets a place first is
    // not the test's to assume.
    let slow = |seconds: f64| {
        let url = app.url("/mcp");
        async move {
            let body = rpc(
                "tools/call",
                json!({"name": "slow", "arguments": {"seconds": seconds}}),
            );
            loop {
                let status = mcp_post(&http(), &url, &body)
                    .bearer_auth(KEY)
                    .send()
                    .await
                    .unwrap()
                    .status();
                if status != StatusCode::SERVICE_UNAVAILABLE {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let first = tokio::spawn(slow(8.0));
    let second = tokio::spawn(slow(8.0));
    // Poll until a third request finds the two in flight.
    let started = std::time::Instant::now();
    let busy = loop {
        let response = mcp_post(&http(), &app.url("/mcp"), &rpc("ping", json!({})))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(
            !(first.is_finished() && second.is_finished()),
            "the slow calls ended before a third request found them in flight: {:?} {:?}",
            first.await,
            second.await
        );
        assert!(started.elapsed() < PATIENCE, "never busy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(busy.headers()["retry-after"], "1");
    let error: Value = busy.json().await.unwrap();
    assert_eq!(error["error"], "busy");
    // Refused without a key: 401, not 503 (no place is taken before the key is checked).
    let response = mcp_post(&http(), &app.url("/mcp"), &rpc("ping", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(second.await.unwrap(), StatusCode::OK);
    let response = mcp_post(&http(), &app.url("/mcp"), &rpc("ping", json!({})))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn hello_status(client: &reqwest::Client, app: &App, key: &str) -> reqwest::Response {
    mcp_post(client, &app.url("/mcp"), &call_hello("Ada"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_guesser_is_locked_out_and_nobody_else_is() {
    let app = App::start(Spawn::default().env("RUST_LOG", "trace").args(&[
        "--max-key-failures",
        "5",
        "--lockout",
        "1m",
    ]));
    let guesser = client_from("127.0.0.1");
    for _ in 0..5 {
        let response = hello_status(&guesser, &app, WRONG_KEY).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked out: even the right key is not checked.
    for key in [WRONG_KEY, KEY] {
        let response = hello_status(&guesser, &app, key).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "too_many_failures");
    }
    // The owner, from another address: served.
    hello_works(&app, &client_from("127.0.0.2")).await;
    // No key at all is not a guess: it does not count.
    let other = client_from("127.0.0.3");
    for _ in 0..10 {
        let response = mcp_post(&other, &app.url("/mcp"), &call_hello("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    hello_works(&app, &other).await;
    // /healthz is open to all, locked out or not.
    let health = guesser.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let output = app.output();
    assert_eq!(
        output.matches("locked out client 127.0.0.1").count(),
        1,
        "one line per lockout:\n{output}"
    );
    assert!(!output.contains(WRONG_KEY), "the tried key is in the log");
    assert!(!output.contains(KEY), "the key is in the log");
}

/// A request on the Unix socket as the bundled Apache sends it: the client's address last
/// in `X-Forwarded-For`.
async fn via_socket(app: &App, forwarded_for: &str, key: &str) -> u16 {
    let stream = tokio::net::UnixStream::connect(&app.sockets[0])
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post("/mcp")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-forwarded-for", forwarded_for)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            call_hello("Ada").to_string(),
        )))
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_the_proxy_the_forwarded_address_is_the_client() {
    let app = App::start(Spawn::default().unix().args(&[
        "--max-key-failures",
        "3",
        "--allowed-client",
        "203.0.113.0/24",
    ]));
    // A spoofed header first, then the address Apache appends: the last one counts.
    let guesser = "198.51.100.66, 203.0.113.5";
    for _ in 0..3 {
        assert_eq!(via_socket(&app, guesser, WRONG_KEY).await, 401);
    }
    assert_eq!(via_socket(&app, guesser, KEY).await, 429);
    assert_eq!(via_socket(&app, "203.0.113.6", KEY).await, 200);
    // Outside --allowed-client: 403, whatever the key.
    assert_eq!(via_socket(&app, "198.51.100.7", KEY).await, 403);
    // On TCP the header is ignored: the peer (127.0.0.1) is not in the allowed network.
    let response = http()
        .post(app.url("/mcp"))
        .bearer_auth(KEY)
        .header("x-forwarded-for", "203.0.113.6")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "client_not_allowed");
}

#[tokio::test]
async fn allowed_clients_are_served_and_others_refused() {
    let app = App::start(Spawn::default().args(&["--allowed-client", "127.0.0.2,127.0.1.0/24"]));
    hello_works(&app, &client_from("127.0.0.2")).await;
    hello_works(&app, &client_from("127.0.1.9")).await;
    let response = hello_status(&client_from("127.0.0.1"), &app, KEY).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The health check (Docker's, from inside the container) is not a client's request.
    let health = client_from("127.0.0.1")
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (status, output) =
        App::try_start(Spawn::default().args(&["--allowed-client", "300.1.2.3/8"]))
            .map(|_| panic!("a bad network was accepted"))
            .unwrap_err();
    assert!(!status.success());
    assert!(output.contains("--allowed-client"), "{output}");
    assert!(!output.contains("panicked"), "{output}");
}

/// A connection from `source` (an address of 127.0.0.0/8) to latchkey.
async fn connect_from(app: &App, source: std::net::Ipv4Addr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
    socket.connect(addr(app)).await.unwrap()
}

/// What an HTTP/2 client sends first: the preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

#[tokio::test]
async fn connections_that_complete_no_request_are_closed_at_the_header_timeout() {
    let app =
        App::start(Spawn::default().args(&["--header-timeout", "1s", "--idle-timeout", "300s"]));
    // Silent, and HTTP/2 with only its preface (it never answers the closing PING): both
    // were held until --idle-timeout or for ever.
    for first in [&b""[..], H2_PREFACE] {
        let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
        stream.write_all(first).await.unwrap();
        let mut seen = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut seen)).await;
        assert!(
            closed.is_ok(),
            "a connection that sent {} bytes and no request outlived --header-timeout by far",
            first.len()
        );
    }
    hello_works(&app, &http()).await;
}

/// An answer sent before the request's body arrived — the 401 to an OAuth client's first
/// POST, refused before its body is read — leaves a connection the client can use again
/// (`src/connections/unread_body.rs`): hyper alone closed it without saying so, and a next
/// request on it got no answer (the likely cause of the Python SDK's "Server disconnected
/// without sending a response" in tests/oauth.rs, once in CI).
#[tokio::test]
async fn an_answer_sent_before_the_body_arrived_leaves_the_connection_usable() {
    let app = App::start(Spawn::default().args(&["--header-timeout", "2s"]));
    let post = |length: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n{length}\r\n\r\n"
        )
    };
    let healthz = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

    // The head alone; its body comes after the 401, then a second request: answered.
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(post("Content-Length: 2").as_bytes())
        .await
        .unwrap();
    let refused = read_response_head(&mut stream).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        !refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );
    stream
        .write_all(format!("{{}}{healthz}").as_bytes())
        .await
        .unwrap();
    let rest = read_to_close(&mut stream).await;
    assert!(rest.contains("HTTP/1.1 200 OK"), "{rest}");

    // A body that never comes holds the connection no longer than --header-timeout.
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(post("Content-Length: 100").as_bytes())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let refused = read_to_close(&mut stream).await;
    assert_eq!(status_of(&refused), 401, "{refused}");
    // Kept for the body that was to come, not closed at once (as hyper alone closed it).
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(started.elapsed() < PATIENCE);

    // A body of no known length is not waited for: the answer says the connection ends.
    let refused = exchange(&app, post("Transfer-Encoding: chunked").as_bytes()).await;
    assert_eq!(status_of(&refused), 401, "{refused}");
    let head = refused
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("\r\nconnection: close"), "{refused}");

    // A body read whole (a call with the key), and a second request behind it on the same
    // connection: that one is answered too.
    let call = call_hello("Ada").to_string();
    let with_key = post(&format!("Content-Length: {}", call.len())).replace(
        "\r\n\r\n",
        &format!("\r\nAuthorization: Bearer {KEY}\r\n\r\n"),
    );
    let answers = exchange(&app, format!("{with_key}{call}{healthz}").as_bytes()).await;
    assert_eq!(status_of(&answers), 200, "{answers}");
    assert!(answers.contains("Hello Ada!"), "{answers}");
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
}

/// Reads until the end of a response's head (and whatever came with it).
async fn read_response_head(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_a_few_addresses_cannot_keep_the_owner_out() {
    let app =
        App::start(Spawn::default().args(&["--max-connections", "32", "--header-timeout", "60s"]));
    // 48 HTTP/2 connections that send only their preface, from 16 addresses: more than
    // every place.
    let source = |i: u8| std::net::Ipv4Addr::new(127, 0, 3, i % 16 + 1);
    let mut held = Vec::new();
    for i in 0..48 {
        let mut stream = connect_from(&app, source(i)).await;
        let _ = stream.write_all(H2_PREFACE).await;
        held.push(stream);
    }
    // And they keep coming while the owner connects.
    let flood = {
        let app_addr = addr(&app);
        tokio::spawn(async move {
            let mut more = Vec::new();
            for i in 0..200u8 {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(source(i).into(), 0)).unwrap();
                if let Ok(mut stream) = socket.connect(app_addr).await {
                    let _ = stream.write_all(H2_PREFACE).await;
                    more.push(stream);
                }
            }
            more
        })
    };
    for owner in ["127.0.0.1", "127.0.9.9"] {
        hello_works(&app, &client_from(owner)).await;
    }
    drop(flood.await.unwrap());
    drop(held);
}

#[tokio::test]
async fn a_flood_of_wrong_keys_from_new_addresses_locks_out_only_the_flood() {
    let app = App::start(Spawn::default().args(&["--max-key-failures", "1"]));
    let wrong = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {WRONG_KEY}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let guess = |source: std::net::Ipv4Addr| {
        let (app_addr, wrong) = (addr(&app), wrong.clone());
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
            let mut stream = socket.connect(app_addr).await.unwrap();
            stream.write_all(wrong.as_bytes()).await.unwrap();
            status_of(&read_to_close(&mut stream).await)
        }
    };
    // The owner has used its key from here before; this address guessed before the flood.
    hello_works(&app, &client_from("127.0.0.1")).await;
    let earlier = std::net::Ipv4Addr::new(127, 0, 0, 9);
    assert_eq!(guess(earlier).await, 401);
    // 10,100 addresses guess once each (the table holds 10,000), 16 at a time.
    let flood: Vec<std::net::Ipv4Addr> = (0..10_100u32)
        .map(|i| std::net::Ipv4Addr::from(0x7f01_0000 + i))
        .collect();
    for batch in flood.chunks(16) {
        let statuses = futures::future::join_all(batch.iter().map(|a| guess(*a))).await;
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 429),
            "{statuses:?}"
        );
    }
    // The owner, from where it was, from a new address, and from one more: served.
    for owner in ["127.0.0.1", "127.0.8.1", "127.0.8.2"] {
        hello_works(&app, &client_from(owner)).await;
    }
    // The guessers the table holds stay locked: the earlier one and the flood's first.
    for locked in ["127.0.0.9", "127.1.0.0"] {
        let response = hello_status(&client_from(locked), &app, KEY).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{locked}");
    }
    assert_eq!(
        app.output().matches("the lockout table is full").count(),
        1,
        "{}",
        app.output()
    );
}

#[tokio::test]
async fn two_hosts_or_a_foreign_absolute_uri_are_refused() {
    let app = App::start(Spawn::default());
    let two_hosts = exchange(
        &app,
        b"GET /mcp HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&two_hosts), 403, "{two_hosts}");
    let absolute = format!(
        "POST http://evil.example/mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let answered = exchange(&app, absolute.as_bytes()).await;
    assert_eq!(status_of(&answered), 403, "{answered}");
    assert!(answered.contains("evil.example"), "{answered}");
    // The same in absolute form naming latchkey's own host is served.
    let own = exchange(
        &app,
        b"GET http://localhost/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&own), 200, "{own}");
}

#[tokio::test]
async fn a_known_method_with_params_it_cannot_take_gets_invalid_params() {
    let app = App::start(Spawn::default());
    for message in [
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call"}),
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "hello", "arguments": "x"}}),
    ] {
        let response = mcp_post(&http(), &app.url("/mcp"), &message)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32602, "{message}: {answer}");
        assert_eq!(answer["id"], 7);
    }
    let unknown = mcp_post(
        &http(),
        &app.url("/mcp"),
        &json!({"jsonrpc": "2.0", "id": 8, "method": "no/such"}),
    )
    .bearer_auth(KEY)
    .send()
    .await
    .unwrap();
    let answer: Value = unknown.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
}

/// A request on protocol 2026-07-28 for a method that protocol removed (`initialize`,
/// `logging/setLevel`, `resources/subscribe`…) is not found, HTTP 404 and -32601, whether
/// its params are the old method's or not: from latchkey's own tools and through the
/// bridge. On the protocols that have them, bad params stay -32602.
#[tokio::test]
async fn a_method_2026_07_28_removed_is_not_found_there_whatever_its_params() {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let removed = [
        ("initialize", json!({"_meta": meta})),
        ("logging/setLevel", json!({"_meta": meta})),
        ("logging/setLevel", json!({"_meta": meta, "level": "info"})),
        ("resources/subscribe", json!({"_meta": meta})),
        ("resources/unsubscribe", json!({"_meta": meta})),
    ];
    let own = App::start(Spawn::default());
    let bridged = common::upstreams::front_python(&[], &[]).await;
    for app in [&own, &bridged] {
        for (method, params) in &removed {
            let response = http()
                .post(app.url("/mcp"))
                .bearer_auth(KEY)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", *method)
                .json(&json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {params}: {answer}");
            assert_eq!(answer["error"]["code"], -32601, "{method}: {answer}");
            assert_eq!(answer["id"], 9);
        }
        let legacy = mcp_post(
            &http(),
            &app.url("/mcp"),
            &rpc("logging/setLevel", json!({})),
        )
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
        let answer: Value = legacy.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
    }
}
