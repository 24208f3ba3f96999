//! No key in any output: latchkey runs at RUST_LOG=trace, serves requests that carry the key
//! in every place — good, wrong, malformed, refused — and not one byte it wrote holds the
//! key, its percent-encoded form or its digest.

mod common;

use common::{App, KEY, Spawn, call_hello, http, mcp_post};

fn assert_no_secret(output: &[u8], key: &str) {
    let text = String::from_utf8_lossy(output);
    assert!(
        text.len() > 1000,
        "trace output is suspiciously small:\n{text}"
    );
    for form in common::key_forms(key) {
        assert!(!text.contains(&form), "output holds {form:?}:\n{text}");
    }
}

#[tokio::test]
async fn no_key_reaches_any_output_at_trace_level() {
    let wrong = "lk-wrong-key-feedfacefeedfacefeedfacefeedface";
    let app = App::start(Spawn::default().unix().env("RUST_LOG", "trace").args(&[
        "--sessions",
        "--public-url",
        "https://mcp.example.com",
    ]));
    let client = http();
    let mcp = app.url("/mcp");

    // A real client, each way of sending the key, over TCP and the Unix socket.
    common::exercise_every_way(&app).await;

    // Wrong, malformed and refused requests that carry the real or a wrong key.
    let encoded = KEY.replace('-', "%2D");
    let requests = vec![
        mcp_post(&client, &format!("{mcp}?api_key={wrong}"), &call_hello("x")),
        mcp_post(&client, &mcp, &call_hello("x")).bearer_auth(wrong),
        mcp_post(&client, &mcp, &call_hello("x")).header("x-api-key", wrong),
        mcp_post(
            &client,
            &format!("{mcp}?api_key={encoded}&api_key=%ZZ"),
            &call_hello("x"),
        ),
        client
            .post(format!("{mcp}?api_key={KEY}"))
            .body("{not json"),
        client
            .post(format!("{mcp}?api_key={KEY}"))
            .header("content-type", "application/json")
            .body("{\"jsonrpc\":\"2.0\"}"),
        client.get(format!("{mcp}?api_key={KEY}")),
        client.delete(format!("{mcp}?api_key={KEY}")),
        client.get(app.url(&format!("/healthz?api_key={KEY}"))),
        client.head(app.url(&format!(
            "/.well-known/oauth-protected-resource?api_key={KEY}"
        ))),
        client
            .get(app.url(&format!("/nowhere?api_key={KEY}")))
            .bearer_auth(KEY),
        mcp_post(&client, &format!("{mcp}?api_key={KEY}"), &call_hello("x"))
            .header("host", "evil.example"),
        mcp_post(&client, &mcp, &call_hello("x"))
            .bearer_auth(KEY)
            .header("origin", "https://evil.example"),
        mcp_post(&client, &mcp, &call_hello("x"))
            .header("mcp-session-id", "no-such-session")
            .header("x-api-key", KEY),
        mcp_post(&client, &mcp, &call_hello("x"))
            .header("mcp-protocol-version", "1999-01-01")
            .bearer_auth(KEY),
    ];
    for request in requests {
        let _ = request.send().await.unwrap().bytes().await;
    }
    // A key put into a tool's arguments is the caller's business, but the tool's own name
    // argument is echoed back by design, so it is not part of this check.

    app.signal(nix::sys::signal::Signal::SIGTERM);
    let mut app = app;
    assert!(app.wait().success());
    assert_no_secret(&app.output_bytes(), KEY);
    assert_no_secret(&app.output_bytes(), wrong);
}

/// People whose client drops query strings are told to put the key in the path: every
/// place it can go in a path, on a server with a base path, is kept out of the output.
#[tokio::test]
async fn no_key_in_a_path_reaches_any_output() {
    let app = App::start(Spawn::default().env("RUST_LOG", "trace").args(&[
        "--base-path",
        "/base",
        "--log-format",
        "json",
    ]));
    let client = http();
    let paths = [
        format!("/{KEY}"),
        format!("/mcp/{KEY}"),
        format!("/base/{KEY}/mcp"),
        format!("/base/mcp/{KEY}"),
        format!("/{KEY}/base/mcp"),
        format!("/.well-known/{KEY}"),
        format!("/.well-known/oauth-protected-resource/base/mcp/{KEY}"),
        format!("/base/.well-known/oauth-authorization-server/{KEY}"),
        format!("/healthz/{KEY}"),
    ];
    for path in &paths {
        for request in [
            client.get(app.url(path)),
            mcp_post(&client, &app.url(path), &call_hello("x")),
            mcp_post(&client, &app.url(path), &call_hello("x")).bearer_auth(KEY),
        ] {
            let response = request.send().await.unwrap();
            // `{base}/mcp/<key>` is the documented path form: it is served.
            let served = *path == format!("/base/mcp/{KEY}");
            let expected: &[u16] = if served {
                &[200, 405, 406]
            } else {
                &[401, 404]
            };
            assert!(
                expected.contains(&response.status().as_u16()),
                "{path}: {}",
                response.status()
            );
        }
    }
    app.signal(nix::sys::signal::Signal::SIGTERM);
    let mut app = app;
    assert!(app.wait().success());
    let output = app.output();
    assert_no_secret(output.as_bytes(), KEY);
    // `{base}/mcp/<key>` is taken as a key and the request goes on as `{base}/mcp`.
    assert!(
        output.contains(r#""path":"/base/mcp","status":200"#),
        "{output}"
    );
    // What the access log shows instead: the prefix latchkey serves, then a placeholder.
    for shown in [
        r#""path":"/{redacted}""#,
        r#""path":"/base/{redacted}""#,
        r#""path":"/.well-known/{redacted}""#,
        r#""path":"/.well-known/oauth-protected-resource/{redacted}""#,
        r#""path":"/base/.well-known/oauth-authorization-server/{redacted}""#,
    ] {
        assert!(output.contains(shown), "no {shown} in:\n{output}");
    }
}

#[tokio::test]
async fn key_flags_and_files_are_not_echoed_on_errors() {
    // A refused key, from a flag, from the environment and from a file, is not repeated.
    let short = "tooshort-secret-value";
    let dir = tempfile::tempdir().unwrap();
    for (args, env) in [
        (vec!["--api-key", short], None),
        (vec![], Some(("LATCHKEY_API_KEY", short))),
    ] {
        let mut cmd = common::command(dir.path());
        cmd.arg("serve").args(&args);
        if let Some((name, value)) = env {
            cmd.env(name, value);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("at least 32 characters"), "{text}");
        assert!(!text.contains(short), "{text}");
    }
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("{KEY}\n{short}\n")).unwrap();
    let out = common::command(dir.path())
        .arg("serve")
        .arg("--api-key-file")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(":2:"), "{text}");
    assert!(!text.contains(short) && !text.contains(KEY), "{text}");
    // A URL pasted with its key into --public-url or healthcheck --url is not repeated.
    let out = common::command(dir.path())
        .args([
            "serve",
            "--api-key",
            KEY,
            "--public-url",
            &format!("https://x.example/?api_key={short}"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("--public-url"),
        "{text}"
    );
    assert!(!text.contains(short), "{text}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = common::command(dir.path())
        .args([
            "healthcheck",
            "--url",
            &format!("http://{closed}/healthz?api_key={short}"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("/healthz"), "{text}");
    assert!(!text.contains(short), "{text}");
    // --help shows the variable, never its value.
    let out = common::command(dir.path())
        .args(["serve", "--help"])
        .env("LATCHKEY_API_KEY", KEY)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("LATCHKEY_API_KEY"), "{text}");
    assert!(!text.contains(KEY), "{text}");
}
