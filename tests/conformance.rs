//! The MCP conformance suite (npm `@modelcontextprotocol/conformance` 0.1.16, its server
//! scenarios for 2025-06-18 and 2025-11-25) run against latchkey in front of the suite's own
//! reference server (tests/upstreams/conformance_server.ts): what the server passes alone,
//! it passes through latchkey. Without `--sessions` and with several upstreams, what fails
//! by design is listed below, and any other failure, or a listed one that passes, fails the
//! test. The same for the suite's scenarios that protocol 2026-07-28 requires (0.2.0-alpha.11,
//! installed as `conformance-2026-07-28`), against its reference server of that release
//! (tests/upstreams/conformance_server_2026.ts), whose failures alone are listed too.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use common::upstreams::{newer_node, node_dir, python, wait_ready};
use common::{App, KEY, PATIENCE, Spawn};

/// What latchkey without `--sessions` fails by design: a stateless client cannot be asked
/// anything, nor told anything, in the middle of a call (README "What passes through"),
/// and subscriptions are offered only with sessions.
const STATELESS: &[&str] = &[
    "tools-call-with-logging",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "elicitation-sep1330-enums",
    "resources-subscribe",
    "resources-unsubscribe",
];

/// Timing, not design: the upstream's log messages during a call reach the client on its
/// session's GET stream (rmcp's server routes only progress and answers to a call's own
/// stream), and the suite waits 200 ms after the call for them. Seen to pass alone and to
/// fail with the other tests running beside it.
const LOGGING: &[&str] = &["tools-call-with-logging"];

/// Without sessions the scenario checks two streams a stateless server does not keep: seen
/// both to pass with no checks and to count as failed.
const STREAMS: &[&str] = &["server-sse-multiple-streams"];

/// What the 2026-07-28 reference server fails alone: the tasks extension (it does not
/// implement its 2026-07-28 form), `resultType` missing from its tool calls' results,
/// header checks its SDK does not make, and custom headers it has no tool to test with.
const ALONE_2026: &[&str] = &[
    "tasks-capability-negotiation",
    "tasks-dispatch-and-envelope",
    "tasks-lifecycle",
    "tasks-mrtr-composition",
    "tasks-mrtr-input",
    "tasks-request-headers",
    "tasks-request-state-removal",
    "tasks-required-task-error",
    "tasks-wire-fields",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "tools-call-with-progress",
    "http-header-validation",
    "http-custom-header-server-validation",
];

/// What it fails through latchkey. latchkey says `resultType` and checks the headers (rmcp),
/// so those pass. But latchkey's own connection to an upstream is on 2025-11-25 (one
/// connection serves every client): the server then offers none of its 2026-07-28 test
/// tools (`test_input_required_*`, `test_missing_capability`, `test_trigger_*_change`), so
/// every `input_required` scenario and the stateless one fail. Tasks fail as alone.
const THROUGH_LATCHKEY_2026: &[&str] = &[
    "tasks-capability-negotiation",
    "tasks-dispatch-and-envelope",
    "tasks-lifecycle",
    "tasks-mrtr-composition",
    "tasks-mrtr-input",
    "tasks-request-headers",
    "tasks-request-state-removal",
    "tasks-required-task-error",
    "tasks-wire-fields",
    "http-custom-header-server-validation",
    "server-stateless",
    "input-required-result-basic-elicitation",
    "input-required-result-basic-sampling",
    "input-required-result-basic-list-roots",
    "input-required-result-request-state",
    "input-required-result-multiple-input-requests",
    "input-required-result-multi-round",
    "input-required-result-non-tool-request",
    "input-required-result-result-type",
    "input-required-result-tampered-state",
    "input-required-result-capability-check",
];

/// Which suite runs: the package's folder under node_modules, and its arguments.
#[derive(Clone, Copy)]
struct Suite {
    package: &'static str,
    args: &'static [&'static str],
}

/// 0.1.16's active server scenarios.
const SUITE: Suite = Suite {
    package: "@modelcontextprotocol/conformance",
    args: &[],
};

/// Exactly the scenarios protocol 2026-07-28 requires.
const SUITE_2026: Suite = Suite {
    package: "conformance-2026-07-28",
    args: &["--requirements", "2026-07-28"],
};

/// The reference server, on a port of its own choosing; killed when dropped.
struct Reference {
    child: Child,
    url: String,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts tests/upstreams/`script` (beside the packages it imports) with tsx's loader, and
/// reads the URL it prints once it listens.
fn reference_server_of(script: &str) -> Reference {
    let script = common::upstreams::beside_node_modules(script);
    let mut child = Command::new(newer_node())
        // tsx's loader in this process (its `tsx` command would run the server in a child
        // that outlives a kill).
        .args(["--import", "tsx"])
        .arg(script)
        .current_dir(node_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the conformance reference server starts");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split("running on ").nth(1) {
                let _ = sender.send(url.trim().to_owned());
            }
        }
    });
    let url = receiver
        .recv_timeout(PATIENCE)
        .expect("the conformance reference server says where it listens");
    Reference { child, url }
}

/// The 0.1.16 suite's reference server.
fn reference_server() -> Reference {
    reference_server_of("conformance_server.ts")
}

/// Runs every active server scenario against `url`: the scenarios that failed, and the
/// summary.
fn failures(url: &str) -> (BTreeSet<String>, String) {
    failures_of(SUITE, url)
}

/// Runs `suite`'s server scenarios against `url`.
fn failures_of(suite: Suite, url: &str) -> (BTreeSet<String>, String) {
    let results = tempfile::tempdir().unwrap();
    let output = Command::new(newer_node())
        .arg(
            node_dir()
                .join("node_modules")
                .join(suite.package)
                .join("dist/index.js"),
        )
        .args(["server", "--url", url])
        .args(suite.args)
        .arg("--output-dir")
        .arg(results.path())
        .current_dir(results.path())
        .output()
        .expect("the conformance suite runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.split("=== SUMMARY ===").nth(1).unwrap_or_else(|| {
        panic!(
            "no summary from the conformance suite:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let ran = summary
        .lines()
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'));
    assert!(
        ran.clone().count() >= 30,
        "too few scenarios ran:\n{summary}"
    );
    let failed = ran
        .filter(|line| line.starts_with('✗'))
        .map(|line| line[line.find(' ').unwrap() + 1..line.find(':').unwrap()].to_owned())
        .collect();
    (failed, summary.to_owned())
}

/// Asserts that exactly `expected` failed, give or take `either` (scenarios whose outcome
/// depends on timing through latchkey, said where they are listed).
fn assert_failed(failed: &BTreeSet<String>, expected: &[&str], either: &[&str], summary: &str) {
    let failed: BTreeSet<&str> = failed
        .iter()
        .map(String::as_str)
        .filter(|name| !either.contains(name))
        .collect();
    let expected: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(failed, expected, "{summary}");
}

/// latchkey in front of `upstream` (its flags), once every upstream is ready.
async fn latchkey(upstream: &[&str], sessions: bool) -> App {
    let mut args = upstream.to_vec();
    if sessions {
        args.push("--sessions");
    }
    let app = Spawn::default().args(&args).start();
    wait_ready(&app).await;
    app
}

#[tokio::test]
async fn through_latchkey_every_scenario_passes_that_passes_alone() {
    let reference = reference_server();
    let (alone, summary) = failures(&reference.url);
    assert!(alone.is_empty(), "the reference server alone:\n{summary}");

    let app = latchkey(&["--upstream", &reference.url], true).await;
    let (failed, summary) = failures(&app.url(&format!("/mcp/{KEY}")));
    assert_failed(&failed, &[], LOGGING, &summary);
}

#[tokio::test]
async fn without_sessions_only_what_needs_a_session_fails() {
    let reference = reference_server();
    let app = latchkey(&["--upstream", &reference.url], false).await;
    let (failed, summary) = failures(&app.url(&format!("/mcp/{KEY}")));
    assert_failed(&failed, STATELESS, STREAMS, &summary);
}

/// With two upstreams every scenario passes too: tools, prompts, resources, completions
/// and subscriptions are reached by the reference server's own names (`test_simple_prompt`,
/// `test://static-text`) when only it offers them.
#[tokio::test]
async fn with_several_upstreams_every_scenario_passes_that_passes_alone() {
    let reference = reference_server();
    let (_config, app) = with_the_paged_server(&reference).await;
    let (failed, summary) = failures(&app.url(&format!("/mcp/{KEY}")));
    assert_failed(&failed, &[], LOGGING, &summary);
}

/// latchkey with `--sessions` in front of `reference` as `conformance` and the FastMCP
/// paged server as `paged`, from a configuration file (kept in the directory returned).
async fn with_the_paged_server(reference: &Reference) -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latchkey.toml");
    let paged = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/upstreams/paged_server.py"
    );
    let toml = format!(
        "[upstreams.conformance]\nurl = \"{}\"\n\n[upstreams.paged]\ncommand = [\"{}\", \"{paged}\"]\n",
        reference.url,
        python()
    );
    std::fs::write(&config, toml).unwrap();
    let app = latchkey(&["--config", config.to_str().unwrap()], true).await;
    (dir, app)
}

/// The upstream's log messages during a call reach the calling session, all of them and in
/// order (the suite's own logging scenario cannot tell: it waits only 200 ms for them); with
/// several upstreams their logger names the upstream.
#[tokio::test]
async fn an_upstreams_log_messages_reach_the_calling_session() {
    let reference = reference_server();
    let alone = latchkey(&["--upstream", &reference.url], true).await;
    assert_logged_through(&alone, "test_tool_with_logging", None);
    let (_config, several) = with_the_paged_server(&reference).await;
    assert_logged_through(
        &several,
        "conformance__test_tool_with_logging",
        Some("conformance"),
    );
}

/// Calls `tool` with the Python SDK's logging client: the reference server's three messages
/// arrive in order, each with `logger`.
fn assert_logged_through(app: &App, tool: &str, logger: Option<&str>) {
    let out = common::client_script(
        "python_logging_client.py",
        &[&app.url("/mcp"), tool, "Tool execution completed"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client failed:\n{stderr}");
    let logged: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<&serde_json::Value> = logged
        .iter()
        .filter(|m| m["data"].as_str().is_some_and(|t| t.starts_with("Tool ")))
        .collect();
    let expected: Vec<serde_json::Value> = [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ]
    .into_iter()
    .map(|data| serde_json::json!({"logger": logger, "data": data}))
    .collect();
    assert_eq!(ours, expected.iter().collect::<Vec<_>>(), "{logged:?}");
}

/// The 2026-07-28 scenarios: alone, the reference server fails what is listed, and through
/// latchkey, with and without sessions, exactly what needs latchkey's upstream connection
/// on 2026-07-28 or the tasks extension fails.
#[tokio::test]
async fn the_2026_07_28_suite_fails_through_latchkey_only_what_needs_the_upstream_on_it() {
    let reference = reference_server_of("conformance_server_2026.ts");
    let (alone, summary) = failures_of(SUITE_2026, &reference.url);
    assert_failed(&alone, ALONE_2026, &[], &summary);
    for sessions in [false, true] {
        let app = latchkey(&["--upstream", &reference.url], sessions).await;
        let (failed, summary) = failures_of(SUITE_2026, &app.url(&format!("/mcp/{KEY}")));
        assert_failed(&failed, THROUGH_LATCHKEY_2026, &[], &summary);
    }
}
