//! The access log: one line per request — answered, refused or open — with what a person
//! needs to see and no key; in the text format too; and none when `RUST_LOG` turns it off.

mod common;

use common::{App, KEY, Spawn, call_hello, http, mcp_post};
use nix::sys::signal::Signal;

/// The access log lines written so far, parsed.
fn access_lines(app: &App) -> Vec<serde_json::Value> {
    app.output()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "latchkey::access")
        .collect()
}

#[tokio::test]
async fn every_request_gets_one_json_line_without_the_key() {
    let app = App::start(Spawn::default());
    let client = http();
    let mcp = app.url("/mcp");
    let ok = mcp_post(
        &client,
        &format!("{mcp}?x=1&api_key={KEY}"),
        &call_hello("a"),
    )
    .header("user-agent", "ua \"quoted\" é")
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    let bearer = mcp_post(&client, &mcp, &call_hello("b")).bearer_auth(KEY);
    assert_eq!(bearer.send().await.unwrap().status(), 200);
    let wrong = mcp_post(&client, &mcp, &call_hello("c")).header("x-api-key", "w".repeat(40));
    assert_eq!(wrong.send().await.unwrap().status(), 401);
    let foreign = mcp_post(&client, &mcp, &call_hello("d"))
        .bearer_auth(KEY)
        .header("host", "evil.example");
    assert_eq!(foreign.send().await.unwrap().status(), 403);
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    common::wait_for("five access log lines", || access_lines(&app).len() == 5);
    let lines = access_lines(&app);
    let field = |i: usize, name: &str| lines[i][name].clone();
    let expected = [
        ("POST", "/mcp", 200, "query"),
        ("POST", "/mcp", 200, "bearer"),
        // The wrong key came in X-API-Key: recorded as that, with its 401.
        ("POST", "/mcp", 401, "header"),
        ("POST", "/mcp", 403, "none"),
        ("GET", "/healthz", 200, "none"),
    ];
    for (i, (method, path, status, auth)) in expected.into_iter().enumerate() {
        assert_eq!(field(i, "method"), method, "{:?}", lines[i]);
        assert_eq!(field(i, "path"), path, "{:?}", lines[i]);
        assert_eq!(field(i, "status"), status, "{:?}", lines[i]);
        assert_eq!(field(i, "auth"), auth, "{:?}", lines[i]);
        assert_eq!(field(i, "client"), "127.0.0.1", "{:?}", lines[i]);
        assert_eq!(field(i, "level"), "INFO");
        assert_eq!(field(i, "message"), "request");
        assert!(field(i, "duration_ms").as_f64().unwrap() >= 0.0);
        assert!(field(i, "timestamp").as_str().unwrap().ends_with('Z'));
    }
    // The query as sent, in its order, with the key's value replaced.
    assert_eq!(field(0, "query"), "x=1&api_key=REDACTED");
    assert_eq!(field(0, "user_agent"), "ua \"quoted\" é");
    assert!(lines[1].get("query").is_none());
    for form in common::key_forms(KEY) {
        assert!(!app.output().contains(&form), "the output holds {form:?}");
    }
}

#[tokio::test]
async fn text_format_and_turning_the_log_off() {
    let text = App::start(Spawn::default().args(&["--log-format", "text"]));
    let client = http();
    let response = mcp_post(&client, &text.url("/mcp"), &call_hello("t"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    text.wait_for_output("latchkey::access: request method=POST path=/mcp status=200 ");
    let output = text.output();
    let line = output
        .lines()
        .find(|l| l.contains("latchkey::access"))
        .unwrap();
    assert!(
        line.ends_with(r#"client="127.0.0.1" auth="bearer" mcp_method="tools/call" tool="hello""#),
        "{line}"
    );

    let mut off =
        App::start(Spawn::default().env("RUST_LOG", "info,rmcp=warn,latchkey::access=off"));
    let response = mcp_post(&client, &off.url("/mcp"), &call_hello("o"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The request was answered before the shutdown, so its line would be written by now.
    off.signal(Signal::SIGTERM);
    assert!(off.wait().success());
    let output = off.output();
    assert!(output.contains("stopped"), "{output}");
    assert!(!output.contains("latchkey::access"), "{output}");
}
