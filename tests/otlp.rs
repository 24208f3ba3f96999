//! The exporter path users run: latchkey exports OTLP/HTTP (protobuf) to a real receiver,
//! which decodes what arrives. Spans follow the MCP conventions, parent and link as they
//! should, metrics arrive, and no key, encoded key or key digest is in any of it — nor in
//! anything latchkey wrote at RUST_LOG=trace.

mod common;

use common::{App, KEY, Spawn, call_hello, http, mcp_post, rpc};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

fn string_value(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| string_value(&kv.value))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Multi-threaded: the receiver must keep answering while the test blocks on the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_a_real_otlp_receiver_without_the_key() {
    let (endpoint, received) = common::otlp_receiver().await;
    let app = App::start(
        Spawn::default()
            .unix()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "50")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "100")
            .env("RUST_LOG", "trace"),
    );
    app.wait_for_output("exporting traces and metrics over OTLP");
    let mcp = app.url("/mcp");

    // A real client, each way of sending the key, over TCP and the Unix socket.
    common::exercise_every_way(&app).await;

    // A call that propagates its trace context, one for a tool that does not exist, refused
    // and malformed requests that carry the key.
    let http = http();
    let traced = rpc(
        "tools/call",
        serde_json::json!({
            "name": "hello",
            "arguments": {"name": "traced"},
            "_meta": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
        }),
    );
    let response = mcp_post(&http, &format!("{mcp}?api_key={KEY}&x=1"), &traced)
        .header("user-agent", "inspector-cli/0.5.1")
        .send()
        .await
        .unwrap();
    assert!(response.text().await.unwrap().contains("Hello traced!"));
    let missing = rpc(
        "tools/call",
        serde_json::json!({"name": "nope", "arguments": {}}),
    );
    let _ = mcp_post(&http, &mcp, &missing)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await;
    let _ = mcp_post(
        &http,
        &format!("{mcp}?api_key=wrong-{KEY}"),
        &call_hello("x"),
    )
    .send()
    .await
    .unwrap();
    let _ = http
        .post(format!("{mcp}?api_key={KEY}"))
        .body("{broken")
        .send()
        .await
        .unwrap();
    let _ = mcp_post(&http, &mcp, &call_hello("x"))
        .header("x-api-key", KEY)
        .header("origin", "https://evil.example")
        .send()
        .await;
    // The key as a path segment, where guides for clients that drop query strings put it:
    // `/mcp/<key>` is the form latchkey serves, anything else is refused.
    for (path, status) in [
        (format!("/{KEY}"), 401),
        (format!("/mcp/{KEY}"), 200),
        (format!("/mcp/x/{KEY}"), 401),
    ] {
        let response = mcp_post(&http, &app.url(&path), &call_hello("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
    }
    // Apache on the Unix socket: the client address comes from X-Forwarded-For.
    let socket = app.sockets[0].clone();
    let forwarded = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        write!(stream, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(forwarded.starts_with("HTTP/1.1 200"), "{forwarded}");

    // Shutdown flushes what is still buffered.
    app.signal(nix::sys::signal::Signal::SIGTERM);
    let mut app = app;
    assert!(app.wait().success(), "{}", app.output());

    let spans = received.spans();
    let named = |name: &str| {
        spans
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let calls = named("tools/call hello");
    let log: String = app
        .output()
        .lines()
        .filter(|l| !l.contains("TRACE") && !l.contains("DEBUG"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        calls.len() >= 5,
        "tools/call hello spans: {}\n{log}",
        calls.len()
    );
    for call in &calls {
        assert_eq!(call.kind, 2, "SERVER");
        assert_eq!(
            attr(&call.attributes, "mcp.method.name").as_deref(),
            Some("tools/call")
        );
        assert_eq!(
            attr(&call.attributes, "gen_ai.tool.name").as_deref(),
            Some("hello")
        );
        assert_eq!(
            attr(&call.attributes, "gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        assert!(attr(&call.attributes, "jsonrpc.request.id").is_some());
        assert!(attr(&call.attributes, "latchkey.arguments.bytes").is_some());
        assert!(attr(&call.attributes, "network.transport").is_some());
    }
    // Over TCP the client's address and port are on the MCP span too; the real client says
    // who it is at initialize.
    assert!(
        calls.iter().any(|c| {
            attr(&c.attributes, "client.address").as_deref() == Some("127.0.0.1")
                && attr(&c.attributes, "client.port").is_some()
        }),
        "{}",
        received.dump()
    );
    assert!(
        named("initialize")
            .iter()
            .any(|s| attr(&s.attributes, "latchkey.client.name").is_some()),
        "{}",
        received.dump()
    );
    // A stateless call whose client said nothing of itself is named by its User-Agent,
    // never as rmcp (latchkey's own dependency, which stands in for unknown clients).
    let by_agent = received.spans().into_iter().find(|s| {
        hex(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736" && s.name == "tools/call hello"
    });
    let by_agent = by_agent.expect("the traced call's span");
    assert_eq!(
        attr(&by_agent.attributes, "latchkey.client.name").as_deref(),
        Some("inspector-cli/0.5.1")
    );

    // Shown with --nocapture: what a tools/call span carries, as received.
    for kv in &calls[0].attributes {
        println!("{} = {}", kv.key, string_value(&kv.value));
    }
    // Without a traceparent the MCP span is the HTTP span's child.
    let http_spans = named("POST /mcp");
    let child = calls
        .iter()
        .find(|c| c.links.is_empty())
        .expect("an unpropagated call");
    let parent = http_spans
        .iter()
        .find(|h| h.span_id == child.parent_span_id)
        .expect("the HTTP span is the parent");
    assert_eq!(parent.trace_id, child.trace_id);
    assert_eq!(parent.kind, 2);
    assert_eq!(
        attr(&parent.attributes, "http.route").as_deref(),
        Some("/mcp")
    );
    assert_eq!(
        attr(&parent.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(attr(&parent.attributes, "client.address").is_some());
    // With one, the client's trace is the parent and the HTTP span is linked.
    let traced = calls
        .iter()
        .find(|c| hex(&c.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736")
        .unwrap_or_else(|| panic!("no span in the propagated trace:\n{}", received.dump()));
    assert_eq!(hex(&traced.parent_span_id), "00f067aa0ba902b7");
    let link = traced.links.first().expect("a link to the HTTP span");
    let linked = http_spans
        .iter()
        .find(|h| h.span_id == link.span_id)
        .expect("the linked HTTP span");
    assert_eq!(
        attr(&linked.attributes, "url.query").as_deref(),
        Some("api_key=REDACTED&x=1")
    );
    // An unknown tool is an error with the JSON-RPC code.
    let failed = named("tools/call nope");
    assert_eq!(failed.len(), 1, "{}", received.dump());
    assert!(
        attr(&failed[0].attributes, "error.type").is_some_and(|e| e.starts_with('-')),
        "{:?}",
        failed[0]
    );
    assert_eq!(
        failed[0].status.as_ref().map(|s| s.code),
        Some(2),
        "status ERROR"
    );
    // Other MCP methods and the Unix socket are there too.
    assert!(
        !named("initialize").is_empty() && !named("tools/list").is_empty(),
        "{}",
        received.dump()
    );
    let unix = named("GET /healthz");
    assert!(
        unix.iter().any(
            |s| attr(&s.attributes, "network.transport").as_deref() == Some("unix")
                && attr(&s.attributes, "client.address").as_deref() == Some("203.0.113.9")
        ),
        "{}",
        received.dump()
    );
    // A path no route serves is recorded only up to the prefix latchkey serves.
    let shown: Vec<_> = named("POST")
        .iter()
        .filter_map(|s| attr(&s.attributes, "url.path"))
        .collect();
    assert!(
        shown.iter().any(|p| p == "/{redacted}") && shown.iter().any(|p| p == "/mcp/{redacted}"),
        "{shown:?}"
    );
    let resource = received.traces.lock().unwrap()[0].resource_spans[0]
        .resource
        .clone();
    let service = resource.and_then(|r| attr(&r.attributes, "service.name"));
    assert_eq!(service.as_deref(), Some("latchkey"));

    let metrics = received.metric_names();
    assert!(
        metrics.iter().any(|m| m == "mcp.server.operation.duration"),
        "{metrics:?}"
    );
    assert!(
        metrics.iter().any(|m| m == "http.server.request.duration"),
        "{metrics:?}"
    );

    // Not one form of the key anywhere: spans, metrics, logs.
    let dump = received.dump();
    for form in common::key_forms(KEY) {
        assert!(!dump.contains(&form), "the export holds {form:?}");
        assert!(!app.output().contains(&form), "the output holds {form:?}");
    }
}

#[tokio::test]
async fn no_endpoint_means_no_exporter() {
    let app = App::start(Spawn::default().env("RUST_LOG", "info"));
    let response = mcp_post(&http(), &app.url("/mcp"), &call_hello("x"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!app.output().contains("OTLP"), "{}", app.output());
}

/// latchkey's stderr when it refuses to start with `vars` set besides an endpoint.
fn refused_start(vars: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = common::command(dir.path())
        .args(["serve", "--api-key", KEY, "--listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unsupported_otlp_protocol_is_a_clear_error() {
    let stderr = refused_start(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" is not supported"),
        "{stderr}"
    );
}

#[test]
fn a_batch_setting_that_is_not_a_number_is_a_clear_error() {
    let stderr = refused_start(&[("OTEL_BSP_SCHEDULE_DELAY", "5s")]);
    assert!(
        stderr.contains("OTEL_BSP_SCHEDULE_DELAY=\"5s\" is not a number"),
        "{stderr}"
    );
}

/// `OTEL_TRACES_SAMPLER` is honoured, and a client's sampling decision with it: with
/// `parentbased_always_off`, a request of latchkey's own trace is not exported, while a call
/// whose propagated parent was sampled is, as that parent's child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_variable_and_a_sampled_parent_decide_what_is_exported() {
    let (endpoint, received) = common::otlp_receiver().await;
    let mut app = App::start(
        Spawn::default()
            .env(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{endpoint}/v1/traces"),
            )
            .env("OTEL_TRACES_SAMPLER", "parentbased_always_off")
            .env("OTEL_BSP_SCHEDULE_DELAY", "50"),
    );
    let http = http();
    let mcp = app.url("/mcp");
    for (name, meta) in [
        ("unsampled", serde_json::json!({})),
        (
            "sampled",
            serde_json::json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}),
        ),
    ] {
        let call = rpc(
            "tools/call",
            serde_json::json!({"name": "hello", "arguments": {"name": name}, "_meta": meta}),
        );
        let answer = mcp_post(&http, &mcp, &call)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(answer.contains(&format!("Hello {name}!")), "{answer}");
    }
    // Shutdown flushes what is still buffered: after it, nothing more can arrive.
    app.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(app.wait().success(), "{}", app.output());
    let spans = received.spans();
    assert_eq!(spans.len(), 1, "{}", received.dump());
    assert_eq!(spans[0].name, "tools/call hello");
    assert_eq!(hex(&spans[0].trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hex(&spans[0].parent_span_id), "b7ad6b7169203331");
}

/// The traces endpoint taken as is, and the headers a hosted backend needs (its token
/// percent-encoded, as the specification has it) sent with every export, never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_headers_reach_the_collector_and_no_log() {
    let (endpoint, received) = common::otlp_receiver().await;
    let token = "collector-token-6f1d2c";
    let app = App::start(
        Spawn::default()
            .env(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{endpoint}/v1/traces"),
            )
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                &format!("authorization=Bearer%20{token}, x-tenant = me"),
            )
            .env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=traces")
            .env("OTEL_BSP_SCHEDULE_DELAY", "50")
            .env("RUST_LOG", "trace"),
    );
    let response = mcp_post(&http(), &app.url("/mcp"), &call_hello("headers"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert!(response.text().await.unwrap().contains("Hello headers!"));
    common::eventually("the spans", || async {
        received
            .span_names()
            .iter()
            .any(|n| n == "tools/call hello")
    })
    .await;
    let headers = received.trace_headers.lock().unwrap()[0].clone();
    assert_eq!(headers["authorization"], format!("Bearer {token}").as_str());
    assert_eq!(headers["x-tenant"], "traces");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert!(!app.output().contains(token), "{}", app.output());
}

/// A password in the traces endpoint's URL stays out of every line latchkey writes, the
/// failed exports' errors and the HTTP client's trace lines included (nothing listens at
/// that port). Metrics stay off here: their exporter is `opentelemetry-otlp`'s.
#[test]
fn a_password_in_the_traces_endpoint_is_never_written() {
    let mut app = App::start(
        Spawn::default()
            .env(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!(
                    "http://collector:pw-7d3e9f@127.0.0.1:{}/v1/traces",
                    common::free_port()
                ),
            )
            .env("RUST_LOG", "trace"),
    );
    let url = app.url("/healthz");
    // A span to export; shutdown then tries to flush it and fails.
    assert!(
        reqwest::blocking::get(format!("{url}?x=1"))
            .unwrap()
            .status()
            .is_success()
    );
    app.signal(nix::sys::signal::Signal::SIGTERM);
    app.wait();
    let output = app.output();
    assert!(output.contains("collector:REDACTED@127.0.0.1"), "{output}");
    assert!(!output.contains("pw-7d3e9f"), "{output}");
}

#[test]
fn malformed_export_headers_are_a_clear_error() {
    let stderr = refused_start(&[(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "x-tenant=me,secret-without-equals",
    )]);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_HEADERS: entry 2 has no '='"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-without-equals"), "{stderr}");
}

#[test]
fn unsupported_export_compression_is_a_clear_error() {
    let stderr = refused_start(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_COMPRESSION=\"gzip\" is not supported: use none"),
        "{stderr}"
    );
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`: the same spans reach a gRPC collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_reaches_a_grpc_collector() {
    let mut collector = fake_opentelemetry_collector::FakeCollectorServer::start()
        .await
        .unwrap();
    let app = App::start(
        Spawn::default()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("OTEL_BSP_SCHEDULE_DELAY", "50"),
    );
    app.wait_for_output("(grpc; traces, metrics)");
    let response = mcp_post(
        &http(),
        &format!("{}?api_key={KEY}", app.url("/mcp")),
        &call_hello("grpc"),
    )
    .send()
    .await
    .unwrap();
    assert!(response.text().await.unwrap().contains("Hello grpc!"));
    let spans = collector.exported_spans(2, common::PATIENCE).await;
    let call = spans
        .iter()
        .find(|s| s.name == "tools/call hello")
        .expect("the tools/call span over gRPC");
    // The fake collector keeps attribute values in their Debug form.
    let value = |span: &fake_opentelemetry_collector::ExportedSpan, key: &str| {
        span.attributes.get(key).cloned().unwrap_or_default()
    };
    assert!(
        value(call, "gen_ai.tool.name").contains("\"hello\""),
        "{call:?}"
    );
    let http_span = spans
        .iter()
        .find(|s| s.name == "POST /mcp")
        .expect("the HTTP span over gRPC");
    assert!(
        value(http_span, "url.query").contains("\"api_key=REDACTED\""),
        "{http_span:?}"
    );
    for form in common::key_forms(KEY) {
        assert!(
            !format!("{spans:?}").contains(&form),
            "the gRPC export holds {form:?}"
        );
    }
}
