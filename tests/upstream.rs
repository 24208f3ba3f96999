//! latchkey in front of real MCP servers: a stdio server written with the official Python SDK
//! (tests/upstreams/python_stdio_server.py, run by the SDK installed in `target/test-python`
//! by `.ci/run`), reached by real clients (rmcp's, and plain HTTP) through latchkey's key.
//! Lifecycle and faults: readiness in `/healthz`, a crash mid-call, restart, timeouts that
//! cancel upstream, a clean environment, stderr in the log, shutdown without orphans.

mod common;

use std::time::{Duration, Instant};

use common::upstreams::{
    call, child_pids, everything_server, front_python, python, stdio_server, text, wait_ready,
};
use common::{App, KEY, Spawn, http, mcp_post, rpc};
use opentelemetry_proto::tonic::common::v1::any_value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_stdio_server_is_served_behind_the_key() {
    let app = front_python(&[], &[]).await;

    // A real MCP client (rmcp's) sees the upstream's tools, prompts and resources.
    let client = common::mcp_client(&app.url("/mcp"), KEY, common::Via::Bearer).await;
    let tools = common::tool_names(&client).await;
    for expected in ["echo", "slow", "crash", "environment"] {
        assert!(tools.contains(&expected.to_owned()), "{tools:?}");
    }
    assert!(!tools.contains(&"hello".to_owned()), "{tools:?}");
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "latchkey");
    let answer = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("echo").with_arguments(
                serde_json::json!({"text": "through latchkey"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        answer.content[0].as_text().unwrap().text,
        "echo: through latchkey"
    );
    let prompts = client.list_prompts(None).await.unwrap();
    assert_eq!(prompts.prompts[0].name, "greet");
    let read = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new("note://hello"))
        .await
        .unwrap();
    assert!(
        format!("{read:?}").contains("a note from upstream"),
        "{read:?}"
    );
    client.cancel().await.unwrap();

    // Without the key: 401, as for the built-in tools.
    let refused = mcp_post(
        &http(),
        &app.url("/mcp"),
        &rpc("tools/list", serde_json::json!({})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(refused.status(), 401);

    // The child's banner on stdout was skipped with a warning; its stderr is in the log
    // (written by the log thread, so waited for).
    app.wait_for_output("skipped a line on stdout that is not JSON-RPC");
    app.wait_for_output("python-upstream starting");
    app.wait_for_output("python-upstream: a line on stderr");
}

/// Concurrent calls share the one child: ten calls that each wait for the other nine all
/// meet there (queued one behind another, none would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_multiplexed_not_queued() {
    let app = front_python(&[], &[]).await;
    let calls = (0..10).map(|_| call(&app, "together", serde_json::json!({"count": 10})));
    for answer in futures::future::join_all(calls).await {
        assert_eq!(text(&answer), "together", "{answer}");
    }
}

/// The child gets PATH, HOME and LANG, and nothing of latchkey's: no key, no OTEL header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_gets_a_clean_environment() {
    let app = front_python(
        &[],
        &[
            ("LATCHKEY_API_KEY", KEY),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=secret"),
            ("SOMETHING_ELSE", "x"),
        ],
    )
    .await;
    let names = text(&call(&app, "environment", serde_json::json!({})).await);
    assert!(names.split(' ').any(|n| n == "PATH"), "{names}");
    for absent in [
        "LATCHKEY_API_KEY",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "SOMETHING_ELSE",
    ] {
        assert!(
            !names.split(' ').any(|n| n == absent),
            "{absent} in {names}"
        );
    }
}

/// `--pass-env` hands named variables through (a child behind a TLS-intercepting proxy needs
/// SSL_CERT_FILE or HTTPS_PROXY): those named and set, and nothing else; LATCHKEY_* never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_variables_are_passed_through_to_the_child() {
    let app = front_python(
        &[
            "--pass-env",
            "SSL_CERT_FILE,HTTPS_PROXY",
            "--pass-env",
            "NOT_SET_ANYWHERE_9",
        ],
        &[
            ("SSL_CERT_FILE", "/etc/ssl/certs/proxy.pem"),
            ("HTTPS_PROXY", "http://proxy.invalid:3128"),
            ("SOMETHING_ELSE", "x"),
        ],
    )
    .await;
    let names = text(&call(&app, "environment", serde_json::json!({})).await);
    let has = |name: &str| names.split(' ').any(|n| n == name);
    assert!(
        has("SSL_CERT_FILE") && has("HTTPS_PROXY") && has("PATH"),
        "{names}"
    );
    assert!(
        !has("SOMETHING_ELSE") && !has("NOT_SET_ANYWHERE_9"),
        "{names}"
    );
    let refused = App::try_start(Spawn::default().args(&[
        "--pass-env",
        "LATCHKEY_API_KEY",
        "--",
        &python(),
        &stdio_server(),
    ]));
    let (status, output) = refused.err().expect("LATCHKEY_* is refused");
    assert!(!status.success());
    assert!(output.contains("--pass-env LATCHKEY_API_KEY"), "{output}");
}

/// A crash mid-call: the call gets an error naming the upstream at once, `/healthz` says the
/// upstream is down with why, and the child is started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_the_call_promptly_and_the_child_restarts() {
    let app = front_python(&[], &[]).await;
    let start = Instant::now();
    let answer = call(&app, "crash", serde_json::json!({})).await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("python"), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // Not ready until it is back: 503 with a JSON reason (it had been ready, so it is
    // started again at once; Python takes a second or more to start, so the poll sees it).
    let url = app.url("/healthz");
    common::eventually("/healthz to say the upstream is starting again", || async {
        let response = http().get(&url).send().await.unwrap();
        if response.status() != 503 {
            return false;
        }
        let body: serde_json::Value = response.json().await.unwrap();
        body["upstream"] == "python" && body["status"] == "starting" && body["reason"].is_string()
    })
    .await;
    wait_ready(&app).await;
    let answer = call(&app, "echo", serde_json::json!({"text": "again"})).await;
    assert_eq!(text(&answer), "echo: again");
    app.wait_for_output("upstream down");
    app.wait_for_output("connecting again now");
}

/// A call longer than --tool-timeout fails then, and the upstream is told to cancel it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_times_out_and_is_cancelled_upstream() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().display().to_string();
    // The child's environment is clean, so SLOW_LOG is set by `env` in the command itself.
    let python = python();
    let server = stdio_server();
    let app = Spawn::default()
        .args(&[
            "--tool-timeout",
            "1s",
            "--",
            "env",
            &format!("SLOW_LOG={log_path}"),
            &python,
            &server,
        ])
        .start();
    wait_ready(&app).await;
    let start = Instant::now();
    let answer = call(&app, "slow", serde_json::json!({"seconds": 30})).await;
    let took = start.elapsed();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not answer within 1s"), "{answer}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    common::eventually("the upstream to log the cancellation", || async {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("cancelled")
    })
    .await;
}

/// A client that goes away mid-call: the upstream is told to cancel the call, with and
/// without a progress token (which takes the call the progress-routing way).
async fn a_client_that_goes_away_cancels_the_call_upstream(params: serde_json::Value) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().display().to_string();
    let python = python();
    let server = stdio_server();
    let app = Spawn::default()
        .args(&[
            "--",
            "env",
            &format!("SLOW_LOG={log_path}"),
            &python,
            &server,
        ])
        .start();
    wait_ready(&app).await;
    let body = rpc("tools/call", params);
    let calling = tokio::spawn(
        mcp_post(&http(), &app.url("/mcp"), &body)
            .bearer_auth(KEY)
            .send(),
    );
    common::eventually("the upstream to start the call", || async {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("started")
    })
    .await;
    // The client gives up and closes its connection.
    calling.abort();
    assert!(calling.await.unwrap_err().is_cancelled());
    common::eventually("the upstream to log the cancellation", || async {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("cancelled")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_call_upstream_plain() {
    a_client_that_goes_away_cancels_the_call_upstream(
        serde_json::json!({"name": "slow", "arguments": {"seconds": 30}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_call_upstream_with_progress() {
    a_client_that_goes_away_cancels_the_call_upstream(serde_json::json!({
        "name": "slow", "arguments": {"seconds": 30}, "_meta": {"progressToken": "p1"}
    }))
    .await;
}

/// SIGTERM stops the child too: no process is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_child_behind() {
    let mut app = front_python(&[], &[]).await;
    let children = child_pids(app.pid());
    assert!(!children.is_empty(), "the upstream child runs");
    app.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(app.wait().success(), "{}", app.output());
    for pid in children {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z "),
            "child {pid} is still running"
        );
    }
}

/// Before the upstream is ready `/healthz` says so; a command that cannot start keeps it down
/// with the reason, and calls fail at once with an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_cannot_start_is_reported_not_hung() {
    let app = Spawn::default()
        .args(&["--", "/nonexistent/mcp-server"])
        .start();
    let url = app.url("/healthz");
    common::eventually("/healthz to say the upstream is down", || async {
        let response = http().get(&url).send().await.unwrap();
        response.status() == 503 && response.text().await.unwrap().contains("\"down\"")
    })
    .await;
    // Anyone may read /healthz: it names no command, path or error text; the log does.
    let health = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        !health.contains("nonexistent") && health.contains("latchkey's log"),
        "{health}"
    );
    app.wait_for_output("/nonexistent/mcp-server: no such file");
    let start = Instant::now();
    let answer = call(&app, "echo", serde_json::json!({"text": "x"})).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("mcp-server"),
        "{answer}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// An HTTP upstream (the Python SDK over Streamable HTTP) that demands its own token: latchkey
/// sends it from `--upstream-header` (read from a file), never latchkey's key, and neither
/// value appears in latchkey's output at RUST_LOG=trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_gets_its_header_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let token = "upstream-token-5c0ffee5";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("Bearer {token}\n")).unwrap();
    let headers_log = dir.path().join("headers.jsonl");
    let (_upstream, port) = http_upstream(token, &headers_log);
    let app = Spawn::default()
        .args(&[
            "--upstream",
            &format!("http://127.0.0.1:{port}/mcp"),
            "--upstream-header",
            &format!("Authorization: @{}", token_file.display()),
        ])
        .env("RUST_LOG", "trace")
        .start();
    wait_ready(&app).await;
    let answer = call(&app, "echo", serde_json::json!({"text": "hi"})).await;
    assert_eq!(text(&answer), "echo over http: hi", "{answer}");

    let seen = std::fs::read_to_string(&headers_log).unwrap();
    assert!(seen.contains(token), "{seen}");
    for form in common::key_forms(KEY) {
        assert!(!seen.contains(&form), "the upstream saw {form:?}: {seen}");
    }
    let output = app.output();
    assert!(!output.contains(token), "the token is in latchkey's output");
}

/// An HTTP upstream that is down or slow is treated as a stdio one is: `/healthz` says it is
/// down and why (without the token in its URL), a call fails at once with its name, and a
/// call it does not answer fails at `--tool-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_that_is_down_or_slow_fails_calls_promptly() {
    let closed = common::free_port();
    let secret = "upstream-query-secret-9f8e7d";
    let down = Spawn::default()
        .args(&[
            "--upstream",
            &format!("http://127.0.0.1:{closed}/mcp?token={secret}"),
        ])
        .env("RUST_LOG", "trace")
        .start();
    let url = down.url("/healthz");
    common::eventually("/healthz to say the upstream is down", || async {
        let response = http().get(&url).send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        status == 503 && body["status"] == "down" && body["upstream"] == "127.0.0.1"
    })
    .await;
    let start = Instant::now();
    let answer = call(&down, "echo", serde_json::json!({"text": "x"})).await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream \"127.0.0.1\" is down"),
        "{answer}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    let health = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(!health.contains(secret), "{health}");
    down.wait_for_output("upstream down");
    assert_absent(&down.output(), secret, "the URL's token");
    drop(down);

    let dir = tempfile::tempdir().unwrap();
    let token = "upstream-token-51070";
    let (_upstream, port) = http_upstream(token, &dir.path().join("headers.jsonl"));
    let slow = Spawn::default()
        .args(&[
            "--upstream",
            &format!("http://127.0.0.1:{port}/mcp"),
            "--upstream-header",
            &format!("Authorization: Bearer {token}"),
            "--tool-timeout",
            "1s",
        ])
        .start();
    wait_ready(&slow).await;
    let answer = call(&slow, "slow", serde_json::json!({"seconds": 30})).await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not answer within 1s"), "{answer}");
    let answer = call(&slow, "echo", serde_json::json!({"text": "after"})).await;
    assert_eq!(text(&answer), "echo over http: after", "{answer}");
}

/// Fails with the whole line of `output` that holds `secret`, if one does.
fn assert_absent(output: &str, secret: &str, what: &str) {
    if let Some(at) = output.find(secret) {
        let line_start = output[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = output[at..].find('\n').map_or(output.len(), |i| at + i);
        panic!(
            "{what} is in latchkey's output: {}",
            &output[line_start..line_end]
        );
    }
}

/// The Python SDK's Streamable HTTP server on a free port, demanding `token`, recording
/// request headers in `headers_log`; killed when the guard drops.
fn http_upstream(token: &str, headers_log: &std::path::Path) -> (ChildGuard, u16) {
    let port = common::free_port();
    let child = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/upstreams/python_http_server.py"
        ))
        .arg(port.to_string())
        .env("UPSTREAM_TOKEN", token)
        .env("HEADERS_LOG", headers_log)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let guard = ChildGuard(child);
    common::wait_for("the HTTP upstream to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (guard, port)
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two upstreams from a configuration file, the Python stdio server (`py`, `crash` denied,
/// a secret in its environment) and the Python HTTP server (`web`, its token read from a
/// file): their tools, prompts and resources are named apart by prefix, the denied tool is
/// neither listed nor callable, the built-in `hello` is gone, and the secret the stdio
/// server writes on stderr and in a log message is redacted in latchkey's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_upstreams_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = "upstream-token-7e11a1e";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("Bearer {token}\n")).unwrap();
    let (_web, port) = http_upstream(token, &dir.path().join("headers.jsonl"));
    let config = dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[upstreams.py]
command = [{python:?}, {server:?}]
env = {{ UPSTREAM_TOKEN = "$TEST_UPSTREAM_SECRET" }}
tools.deny = ["crash"]

[upstreams.web]
url = "http://127.0.0.1:{port}/mcp"
headers = {{ Authorization = "@{token_file}" }}
timeout = "10s"
"#,
            python = python(),
            server = stdio_server(),
            token_file = token_file.display(),
        ),
    )
    .unwrap();
    let secret = "stdio-secret-0a1b2c3d";
    let app = Spawn::default()
        .args(&["--config", &config.display().to_string()])
        .env("TEST_UPSTREAM_SECRET", secret)
        .env("RUST_LOG", "trace")
        .start();
    wait_ready(&app).await;

    assert_listed_prefixed(&app).await;

    for (tool, expected) in [("py__echo", "echo: a"), ("web__echo", "echo over http: a")] {
        let answer = call(&app, tool, serde_json::json!({"text": "a"})).await;
        assert_eq!(text(&answer), expected, "{answer}");
    }
    for refused in ["py__crash", "nobody__echo", "echo"] {
        let answer = call(&app, refused, serde_json::json!({})).await;
        assert_eq!(answer["error"]["code"], -32602, "{refused}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(refused),
            "{answer}"
        );
    }
    let greet = |name: &str| serde_json::json!({"name": name, "arguments": {"name": "Ada"}});
    let greeting = ask(&app, "prompts/get", greet("py__greet")).await;
    assert!(
        greeting.to_string().contains("Say hello to Ada."),
        "{greeting}"
    );
    // Only `py` offers them: its own names reach it too.
    let greeting = ask(&app, "prompts/get", greet("greet")).await;
    assert!(
        greeting.to_string().contains("Say hello to Ada."),
        "{greeting}"
    );
    let note = ask(
        &app,
        "resources/read",
        serde_json::json!({"uri": "note://hello"}),
    )
    .await;
    assert_eq!(
        note["result"]["contents"][0]["uri"], "py:note://hello",
        "{note}"
    );

    assert_eq!(
        text(&call(&app, "py__leak", serde_json::json!({})).await),
        "leaked"
    );
    assert_eq!(
        text(&call(&app, "py__progress", serde_json::json!({"steps": 1})).await),
        "progressed"
    );
    app.wait_for_output("stderr: leaking REDACTED and Bearer REDACTED");
    app.wait_for_output("log: progress done, token REDACTED");
    let output = app.output();
    assert_absent(&output, secret, "the child's secret");
    assert!(
        !output.contains(token),
        "the HTTP upstream's token is in latchkey's output"
    );
    assert!(
        !output.contains("abc123"),
        "a Bearer token is in latchkey's output"
    );
}

/// What the Rust SDK lists through the `py` and `web` upstreams of
/// `several_upstreams_from_a_config_file`: prefixed names, the denied tool absent, and the
/// prefixed resource read.
async fn assert_listed_prefixed(app: &App) {
    let client = common::mcp_client(&app.url("/mcp"), KEY, common::Via::Bearer).await;
    let tools = common::tool_names(&client).await;
    for expected in ["py__echo", "py__leak", "py__progress", "web__echo"] {
        assert!(
            tools.contains(&expected.to_owned()),
            "{expected} in {tools:?}"
        );
    }
    for absent in ["py__crash", "hello", "echo"] {
        assert!(!tools.contains(&absent.to_owned()), "{absent} in {tools:?}");
    }
    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].name, "py__greet");
    let resources = client.list_all_resources().await.unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].uri, "py:note://hello");
    let read = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "py:note://hello",
        ))
        .await
        .unwrap();
    let read = format!("{read:?}");
    assert!(
        read.contains("a note from upstream") && read.contains("py:note://hello"),
        "{read}"
    );
    client.cancel().await.unwrap();
}

/// One JSON-RPC request to `app` with the key, and its answer.
async fn ask(app: &App, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = mcp_post(&http(), &app.url("/mcp"), &rpc(method, params))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// With two upstreams that offer the same prompt and resource, the unprefixed name and URI
/// are refused with the prefixed ones, and those work. One upstream is named like the
/// resource's scheme (`note`): `note://hello` is still no prefixed URI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_or_resource_several_upstreams_offer_is_refused_with_the_prefixed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latchkey.toml");
    let server = format!("[{:?}, {:?}]", python(), stdio_server());
    std::fs::write(
        &config,
        format!("[upstreams.note]\ncommand = {server}\n\n[upstreams.py]\ncommand = {server}\n"),
    )
    .unwrap();
    let app = Spawn::default()
        .args(&["--config", &config.display().to_string()])
        .start();
    wait_ready(&app).await;
    let greet = serde_json::json!({"name": "greet", "arguments": {"name": "Ada"}});
    let refused = ask(&app, "prompts/get", greet).await;
    assert_eq!(
        refused["error"]["message"],
        "prompt \"greet\" is offered by several upstreams: get it as one of \
         \"note__greet\", \"py__greet\"",
        "{refused}"
    );
    let refused = ask(
        &app,
        "resources/read",
        serde_json::json!({"uri": "note://hello"}),
    )
    .await;
    assert_eq!(
        refused["error"]["message"],
        "resource \"note://hello\" is offered by several upstreams: read it as one of \
         \"note:note://hello\", \"py:note://hello\"",
        "{refused}"
    );
    let greet = serde_json::json!({"name": "py__greet", "arguments": {"name": "Ada"}});
    let greeting = ask(&app, "prompts/get", greet).await;
    assert!(
        greeting.to_string().contains("Say hello to Ada."),
        "{greeting}"
    );
    for uri in ["note:note://hello", "py:note://hello"] {
        let read = ask(&app, "resources/read", serde_json::json!({"uri": uri})).await;
        assert_eq!(read["result"]["contents"][0]["uri"], uri, "{read}");
    }
}

/// A mistake in the configuration file stops the start with one line naming the file, the
/// line and what is wrong.
#[test]
fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        "[upstreams.py]\ncommand = [\"x\"]\ntools.alow = [\"echo\"]\n",
    )
    .unwrap();
    let (status, stderr) =
        App::try_start(Spawn::default().args(&["--config", &config.display().to_string()]))
            .err()
            .expect("latchkey refuses the file");
    assert!(!status.success());
    let expected = format!("{}:3:7: unknown field `alow`", config.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// With sessions, a real client (the Python SDK) gets the upstream's progress notifications
/// for its call, under its own token, and hears that the tool list changed when the upstream
/// says so; the next listing has the new tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_list_changes_reach_the_client() {
    let app = front_python(&["--sessions"], &[]).await;
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/python_notices_client.py"
        ))
        .arg(app.url("/mcp"))
        .env("LATCHKEY_TEST_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(seen["text"], serde_json::json!(["progressed"]), "{seen}");
    assert_eq!(
        seen["progress"],
        serde_json::json!([
            [1.0, 3.0, "step 1"],
            [2.0, 3.0, "step 2"],
            [3.0, 3.0, "step 3"]
        ]),
        "{seen}"
    );
    assert_eq!(seen["list_changed"], true, "{seen}");
    assert!(
        !seen["before"].as_array().unwrap().contains(&"grown".into()),
        "{seen}"
    );
    assert!(
        seen["after"].as_array().unwrap().contains(&"grown".into()),
        "{seen}"
    );
    app.wait_for_output("log: progress done, token");
}

/// With export on, a call through the bridge is traced like a built-in one: the MCP span
/// names the upstream's tool, under the HTTP span; the request to the upstream is a CLIENT
/// span under it, whose trace context the upstream receives in `_meta`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_the_bridge_are_traced() {
    let (endpoint, received) = common::otlp_receiver().await;
    let app = front_python(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ],
    )
    .await;
    let answer = call(&app, "echo", serde_json::json!({"text": "traced"})).await;
    assert_eq!(text(&answer), "echo: traced");
    // The HTTP span ends after the answer is written, so it may come in a later batch.
    let related = || {
        let spans = received.spans();
        let call = spans
            .iter()
            .find(|s| s.name == "tools/call echo" && s.kind == 2)
            .cloned()?;
        let http = spans
            .iter()
            .find(|s| s.name == "POST /mcp" && s.span_id == call.parent_span_id)
            .cloned()?;
        Some((call, http))
    };
    common::eventually("the tools/call span under its HTTP span", || async {
        related().is_some()
    })
    .await;
    let (served, http) = related().unwrap();
    assert_eq!(http.trace_id, served.trace_id);

    // The call to the upstream is a CLIENT span under the SERVER span, and the upstream got
    // its trace context in `_meta`: it continues the same trace.
    let answer = call(&app, "traceparent", serde_json::json!({})).await;
    let seen = text(&answer);
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "the upstream saw no traceparent: {seen:?}");
    let client = || {
        received.spans().into_iter().find(|s| {
            s.kind == 3 && s.name == "tools/call traceparent" && hex(&s.span_id) == parts[2]
        })
    };
    common::eventually("the CLIENT span the upstream was told of", || async {
        client().is_some()
    })
    .await;
    let client = client().unwrap();
    assert_eq!(hex(&client.trace_id), parts[1]);
    let server = received
        .spans()
        .into_iter()
        .find(|s| s.kind == 2 && s.span_id == client.parent_span_id)
        .unwrap_or_else(|| panic!("no SERVER span above the CLIENT span:\n{}", received.dump()));
    assert_eq!(server.name, "tools/call traceparent");
    let upstream = client
        .attributes
        .iter()
        .find(|kv| kv.key == "latchkey.upstream.name")
        .and_then(|kv| kv.value.as_ref()?.value.clone());
    assert!(
        matches!(upstream, Some(any_value::Value::StringValue(ref name)) if name == "python"),
        "{upstream:?}"
    );
    common::eventually("mcp.client.operation.duration", || async {
        received
            .metric_names()
            .iter()
            .any(|n| n == "mcp.client.operation.duration")
    })
    .await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The FastMCP recipe's server (examples/fastmcp/server.py) on a free port; killed when the
/// guard drops.
fn fastmcp_server() -> (ChildGuard, u16) {
    let port = common::free_port();
    let child = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/fastmcp/server.py"
        ))
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let guard = ChildGuard(child);
    common::wait_for("the FastMCP server to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (guard, port)
}

/// An HTTP upstream on a Unix socket (`--upstream unix:/path`, requests to `/mcp` over it):
/// the FastMCP recipe's server listening on a socket, called through latchkey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mcp.sock");
    let child = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/fastmcp/server.py"
        ))
        .arg(&socket)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server = ChildGuard(child);
    common::wait_for("the FastMCP server's socket", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    let app = Spawn::default()
        .args(&["--upstream", &format!("unix:{}", socket.display())])
        .start();
    wait_ready(&app).await;
    let answer = call(&app, "hello", serde_json::json!({"name": "socket"})).await;
    assert_eq!(
        text(&answer),
        "Hello socket! (Authenticated by latchkey.)",
        "{answer}"
    );
}

/// Real servers of both kinds behind one key: the npm reference server on stdio (its
/// `get-env` tool denied) and the FastMCP recipe over HTTP, from one configuration file. A
/// real client (rmcp's) lists, calls tools of both, gets a prompt, reads a static and a
/// templated resource and completes a prompt argument, all by their prefixed names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_reference_server_and_the_fastmcp_recipe_behind_one_key() {
    use rmcp::model::{
        ArgumentInfo, CallToolRequestParams, CompleteRequestParams, GetPromptRequestParams,
        ReadResourceRequestParams, Reference,
    };

    let (_fastmcp, port) = fastmcp_server();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[upstreams.everything]
command = [{everything:?}, "stdio"]
tools.deny = ["get-env"]

[upstreams.reference]
url = "http://127.0.0.1:{port}/mcp"
"#,
            everything = everything_server(),
        ),
    )
    .unwrap();
    let app = Spawn::default()
        .args(&["--config", &config.display().to_string()])
        .start();
    wait_ready(&app).await;
    let client = common::mcp_client(&app.url("/mcp"), KEY, common::Via::Bearer).await;

    let tools = common::tool_names(&client).await;
    for expected in [
        "everything__echo",
        "everything__get-sum",
        "reference__hello",
    ] {
        assert!(
            tools.contains(&expected.to_owned()),
            "{expected} in {tools:?}"
        );
    }
    assert!(!tools.iter().any(|t| t.ends_with("get-env")), "{tools:?}");

    let mut sum = CallToolRequestParams::new("everything__get-sum");
    sum.arguments = serde_json::json!({"a": 2, "b": 3}).as_object().cloned();
    let sum = format!("{:?}", client.call_tool(sum).await.unwrap());
    assert!(sum.contains("is 5"), "{sum}");
    let mut hello = CallToolRequestParams::new("reference__hello");
    hello.arguments = serde_json::json!({"name": "Ada"}).as_object().cloned();
    let hello = format!("{:?}", client.call_tool(hello).await.unwrap());
    assert!(hello.contains("Hello Ada!"), "{hello}");

    let mut prompt = GetPromptRequestParams::new("everything__args-prompt");
    prompt.arguments = serde_json::json!({"city": "Lisbon"}).as_object().cloned();
    let prompt = format!("{:?}", client.get_prompt(prompt).await.unwrap());
    assert!(prompt.contains("Lisbon"), "{prompt}");

    let templates = client.list_all_resource_templates().await.unwrap();
    let template = "everything:demo://resource/dynamic/text/{resourceId}";
    assert!(
        templates.iter().any(|t| t.uri_template == template),
        "{templates:?}"
    );
    for uri in [
        "everything:demo://resource/static/document/features.md",
        "everything:demo://resource/dynamic/text/1",
    ] {
        let read = client
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        let read = format!("{read:?}");
        assert!(read.contains(uri), "{uri}: {read}");
    }

    let completion = client
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("everything__completable-prompt"),
            ArgumentInfo::new("department", "Eng"),
        ))
        .await
        .unwrap();
    assert!(
        completion
            .completion
            .values
            .iter()
            .any(|v| v == "Engineering"),
        "{completion:?}"
    );
    client.cancel().await.unwrap();
}

/// tests/upstreams/raw_stdio_server.py: a server that writes what a misbehaving one does.
const RAW_SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/upstreams/raw_stdio_server.py"
);

/// A child stuck mid-line answers nothing while still connected: after three calls time
/// out, /healthz says it is degraded (it said 200 while every call failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_upstream_is_reported_degraded() {
    let app = Spawn::default()
        .args(&["--tool-timeout", "500ms", "--", &python(), RAW_SERVER])
        .start();
    wait_ready(&app).await;
    for _ in 0..3 {
        let answer = call(&app, "stuck", serde_json::json!({})).await;
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("did not answer"),
            "{answer}"
        );
    }
    let health = http().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
}

/// A line an upstream writes that is JSON but no MCP message is dumped whole by rmcp at
/// debug: at RUST_LOG=trace, nothing of it reaches latchkey's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_malformed_line_is_never_logged_raw() {
    let app = Spawn::default()
        .env("RUST_LOG", "trace")
        .args(&["--", &python(), RAW_SERVER])
        .start();
    wait_ready(&app).await;
    for _ in 0..2 {
        assert_eq!(
            text(&call(&app, "garble", serde_json::json!({})).await),
            "garbled"
        );
    }
    assert_absent(
        &app.output(),
        "garbled-secret-4d1e9b",
        "the malformed line's token",
    );
}

/// A tool deny entry with a typo (`ech` for `echo`) left that tool exposed, silently: it is a
/// warning every time the tool list is read, and `serve --check-config` fails on it before
/// a deployment; without the typo it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_entry_that_names_no_tool_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = |deny: &str| {
        let path = dir.path().join(format!("{deny}.toml"));
        std::fs::write(
            &path,
            format!(
                "[upstreams.py]\ncommand = [{:?}, {:?}]\ntools.deny = [\"crash\", {deny:?}]\n",
                python(),
                stdio_server()
            ),
        )
        .unwrap();
        path
    };
    let typo = config("ech");
    let check = |path: &std::path::Path| {
        common::command(dir.path())
            .args(["serve", "--api-key", KEY, "--check-config", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    let failed = check(&typo);
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{said}");
    assert!(
        said.contains(
            "upstream \"py\": tools.deny entry \"ech\" matches none of its tools (the nearest is \"echo\")"
        ),
        "{said}"
    );
    let passed = check(&config("slow"));
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    assert!(String::from_utf8_lossy(&passed.stdout).contains("configuration ok"));

    let app = Spawn::default()
        .args(&["--config", typo.to_str().unwrap()])
        .start();
    wait_ready(&app).await;
    let listed = mcp_post(
        &http(),
        &app.url("/mcp"),
        &rpc("tools/list", serde_json::json!({})),
    )
    .bearer_auth(KEY)
    .send()
    .await
    .unwrap();
    assert_eq!(listed.status(), 200);
    app.wait_for_output("tools.deny entry \\\"ech\\\" matches none of its tools");
}

/// What a person reads when an upstream cannot be reached or started: words, not Rust type
/// names (`Transport [latchkey::upstream::progress_transport::ProgressTransport<…>]`), a
/// missing command said once as "not found on PATH", and quotes not escaped twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_said_plainly() {
    let unreachable = Spawn::default()
        .args(&["--upstream", "http://127.0.0.1:1/mcp"])
        .start();
    unreachable.wait_for_output("cannot connect to 127.0.0.1:1: connection refused");
    let missing = Spawn::default()
        .env("RUST_LOG", "info,latchkey::upstream=debug")
        .args(&["--", "no-such-mcp-command-4f2a", "--flag"])
        .start();
    missing.wait_for_output("no-such-mcp-command-4f2a: not found on PATH (PATH=");
    let answer = call(&missing, "anything", serde_json::json!({})).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not found on PATH"),
        "{answer}"
    );
    // The same failure again is logged at debug only.
    missing.wait_for_output("still down: no-such-mcp-command-4f2a");
    for app in [&unreachable, &missing] {
        let output = app.output();
        for line in output.lines() {
            let Ok(line) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let message = line["message"].as_str().unwrap_or_default();
            for bad in ["latchkey::", "rmcp::", "Transport [", "\\\""] {
                assert!(!message.contains(bad), "{bad:?} in {message:?}");
            }
        }
    }
    let warnings = missing
        .output()
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("not found on PATH"))
        .inspect(|l| assert!(l.contains("upstream down"), "{l}"))
        .count();
    assert_eq!(warnings, 1, "{}", missing.output());
}
