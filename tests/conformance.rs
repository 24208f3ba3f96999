//! The MCP conformance suite (npm `@modelcontextprotocol/conformance` 0.1.16, its server
//! scenarios for 2025-06-18 and 2025-11-25) run against latchkey in front of the suite's own
//! reference server (tests/upstreams/conformance_server.ts): what the server passes alone,
//! it passes through latchkey. Without `--sessions` and with several upstreams, what fails
//! by design is listed below, and any other failure, or a listed one that passes, fails the
//! test.

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

/// What latchkey with two upstreams fails by design: the suite gets and reads the reference
/// server's prompts, resources and completions by their own names (`test_simple_prompt`,
/// `test://static-text`), which several upstreams serve prefixed. Tools are callable
/// unprefixed when unique, so every tools scenario passes.
const SEVERAL: &[&str] = &[
    "completion-complete",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
];

/// Timing, not design: the upstream's log messages during a call reach the client on its
/// session's GET stream (rmcp's server routes only progress and answers to a call's own
/// stream), and the suite waits 200 ms after the call for them. Seen to pass alone and to
/// fail with the other tests running beside it.
const LOGGING: &[&str] = &["tools-call-with-logging"];

/// Without sessions the scenario checks two streams a stateless server does not keep: seen
/// both to pass with no checks and to count as failed.
const STREAMS: &[&str] = &["server-sse-multiple-streams"];

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

/// Starts tests/upstreams/conformance_server.ts (beside the packages it imports) with
/// tsx's loader, and reads the URL it prints once it listens.
fn reference_server() -> Reference {
    let script = common::upstreams::beside_node_modules("conformance_server.ts");
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

/// Runs every active server scenario against `url`: the scenarios that failed, and the
/// summary.
fn failures(url: &str) -> (BTreeSet<String>, String) {
    let results = tempfile::tempdir().unwrap();
    let output = Command::new(newer_node())
        .arg(node_dir().join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url", url, "--output-dir"])
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

#[tokio::test]
async fn with_several_upstreams_only_prefixed_names_fail() {
    let reference = reference_server();
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
    let (failed, summary) = failures(&app.url(&format!("/mcp/{KEY}")));
    assert_failed(&failed, SEVERAL, LOGGING, &summary);
}

/// The upstream's log messages during a call reach the calling session, all of them and in
/// order (the suite's own logging scenario cannot tell: it waits only 200 ms for them).
#[tokio::test]
async fn an_upstreams_log_messages_reach_the_calling_session() {
    let reference = reference_server();
    let app = latchkey(&["--upstream", &reference.url], true).await;
    let out = common::client_script(
        "python_logging_client.py",
        &[
            &app.url("/mcp"),
            "test_tool_with_logging",
            "Tool execution completed",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client failed:\n{stderr}");
    let logged: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let texts: Vec<&str> = logged.iter().filter_map(|data| data.as_str()).collect();
    let ours: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| t.starts_with("Tool "))
        .collect();
    assert_eq!(
        ours,
        [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed"
        ],
        "{texts:?}"
    );
}
