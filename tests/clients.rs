//! Official MCP SDKs as clients, the way people run them: the Python SDK (PyPI `mcp`, pinned
//! in tests/clients/requirements.txt, installed by `.ci/run` into `target/test-python`)
//! connects, lists and calls tools, and closes its session without a complaint.

mod common;

use common::{App, Spawn};

/// Runs the Python SDK client against `url`; returns what it printed and its warnings.
fn python_client(url: &str) -> (serde_json::Value, String) {
    let out = common::client_script("python_sdk_client.py", &[url]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the Python client failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (seen, stderr)
}

#[test]
fn python_sdk_calls_a_tool_and_ends_its_session_cleanly() {
    for args in [&[][..], &["--sessions"][..]] {
        let app = App::start(Spawn::default().args(args));
        let (seen, warnings) = python_client(&app.url("/mcp"));
        assert_eq!(seen["server"], "latchkey", "{args:?}");
        assert_eq!(seen["tools"], serde_json::json!(["hello"]), "{args:?}");
        assert_eq!(
            seen["text"],
            serde_json::json!(["Hello Python!"]),
            "{args:?}"
        );
        assert_eq!(seen["is_error"], false, "{args:?}");
        // The SDK warns when a session's DELETE gets anything but 200/204 (or 405).
        assert!(
            !warnings.contains("Session termination failed"),
            "{args:?}:\n{warnings}"
        );
        if !args.is_empty() {
            let log = app.output();
            assert!(
                log.lines()
                    .any(|l| l.contains(r#""method":"DELETE""#) && l.contains(r#""status":204"#)),
                "the session was not ended with a DELETE:\n{log}"
            );
        }
    }
}
