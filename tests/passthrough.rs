//! What the bridge passes beyond tools, prompts and resources, with real servers nobody
//! here wrote: MCP Apps (an app on the npm ext-apps SDK, tests/upstreams/apps_server.mjs)
//! behind a prefix next to the npm reference server (`server-everything`), whose
//! elicitation, sampling, roots and long-running tools are answered by the official Python
//! SDK as the client (tests/clients/python_relay_client.py). `.ci/run` installs both.

mod common;

use common::upstreams::{apps_server, everything_server, wait_ready};
use common::{App, KEY, Spawn, http, mcp_post, rpc};
use rmcp::model::{CallToolRequestParams, ServerNotification, SubscriptionFilter};
use rmcp::service::SubscriptionEnd;
use serde_json::{Value, json};
use std::time::Duration;

/// latchkey fronting the apps server and the reference server, from a configuration file,
/// with `args`.
async fn apps_and_everything(dir: &tempfile::TempDir, args: &[&str]) -> App {
    let config = dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        format!(
            "[upstreams.apps]\ncommand = {apps:?}\n\n[upstreams.everything]\ncommand = [{everything:?}, \"stdio\"]\n",
            apps = apps_server(),
            everything = everything_server(),
        ),
    )
    .unwrap();
    let app = Spawn::default()
        .args(&["--config", &config.display().to_string()])
        .args(args)
        .start();
    wait_ready(&app).await;
    app
}

/// One stateless request's JSON-RPC answer.
async fn request(app: &App, method: &str, params: Value) -> Value {
    let response = mcp_post(&http(), &app.url("/mcp"), &rpc(method, params))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{method}");
    // With sessions, rmcp answers on an event stream: the answer is its JSON-RPC event.
    let body = response.text().await.unwrap();
    let json = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .find(|data| data.contains("\"jsonrpc\""))
        .unwrap_or(&body);
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{method}: {e}: {body}"))
}

fn tool<'a>(listing: &'a Value, name: &str) -> &'a Value {
    listing["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tool {name} in {listing}"))
}

/// Behind a prefix, an app's UI references (`_meta.ui.resourceUri`, the flat
/// `ui/resourceUri`, ChatGPT's `openai/outputTemplate`) name the prefixed resource, which
/// reads; the app's own unprefixed calls reach its tools (before any listing too); a name
/// two upstreams share is refused with both prefixed names; results' references (the app's
/// `_meta`, `resource_link`s of both servers) are prefixed and everything else in `_meta`
/// passes as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_app_works_behind_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let app = apps_and_everything(&dir, &[]).await;

    let tick = request(&app, "tools/call", json!({"name": "tick"})).await;
    assert_eq!(tick["result"]["content"][0]["text"], "tock", "{tick}");

    let listing = request(&app, "tools/list", json!({})).await;
    let ui = "apps:ui://clock/app.html";
    assert_eq!(
        tool(&listing, "apps__show-clock")["_meta"],
        json!({"ui": {"resourceUri": ui}, "ui/resourceUri": ui, "openai/outputTemplate": ui})
    );
    assert_eq!(
        tool(&listing, "apps__tick")["_meta"]["ui"],
        json!({"resourceUri": ui, "visibility": ["app"]})
    );
    assert!(!listing.to_string().contains("\"tick\""), "{listing}");

    let read = request(&app, "resources/read", json!({"uri": ui})).await;
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], ui, "{read}");
    assert_eq!(contents["mimeType"], "text/html;profile=mcp-app", "{read}");
    assert_eq!(
        contents["_meta"],
        json!({"ui": {"csp": {"connectDomains": []}, "prefersBorder": true}})
    );
    assert!(contents["text"].as_str().unwrap().contains("<title>clock"));

    let shown = request(
        &app,
        "tools/call",
        json!({"name": "show-clock", "arguments": {"zone": "UTC"}}),
    )
    .await;
    let result = &shown["result"];
    assert_eq!(
        result["_meta"],
        json!({"ui": {"resourceUri": ui}, "clock/zone": "UTC"}),
        "{shown}"
    );
    assert_eq!(result["content"][1]["type"], "resource_link", "{shown}");
    assert_eq!(result["content"][1]["uri"], ui, "{shown}");
    assert_eq!(
        result["structuredContent"],
        json!({"zone": "UTC", "time": "12:00"})
    );

    let echo = request(
        &app,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "a"}}),
    )
    .await;
    let refused = echo["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{echo}"));
    assert_eq!(echo["error"]["code"], -32602, "{echo}");
    assert!(
        refused.contains("\"apps__echo\"") && refused.contains("\"everything__echo\""),
        "{refused}"
    );
    let prefixed = request(
        &app,
        "tools/call",
        json!({"name": "apps__echo", "arguments": {"message": "a"}}),
    )
    .await;
    assert_eq!(
        prefixed["result"]["content"][0]["text"], "clock echo: a",
        "{prefixed}"
    );

    let links = request(
        &app,
        "tools/call",
        json!({"name": "everything__get-resource-links", "arguments": {"count": 2}}),
    )
    .await;
    let uris: Vec<&str> = links["result"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "resource_link")
        .map(|c| c["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris.len(), 2, "{links}");
    for uri in uris {
        assert!(uri.starts_with("everything:demo://"), "{uri}");
        let read = request(&app, "resources/read", json!({"uri": uri})).await;
        assert_eq!(read["result"]["contents"][0]["uri"], uri, "{read}");
    }

    let prompt = request(
        &app,
        "prompts/get",
        json!({"name": "everything__resource-prompt",
               "arguments": {"resourceType": "Text", "resourceId": "2"}}),
    )
    .await;
    let embedded = &prompt["result"]["messages"][1]["content"]["resource"];
    assert_eq!(
        embedded["uri"], "everything:demo://resource/dynamic/text/2",
        "{prompt}"
    );
}

/// What an app's own code reads and gets by the names it knows reaches the one upstream
/// that offers it: a resource it lists (`ui://…`), one that fits a template of another
/// upstream, a prompt; the answers come named as everywhere else, prefixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_resources_are_reached_by_their_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let app = apps_and_everything(&dir, &[]).await;

    let read = request(
        &app,
        "resources/read",
        json!({"uri": "ui://clock/app.html"}),
    )
    .await;
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], "apps:ui://clock/app.html", "{read}");
    assert!(contents["text"].as_str().unwrap().contains("<title>clock"));

    let own = "demo://resource/dynamic/text/2";
    let read = request(&app, "resources/read", json!({"uri": own})).await;
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], format!("everything:{own}"), "{read}");
    assert!(!contents["text"].as_str().unwrap().is_empty(), "{read}");

    let prompt = request(
        &app,
        "prompts/get",
        json!({"name": "resource-prompt",
               "arguments": {"resourceType": "Text", "resourceId": "2"}}),
    )
    .await;
    let embedded = &prompt["result"]["messages"][1]["content"]["resource"];
    assert_eq!(embedded["uri"], format!("everything:{own}"), "{prompt}");

    let unknown = request(&app, "resources/read", json!({"uri": "ui://nowhere"})).await;
    assert_eq!(unknown["error"]["code"], -32002, "{unknown}");
}

/// With the app as the only upstream, its names and references are its own, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_app_alone_is_passed_as_it_is() {
    let mut command = vec!["--".to_owned()];
    command.extend(apps_server());
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let app = Spawn::default().args(&command).start();
    wait_ready(&app).await;
    let listing = request(&app, "tools/list", json!({})).await;
    let ui = "ui://clock/app.html";
    assert_eq!(
        tool(&listing, "show-clock")["_meta"],
        json!({"ui": {"resourceUri": ui}, "ui/resourceUri": ui, "openai/outputTemplate": ui})
    );
    let read = request(&app, "resources/read", json!({"uri": ui})).await;
    assert_eq!(read["result"]["contents"][0]["uri"], ui, "{read}");
}

/// What tests/clients/python_relay_client.py saw through `app`, with `prefix` before the
/// reference server's tool names, answering (`answer`) or declaring nothing (`refuse`).
fn relay_client(app: &App, prefix: &str, mode: &str) -> Value {
    let out = common::client_script("python_relay_client.py", &[&app.url("/mcp"), prefix, mode]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// The reference server's elicitation, sampling and roots answered by the client whose call
/// asked: what it was asked, and its answers in the tools' results.
fn assert_answered(seen: &Value) {
    assert_eq!(
        seen["asked"],
        json!([
            [
                "elicitation",
                "Please provide inputs for the following fields:"
            ],
            [
                "sampling",
                "Resource trigger-sampling-request context: what is 2+2"
            ],
            ["roots"]
        ]),
        "{seen}"
    );
    let results = &seen["results"];
    for (tool, answer) in [
        ("trigger-elicitation-request", "Name: Ada Lovelace"),
        (
            "trigger-sampling-request",
            "a reply from the client's model",
        ),
        ("get-roots-list", "file:///home/ada/notes"),
    ] {
        assert_eq!(results[tool]["error"], false, "{tool}: {seen}");
        let text = results[tool]["text"].as_str().unwrap();
        assert!(text.contains(answer), "{tool}: {text}");
    }
}

/// With sessions, a client that declared nothing has the upstream's elicitation and
/// sampling refused at once with -32601 and why (and is never asked); roots it cannot give
/// either. A client that declared them is asked, and its answers reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_sampling_and_roots_reach_the_client_that_called() {
    let app = Spawn::default()
        .args(&[
            "--sessions",
            "--relay-roots",
            "--",
            &everything_server(),
            "stdio",
        ])
        .start();
    wait_ready(&app).await;

    let refused = relay_client(&app, "", "refuse");
    assert_eq!(refused["asked"], json!([]), "{refused}");
    for (tool, method) in [
        ("trigger-elicitation-request", "elicitation/create"),
        ("trigger-sampling-request", "sampling/createMessage"),
    ] {
        let result = &refused["results"][tool];
        assert_eq!(result["error"], true, "{refused}");
        let expected = format!(
            "-32601: latchkey cannot relay {method}: the calling client did not declare that it \
             can answer it"
        );
        assert!(
            result["text"].as_str().unwrap().contains(&expected),
            "{result}"
        );
    }
    let roots = refused["results"]["get-roots-list"]["text"]
        .as_str()
        .unwrap();
    assert!(!roots.contains("file://"), "{roots}");
    app.wait_for_output("upstream asked roots/list; refused");

    assert_answered(&relay_client(&app, "", "answer"));
    assert_on_the_calls_stream(&app);
}

/// Each relayed request rode the stream of the client's call it belongs to (SEP-2260), not
/// the session's GET stream, which a client need not open: rmcp warns when it falls back.
fn assert_on_the_calls_stream(app: &App) {
    let output = app.output();
    assert!(
        output.matches("relayed to the client").count() >= 3,
        "{output}"
    );
    assert!(
        !output.contains("falling back to standalone stream"),
        "{output}"
    );
}

/// The same behind a prefix, next to a second upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_requests_work_behind_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let app = apps_and_everything(&dir, &["--sessions", "--relay-roots"]).await;
    assert_answered(&relay_client(&app, "everything__", "answer"));
    assert_on_the_calls_stream(&app);
}

/// Without sessions a client cannot be reached in the middle of its request: the
/// upstream's request is refused at once, saying so, even to a client that could answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_client_is_never_left_waiting() {
    let app = Spawn::default()
        .args(&["--", &everything_server(), "stdio"])
        .start();
    wait_ready(&app).await;
    let seen = relay_client(&app, "", "answer");
    assert_eq!(seen["asked"], json!([]), "{seen}");
    // Without --relay-roots, upstreams are not told latchkey can list roots: the
    // reference server offers no tool that needs them.
    let listing = request(&app, "tools/list", json!({})).await;
    assert!(!listing.to_string().contains("get-roots-list"), "{listing}");
    assert!(
        listing.to_string().contains("trigger-sampling-request"),
        "{listing}"
    );
    let result = &seen["results"]["trigger-elicitation-request"];
    assert_eq!(result["error"], true, "{seen}");
    assert!(
        result["text"]
            .as_str()
            .unwrap()
            .contains("elicitation/create: no client session has a request in flight"),
        "{result}"
    );
}

/// latchkey with `--sessions --heartbeat heartbeat` in front of the reference server.
async fn everything_with_heartbeat(heartbeat: &str) -> App {
    let app = Spawn::default()
        .args(&["--sessions", "--heartbeat", heartbeat])
        .args(&["--", &everything_server(), "stdio"])
        .start();
    wait_ready(&app).await;
    app
}

/// What the Python client asking for progress saw of `tool` called with `arguments`: the
/// progress notifications (value, total, message) and the result's text.
fn progress_client(app: &App, tool: &str, arguments: &str) -> Value {
    let url = app.url("/mcp");
    let out = common::client_script("python_progress_client.py", &[&url, tool, arguments]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The progress notifications (value, total, message) a client asking for progress got on
/// the reference server's long-running tool (three seconds of silence, then its two steps),
/// through latchkey with `heartbeat`.
async fn long_call_progress(heartbeat: &str) -> Vec<(f64, Option<f64>, Option<String>)> {
    let app = everything_with_heartbeat(heartbeat).await;
    let long = r#"{"duration": 6, "steps": 2}"#;
    let seen = progress_client(&app, "trigger-long-running-operation", long);
    assert!(
        seen["text"][0].as_str().unwrap().contains("completed"),
        "{seen}"
    );
    serde_json::from_value(seen["progress"].clone()).unwrap()
}

/// While the upstream is silent, the client hears latchkey's heartbeats (at the last
/// value the upstream gave, so its next is still an increase); the upstream's own
/// progress passes unchanged and in order. With `--heartbeat 0s`, only the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_call_gets_heartbeats_and_the_upstreams_progress_unchanged() {
    let progress = long_call_progress("1s").await;
    let (heartbeats, theirs): (Vec<_>, Vec<_>) = progress.iter().partition(|(_, _, message)| {
        message
            .as_deref()
            .is_some_and(|m| m.starts_with("latchkey:"))
    });
    assert_eq!(
        theirs,
        [&(1.0, Some(2.0), None), &(2.0, Some(2.0), None)],
        "{progress:?}"
    );
    // Which comes first, latchkey's first beat (due at 1 s) or the upstream's (at 3 s), is
    // not asserted: under load either may. Each beat says the last value before it.
    assert!(
        matches!(heartbeats.first(), Some((_, _, Some(message)))
            if message.starts_with("latchkey: still waiting on \"mcp-server-everything\"")),
        "{progress:?}"
    );
    let mut last = 0.0;
    for (value, total, message) in &progress {
        if heartbeats.contains(&&(*value, *total, message.clone())) {
            assert_eq!(
                *value, last,
                "a heartbeat repeats the last value: {progress:?}"
            );
        } else {
            last = *value;
        }
    }

    let without = long_call_progress("0s").await;
    assert_eq!(
        without,
        [(1.0, Some(2.0), None), (2.0, Some(2.0), None)],
        "{without:?}"
    );
}

/// A tool the reference server runs only as a task (2025-11-25 `taskSupport: "required"`,
/// which rmcp's types drop, so no client of latchkey can know) answers a plain call with its
/// result, stateless and behind a prefix next to a second upstream: latchkey calls it as a
/// task and waits on `tasks/result`. Nothing of latchkey's task reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_the_upstream_runs_only_as_a_task_answers_a_plain_call() {
    let dir = tempfile::tempdir().unwrap();
    let app = apps_and_everything(&dir, &[]).await;
    let arguments = json!({"topic": "tides"});
    let params = json!({"name": "everything__simulate-research-query", "arguments": arguments});
    let answer = request(&app, "tools/call", params).await;
    let text = answer["result"]["content"][0]["text"].as_str();
    assert!(
        text.is_some_and(|text| text.starts_with("# Research Report: tides\n")),
        "{answer}"
    );
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    assert!(!answer.to_string().contains("related-task"), "{answer}");
}

/// With sessions, the task's wait gets heartbeats like any silent call, and what the task
/// asks on the way (which meaning of its topic, elicitation) reaches the client that called
/// and its answer the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_the_client_cannot_see_gets_heartbeats_and_its_questions_answered() {
    let app = everything_with_heartbeat("1s").await;
    let seen = progress_client(&app, "simulate-research-query", r#"{"topic": "tides"}"#);
    let report = seen["text"][0].as_str().unwrap_or_default();
    assert!(report.starts_with("# Research Report: tides\n"), "{seen}");
    let beats = seen["progress"].as_array().unwrap();
    assert!(
        beats.iter().any(|beat| beat[2]
            .as_str()
            .is_some_and(|m| m.starts_with("latchkey: still waiting"))),
        "{seen}"
    );

    let seen = relay_client(&app, "", "research");
    let question = "The research query \"tides\" could have multiple interpretations. Please \
                    clarify what you're looking for:";
    assert_eq!(seen["asked"], json!([["elicitation", question]]), "{seen}");
    let result = &seen["results"]["simulate-research-query"];
    assert_eq!(result["error"], false, "{seen}");
    let report = result["text"].as_str().unwrap();
    assert!(
        report.starts_with("# Research Report: tides (the sea)\n"),
        "{report}"
    );
}

/// A client that goes away while the task works: the upstream's task is cancelled (latchkey
/// logs what the upstream says of it after `tasks/cancel`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_upstreams_task() {
    let app = Spawn::default()
        .args(&["--", &everything_server(), "stdio"])
        .start();
    wait_ready(&app).await;
    let params = json!({"name": "simulate-research-query", "arguments": {"topic": "tides"}});
    let calling = tokio::spawn(
        mcp_post(&http(), &app.url("/mcp"), &rpc("tools/call", params))
            .bearer_auth(KEY)
            .send(),
    );
    // The task takes four seconds (four stages of one); once it is made, the client gives
    // up and closes its connection.
    app.wait_for_output("the upstream runs the call as its task");
    calling.abort();
    assert!(calling.await.unwrap_err().is_cancelled());
    app.wait_for_output("cancelled the upstream's task");
    let output = app.output();
    let said = output
        .lines()
        .find(|line| line.contains("cancelled the upstream's task"))
        .unwrap();
    // The upstream's word, quoted (and escaped again in the JSON log line).
    assert!(said.contains(r#"it is \"cancelled\""#), "{said}");
}

/// With sessions, each session hears of updates only to the resources it subscribed to,
/// under the URIs it subscribed with (prefixed, or the upstream's own: then unsubscribed by
/// it too); the upstream is subscribed and unsubscribed (its own URIs, as its log says),
/// and `logging/setLevel` reaches it (at `error` it says nothing of a subscription, at
/// `info` it does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_and_log_levels_reach_the_upstream_per_session() {
    let dir = tempfile::tempdir().unwrap();
    let app = apps_and_everything(&dir, &["--sessions"]).await;
    let capabilities = request(
        &app,
        "initialize",
        json!({
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}
        }),
    )
    .await;
    assert_eq!(
        capabilities["result"]["capabilities"]["resources"]["subscribe"], true,
        "{capabilities}"
    );
    let own = |n: u32| format!("demo://resource/dynamic/text/{n}");
    let outside = |n: u32| format!("everything:{}", own(n));
    let (line, script) = common::client_script_paused(
        "python_subscriptions_client.py",
        &[
            &app.url("/mcp"),
            &own(1),
            &outside(2),
            &outside(3),
            "everything__toggle-subscriber-updates",
        ],
    );
    if line.is_empty() {
        let out = script.finish();
        panic!(
            "the Python client failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Unsubscribed upstream while both sessions are open: by the unsubscribe, not the end.
    app.wait_for_output(&format!(
        "Received Unsubscribe Resource request: {}",
        own(1)
    ));
    let out = script.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client failed:\n{stderr}");
    let seen: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}\n{stderr}"));
    assert_eq!(seen["a"], json!([own(1), outside(3)]), "{seen}");
    assert_eq!(seen["b"], json!([outside(2)]), "{seen}");

    let output = app.output();
    let subscribed = |n| format!("Received Subscribe Resource request for URI: {}", own(n));
    assert!(output.contains(&subscribed(1)) && output.contains(&subscribed(2)));
    assert!(!output.contains(&subscribed(3)), "said at level error");
}

/// Listings across several upstreams come a page at a time: each page holds every
/// upstream's next page, the cursor carries each upstream's own, and following it lists
/// every tool once (a FastMCP server that pages two at a time, next to the apps server,
/// which does not page). A cursor latchkey did not give is refused with -32602.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_across_upstreams_follow_each_upstreams_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latchkey.toml");
    let paged = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/upstreams/paged_server.py"
    );
    std::fs::write(
        &config,
        format!(
            "[upstreams.apps]\ncommand = {apps:?}\n\n[upstreams.paged]\ncommand = [{python:?}, {paged:?}]\n",
            apps = apps_server(),
            python = common::upstreams::python(),
        ),
    )
    .unwrap();
    let app = Spawn::default()
        .args(&["--config", &config.display().to_string()])
        .start();
    wait_ready(&app).await;

    let mut pages = Vec::new();
    let mut params = json!({});
    loop {
        let page = request(&app, "tools/list", params).await;
        let names: Vec<String> = page["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        pages.push(names);
        match page["result"]["nextCursor"].as_str() {
            Some(cursor) => params = json!({"cursor": cursor}),
            None => break,
        }
        assert!(pages.len() < 10, "{pages:?}");
    }
    let mut first = pages[0].clone();
    first.sort();
    assert_eq!(
        first,
        [
            "apps__echo",
            "apps__show-clock",
            "apps__tick",
            "paged__page_1",
            "paged__page_2"
        ],
        "{pages:?}"
    );
    assert_eq!(
        pages[1..],
        [
            vec!["paged__page_3".to_owned(), "paged__page_4".to_owned()],
            vec!["paged__page_5".to_owned()]
        ],
        "{pages:?}"
    );

    let refused = request(&app, "tools/list", json!({"cursor": "eyJvIjogMn0="})).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid cursor"),
        "{refused}"
    );
}

/// A 2026-07-28 client (rmcp, no `initialize`) opens `subscriptions/listen` for a resource
/// and one of no upstream's: the acknowledgment names only the first; the upstream
/// is subscribed; its updates reach the stream under the prefixed URI; cancelling the
/// stream unsubscribes upstream; a second stream open at shutdown gets its final result
/// (not a cut connection, without sessions). The same with and without `--sessions`.
async fn a_2026_07_28_client_listens(sessions: bool) {
    let dir = tempfile::tempdir().unwrap();
    let args: &[&str] = if sessions { &["--sessions"] } else { &[] };
    let mut app = apps_and_everything(&dir, args).await;
    // What each kind of client is offered: a listen stream takes updates in either mode,
    // a session's subscription only with sessions.
    let client = common::mcp_client_2026(&app.url("/mcp"), KEY).await;
    let discovered = client.peer_info().expect("discovered").capabilities.clone();
    assert_eq!(discovered.resources.and_then(|r| r.subscribe), Some(true));
    let initialized = request(
        &app,
        "initialize",
        json!({
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}
        }),
    )
    .await;
    let offered = &initialized["result"]["capabilities"]["resources"]["subscribe"];
    assert_eq!(offered.as_bool(), sessions.then_some(true), "{initialized}");
    let own = "demo://resource/dynamic/text/1";
    let mine = format!("everything:{own}");
    let filter = SubscriptionFilter::builder()
        .resource_subscriptions([mine.as_str(), "nowhere:demo://x"])
        .build();
    let mut listening = client.peer().listen(filter.clone()).await.expect("listen");
    assert_eq!(
        listening.acknowledged().resource_subscriptions,
        Some(vec![mine.clone()])
    );
    app.wait_for_output(&format!(
        "Received Subscribe Resource request for URI: {own}"
    ));
    let toggle = || CallToolRequestParams::new("everything__toggle-subscriber-updates");
    client.call_tool(toggle()).await.expect("updates on");
    let update = tokio::time::timeout(Duration::from_secs(30), listening.next())
        .await
        .expect("an update within 30 s")
        .expect("the stream carries it");
    match update {
        Some(ServerNotification::ResourceUpdatedNotification(update)) => {
            assert_eq!(update.params.uri, mine)
        }
        other => panic!("not a resource update: {other:?}"),
    }
    listening.cancel().await.unwrap();
    app.wait_for_output(&format!("Received Unsubscribe Resource request: {own}"));
    client.call_tool(toggle()).await.expect("updates off");

    let mut open = client.peer().listen(filter).await.expect("listen again");
    app.signal(nix::sys::signal::Signal::SIGTERM);
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        while open.next().await.expect("a clean end").is_some() {}
        open.end().cloned()
    })
    .await
    .expect("the stream ends at shutdown");
    // With sessions too: rmcp's sessions end only after the final result is sent (the GET
    // stream's end that follows is, for rmcp's client, a stream to open again later).
    assert!(matches!(end, Some(SubscriptionEnd::Graceful(_))), "{end:?}");
    assert!(app.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_client_listens_without_sessions() {
    a_2026_07_28_client_listens(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_client_listens_with_sessions() {
    a_2026_07_28_client_listens(true).await;
}

/// A listen stream outlives its upstream's crash: the restarted upstream is subscribed
/// again to what the stream holds (its log says so a second time), and its updates reach
/// the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_upstream_is_subscribed_again_for_a_listen_stream() {
    let dir = tempfile::tempdir().unwrap();
    let app = apps_and_everything(&dir, &[]).await;
    let client = common::mcp_client_2026(&app.url("/mcp"), KEY).await;
    let own = "demo://resource/dynamic/text/2";
    let filter = SubscriptionFilter::builder()
        .resource_subscription(format!("everything:{own}"))
        .build();
    let mut listening = client.peer().listen(filter).await.expect("listen");
    let subscribed = format!("Received Subscribe Resource request for URI: {own}");
    app.wait_for_output(&subscribed);

    let everything = common::upstreams::child_pids(app.pid())
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| line.contains("server-everything"))
        })
        .expect("the reference server runs as latchkey's child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(everything),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    common::wait_for("the restarted upstream subscribed again", || {
        app.output().matches(&subscribed).count() == 2
    });

    let toggle = || CallToolRequestParams::new("everything__toggle-subscriber-updates");
    client.call_tool(toggle()).await.expect("updates on");
    let update = tokio::time::timeout(Duration::from_secs(30), listening.next())
        .await
        .expect("an update within 30 s")
        .expect("the stream carries it");
    assert!(
        matches!(&update, Some(ServerNotification::ResourceUpdatedNotification(u))
            if u.params.uri == format!("everything:{own}")),
        "{update:?}"
    );
    client.call_tool(toggle()).await.expect("updates off");
}
