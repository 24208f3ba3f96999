//! The activity console and `latchkey watch`, through the real binary: a browser signs in
//! and sees an SDK client's calls arrive; sign-in is bounded like the consent page; sessions
//! end with their key; nothing secret reaches a page, the feeds or the log; and a terminal
//! follows the same feed.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use common::{App, KEY, OTHER_KEY, Spawn, call_hello, http, mcp_post};
use nix::sys::signal::Signal;
use reqwest::StatusCode;
use reqwest::header;

/// A browser's part in these tests: it keeps the session cookie it is given, sends it back,
/// and does not follow redirects (the test reads each answer).
struct Browser {
    client: reqwest::Client,
    cookie: std::sync::Mutex<Option<String>>,
}

impl Browser {
    fn new() -> Self {
        Browser {
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: Default::default(),
        }
    }

    fn keep(&self, response: &reqwest::Response) {
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            let cleared = pair.ends_with('=');
            *self.cookie.lock().unwrap() = (!cleared).then_some(pair);
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &*self.cookie.lock().unwrap() {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        }
    }

    async fn get(&self, url: String) -> reqwest::Response {
        let response = self.with_cookie(self.client.get(url)).send().await.unwrap();
        self.keep(&response);
        response
    }

    async fn post(&self, url: String, form: &[(&str, &str)]) -> reqwest::Response {
        let request = self.with_cookie(self.client.post(url)).form(form);
        let response = request.send().await.unwrap();
        self.keep(&response);
        response
    }
}

async fn sign_in(browser: &Browser, app: &App, secret: &str) -> reqwest::Response {
    browser
        .post(app.url("/console/sign-in"), &[("secret", secret)])
        .await
}

async fn text(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// A `tools/call` of `tool` with the key in the Authorization header.
async fn call(app: &App, tool: &str) {
    let body = common::rpc(
        "tools/call",
        serde_json::json!({"name": tool, "arguments": {"name": "Ada"}}),
    );
    let response = mcp_post(&http(), &app.url("/mcp"), &body)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_and_sees_an_sdk_clients_calls_arrive() {
    let app = App::start(Spawn::default());
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::task::spawn_blocking({
        let (console, mcp, shots) = (app.url("/console"), app.url("/mcp"), shots.clone());
        move || {
            common::client_script(
                "console_browser.py",
                &[&console, &mcp, shots.to_str().unwrap()],
            )
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", app.output());
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<Vec<String>> = serde_json::from_value(seen["rows"].clone()).unwrap();
    // Newest first: the unknown tool's error, then hello's success.
    let hello = rows.iter().find(|r| r[3] == "hello").expect("a hello row");
    assert_eq!(
        (hello[2].as_str(), hello[4].as_str()),
        ("tools/call", "ok"),
        "{rows:?}"
    );
    let unknown = rows
        .iter()
        .find(|r| r[3] == "no-such-tool")
        .expect("an error row");
    assert!(unknown[4].starts_with("error -"), "{rows:?}");
    assert_eq!(seen["not_reloaded"], true, "rows came without a reload");
    let hostile = rows
        .iter()
        .find(|r| r[3].starts_with("<img"))
        .expect("the markup's row");
    assert_eq!(
        hostile[3], "<img src=x onerror=\"document.title=1\">",
        "shown as text"
    );
    assert_eq!(seen["markup_ran"], false, "a tool's name is never markup");
    // The session cookie is what a browser may not leak.
    let cookie = seen["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "latchkey_console")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert_eq!(cookie["path"], "/console");
    assert!(!seen["html"].as_str().unwrap().contains(KEY));
    assert!(seen["bars"].as_u64().unwrap() >= 1, "the chart has bars");
    let tools: Vec<String> = serde_json::from_value(seen["tools"].clone()).unwrap();
    assert!(tools.contains(&"hello".to_owned()), "{tools:?}");
    assert!(
        seen["clients"].as_u64().unwrap() >= 1,
        "the SDK client is listed"
    );
    assert!(
        seen["refusals"].as_u64().unwrap() >= 1,
        "the wrong key is listed"
    );
    for shot in [
        "console-sign-in.png",
        "console-calls.png",
        "console-tools.png",
        "console-clients.png",
        "console-refusals.png",
    ] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{shot}");
        assert!(
            png.len() > 5_000,
            "{shot} has text in it: {} bytes",
            png.len()
        );
    }
}

#[tokio::test]
async fn the_clients_view_says_which_labelled_key_each_client_uses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let digest = common::keygen_digest(OTHER_KEY);
    std::fs::write(&file, format!("{KEY} laptop <b>\n{digest}\tphone\n")).unwrap();
    let app = App::start(
        Spawn::default()
            .no_default_key()
            .args(&["--api-key-file", file.to_str().unwrap()]),
    );
    let client = http();
    for (agent, url, key) in [
        ("ChatGPT-User/1.0", app.url("/mcp"), Some(KEY)),
        (
            "Claude-User",
            app.url(&format!("/mcp?api_key={OTHER_KEY}")),
            None,
        ),
    ] {
        let mut request = mcp_post(&client, &url, &call_hello("Ada")).header("user-agent", agent);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
    }
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &app, KEY).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = text(browser.get(app.url("/console/clients")).await).await;
    let card = |agent: &str| {
        let start = page.find(&format!("<h3>{agent}")).expect(agent);
        page[start..].split("</section>").next().unwrap().to_owned()
    };
    let chatgpt = card("ChatGPT-User/1.0");
    assert!(
        chatgpt.contains("authenticated by bearer with the key laptop &lt;b&gt;"),
        "{chatgpt}"
    );
    let claude = card("Claude-User");
    assert!(
        claude.contains("authenticated by query with the key phone"),
        "{claude}"
    );
    assert!(!page.contains(KEY) && !page.contains(OTHER_KEY), "{page}");
}

#[tokio::test]
async fn signing_in_is_counted_and_a_session_ends_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let app = App::start(Spawn::default().no_default_key().args(&[
        "--api-key-file",
        file.to_str().unwrap(),
        "--max-key-failures",
        "3",
    ]));
    let browser = Browser::new();
    let (status, page) = text(browser.get(app.url("/console")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("type=\"password\""), "{page}");
    let (status, page) = text(sign_in(&browser, &app, OTHER_KEY).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not an API key"), "{page}");
    assert!(!page.contains(OTHER_KEY), "a wrong secret is not repeated");
    // Not signed in: no feed.
    let events = browser.get(app.url("/console/events")).await;
    assert_eq!(events.status(), StatusCode::UNAUTHORIZED);

    let signed_in = sign_in(&browser, &app, KEY).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let set_cookie = signed_in.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict")
            && set_cookie.contains("Path=/console")
            && set_cookie.contains("Max-Age=43200"),
        "{set_cookie}"
    );
    let (status, page) = text(browser.get(app.url("/console")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Sign out") && page.contains("data-events"),
        "{page}"
    );
    let csrf = page
        .split_once("name=\"csrf\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(csrf, _)| csrf.to_owned())
        .expect("the sign-out form's token");

    // A forged sign-out (no token) changes nothing.
    let forged = browser
        .post(app.url("/console/sign-out"), &[("csrf", "forged")])
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // The key leaves the key file: the session ends with it, and so does its open feed
    // (at its next check, within 15 s).
    let mut open_feed = browser.get(app.url("/console/events")).await;
    assert_eq!(open_feed.status(), StatusCode::OK);
    std::fs::write(&file, format!("{OTHER_KEY}\n")).unwrap();
    app.signal(Signal::SIGHUP);
    app.wait_for_output("SIGHUP: reloaded 1 API key(s)");
    let ended = tokio::time::timeout(common::PATIENCE, async {
        while open_feed.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the feed outlived its session");
    let (_, page) = text(browser.get(app.url("/console")).await).await;
    assert!(page.contains("type=\"password\""), "signed out: {page}");
    let events = browser.get(app.url("/console/events")).await;
    assert_eq!(events.status(), StatusCode::UNAUTHORIZED);

    // Signed in again with the new key, and out with the form's token.
    assert_eq!(
        sign_in(&browser, &app, OTHER_KEY).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = text(browser.get(app.url("/console")).await).await;
    let csrf_now = page
        .split_once("name=\"csrf\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(csrf, _)| csrf.to_owned())
        .unwrap();
    assert_ne!(csrf, csrf_now, "each session has its own token");
    let out = browser
        .post(app.url("/console/sign-out"), &[("csrf", csrf_now.as_str())])
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (_, page) = text(browser.get(app.url("/console")).await).await;
    assert!(page.contains("type=\"password\""), "signed out: {page}");

    // Wrong secrets count toward the same lockout as wrong keys: after the third, even the
    // right one is refused.
    let stranger = Browser::new();
    for _ in 0..3 {
        let refused = sign_in(&stranger, &app, "not-the-key-not-the-key-not-the-key").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let (status, page) = text(sign_in(&stranger, &app, OTHER_KEY).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("try again in"), "{page}");
}

#[tokio::test]
async fn what_a_client_chose_is_shown_as_text_and_no_secret_is_shown_at_all() {
    let app = App::start(Spawn::default().env("RUST_LOG", "trace"));
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &app, KEY).await.status(),
        StatusCode::SEE_OTHER
    );
    let mut events = browser.get(app.url("/console/events?after=0")).await;
    assert_eq!(events.status(), StatusCode::OK);
    let hostile = "<img src=x onerror=alert(1)>\"'\u{202E}";
    call(&app, hostile).await;
    // The key in each form a client may send it: header (above), query, path.
    let body = call_hello("Query");
    let by_query = mcp_post(&http(), &app.url(&format!("/mcp?api_key={KEY}")), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), StatusCode::OK);
    let by_path = mcp_post(&http(), &app.url(&format!("/mcp/{KEY}")), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(by_path.status(), StatusCode::OK);

    let mut stream = String::new();
    while stream.matches("\"method\":\"tools/call\"").count() < 3 {
        let chunk = tokio::time::timeout(common::PATIENCE, events.chunk())
            .await
            .expect("the feed sends each call")
            .unwrap()
            .expect("the feed stays open");
        stream.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (_, page) = text(browser.get(app.url("/console")).await).await;
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;[U+202E]"),
        "{page}"
    );
    let lines = kept_calls(&app, "recent=10&follow=false", KEY).await;
    assert_eq!(lines.lines().count(), 3, "{lines}");
    // Refused, with a hostile User-Agent and a wrong key that holds the right one, in the
    // query and in the path: the clients and refusals views show neither key.
    let near = format!("{KEY}x");
    for url in [format!("/mcp?api_key={near}"), format!("/mcp/{near}")] {
        let refused = mcp_post(&http(), &app.url(&url), &body)
            .header("user-agent", "<script>agent()</script>")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let mut views = String::new();
    for view in ["clients", "upstreams", "changes", "refusals", "tools"] {
        let (status, page) = text(browser.get(app.url(&format!("/console/{view}"))).await).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        views.push_str(&page);
    }
    assert!(
        views.contains("&lt;script&gt;agent()&lt;/script&gt;"),
        "{views}"
    );
    assert!(!views.contains("<script>agent"), "{views}");
    let log = app.output();
    for (what, seen) in [
        ("page", &page),
        ("views", &views),
        ("events", &stream),
        ("feed", &lines),
        ("log", &log),
    ] {
        assert!(!seen.contains(KEY), "the key is in the {what}:\n{seen}");
        assert!(
            !seen.contains("Ada"),
            "an argument is in the {what}:\n{seen}"
        );
    }
    // The access log says what was called, never with what.
    assert!(
        log.lines()
            .any(|l| l.contains(r#""mcp_method":"tools/call""#) && l.contains(r#""tool":"hello""#)),
        "{log}"
    );
}

#[tokio::test]
async fn watch_follows_the_calls_in_a_terminal() {
    let app = App::start(Spawn::default());
    call(&app, "hello").await;
    let listen = app.tcp[0].trim_start_matches("http://").to_owned();
    let once = common::command(app.dir.path())
        .args(["watch", "--once", "--api-key", KEY, "--listen", &listen])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&once.stdout);
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(printed.contains("tools/call hello  ok"), "{printed}");

    let mut follower = common::command(app.dir.path())
        .args([
            "watch",
            "--json",
            "--recent",
            "0",
            "--tool",
            "hel",
            "--api-key",
            KEY,
        ])
        .args(["--listen", &listen])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    // The follower is connected once its request is in the log; then each call reaches it.
    app.wait_for_output(r#""path":"/activity","query":"recent=0""#);
    call(&app, "other").await;
    call(&app, "hello").await;
    let line = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap())
        .await
        .unwrap();
    follower.kill().unwrap();
    follower.wait().unwrap();
    let call: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        call["tool"], "hello",
        "the filter let only hello through: {line}"
    );
    assert_eq!(call["outcome"], "ok");

    let refused = common::command(app.dir.path())
        .args([
            "watch",
            "--once",
            "--api-key",
            OTHER_KEY,
            "--listen",
            &listen,
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("does not accept the key"), "{said}");
    assert!(!said.contains(OTHER_KEY), "{said}");
}

#[tokio::test]
async fn no_console_serves_neither_the_console_nor_the_feed() {
    let app = App::start(Spawn::default().args(&["--no-console"]));
    for path in ["/console", "/activity"] {
        let response = http()
            .get(app.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The access log still says what was called.
    call(&app, "hello").await;
    app.wait_for_output(r#""mcp_method":"tools/call","tool":"hello""#);
}

/// `{base}/activity?{query}` read with `credential`.
async fn feed(app: &App, query: &str, credential: &str) -> reqwest::Response {
    http()
        .get(app.url(&format!("/activity?{query}")))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
}

/// What `{base}/activity?{query}` (with `follow=false`) sends: one call a line.
async fn kept_calls(app: &App, query: &str, credential: &str) -> String {
    let response = feed(app, query, credential).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// `tools/call` of `tool` `n` times.
async fn calls(app: &App, tool: &str, n: usize) {
    for _ in 0..n {
        call(app, tool).await;
    }
}

#[tokio::test]
async fn the_history_survives_a_restart_and_the_tools_view_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let spawn = Spawn::default().args(&["--state-dir", state.to_str().unwrap()]);
    let mut app = App::start(spawn.clone());
    calls(&app, "hello", 3).await;
    calls(&app, "nope", 1).await;
    app.signal(Signal::SIGTERM);
    assert!(app.wait().success());

    let app = App::start(spawn.clone());
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &app, KEY).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = text(browser.get(app.url("/console")).await).await;
    assert_eq!(
        page.matches("data-name=\"hello\"").count(),
        3,
        "kept across the restart: {page}"
    );
    let (status, tools) = text(browser.get(app.url("/console/tools")).await).await;
    assert_eq!(status, StatusCode::OK);
    let hello = tools
        .split("<h3>hello</h3>")
        .nth(1)
        .expect("hello's section");
    let hello = hello.split("</section>").next().unwrap();
    assert!(
        hello.contains("<td>last hour</td><td class=\"n\">3</td><td class=\"n\">0.0%</td>"),
        "{hello}"
    );
    assert!(hello.contains("<svg class=\"chart\""), "{hello}");
    let nope = tools.split("<h3>nope</h3>").nth(1).expect("nope's section");
    assert!(
        nope.contains("<td class=\"n\">1</td><td class=\"n\">100.0%</td>"),
        "{nope}"
    );
    // Ids go on from the last run's.
    call(&app, "hello").await;
    let lines = kept_calls(&app, "recent=1&follow=false", KEY).await;
    let last: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert!(last["id"].as_u64().unwrap() > 4, "{lines}");
    let mode = std::fs::metadata(state.join("activity.sqlite3")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_history_that_cannot_be_opened_stops_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let spawn = Spawn::default().args(&["--state-dir", not_a_dir.to_str().unwrap()]);
    let (status, output) = App::try_start(spawn).err().expect("the start fails");
    assert!(!status.success());
    let said: Vec<_> = output.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(said.len(), 1, "{output}");
    assert!(
        said[0].contains("history database") && said[0].contains("--state-dir"),
        "{output}"
    );
}

/// An OAuth grant for `KEY` as latchkey keeps it (`oauth::store`): the token's SHA-256 and
/// the id derived from the key's digest, written before the start.
fn grant_for_key(state: &std::path::Path, token: &str) {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(KEY.as_bytes());
    let mut derive = Sha256::new();
    derive.update(b"latchkey oauth grant\0");
    derive.update(digest);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let grant = serde_json::json!({
        "id": "g_test", "client_id": "lkcl_test", "client_name": "an AI client",
        "secret_id": hex::encode(derive.finalize()), "scope": "mcp", "resource": "",
        "created_at": now, "refreshed_at": now,
        "access_hash": hex::encode(Sha256::digest(token.as_bytes())), "access_expires": now + 3600,
        "refresh_hash": "00".repeat(32), "refresh_expires": now + 3600,
    });
    std::fs::create_dir_all(state).unwrap();
    let store = serde_json::json!({"version": 1, "clients": [], "grants": [grant]});
    std::fs::write(state.join("oauth.json"), store.to_string()).unwrap();
}

#[tokio::test]
async fn the_feed_takes_keys_not_an_ai_clients_token_and_forms_come_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    const TOKEN: &str = "lka_test-token-0123456789abcdefghijklmnopqrstuv";
    grant_for_key(&state, TOKEN);
    let port = common::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let app = App::start(Spawn::default().args(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--oauth",
        "--public-url",
        &public,
        "--state-dir",
        state.to_str().unwrap(),
    ]));
    // The token opens /mcp, but not what every other client called.
    let body = call_hello("Token");
    let by_token = mcp_post(&http(), &app.url("/mcp"), &body)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), StatusCode::OK);
    let by_token = feed(&app, "follow=false", TOKEN).await;
    assert_eq!(by_token.status(), StatusCode::FORBIDDEN);
    let by_key = feed(&app, "follow=false", KEY).await;
    assert_eq!(by_key.status(), StatusCode::OK);

    // A page of ChatGPT's (an origin the guard lets through) cannot sign anyone in or out.
    let browser = Browser::new();
    let foreign = browser
        .with_cookie(browser.client.post(app.url("/console/sign-in")))
        .header(header::ORIGIN, "https://chatgpt.com")
        .form(&[("secret", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let own = browser
        .client
        .post(app.url("/console/sign-in"))
        .header(header::ORIGIN, &public)
        .form(&[("secret", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::SEE_OTHER);

    // A name of any length is kept cut.
    let long = "t".repeat(5000);
    call(&app, &long).await;
    let lines = kept_calls(&app, "recent=1&follow=false", KEY).await;
    let last: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    let kept = last["tool"].as_str().unwrap();
    assert!(kept.len() < 200 && kept.ends_with('…'), "{kept}");
}

#[tokio::test]
async fn with_trace_tool_io_a_calls_io_is_shown_redacted_and_never_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut app = App::start(Spawn::default().args(&[
        "--trace-tool-io",
        "--state-dir",
        state.to_str().unwrap(),
    ]));
    let body = common::rpc(
        "tools/call",
        serde_json::json!({"name": "hello", "arguments": {"name": "Ada", "password": "hunter2"}}),
    );
    let response = mcp_post(&http(), &app.url("/mcp"), &body)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let lines = kept_calls(&app, "recent=1&follow=false", KEY).await;
    let call: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    let arguments = call["arguments"].as_str().unwrap();
    assert!(
        arguments.contains("Ada") && arguments.contains("REDACTED"),
        "{arguments}"
    );
    assert!(!arguments.contains("hunter2"), "{arguments}");
    assert!(
        call["result"].as_str().unwrap().contains("Hello Ada!"),
        "{call}"
    );
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &app, KEY).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = text(browser.get(app.url("/console")).await).await;
    assert!(
        page.contains("<details><summary>show</summary><pre>arguments: "),
        "{page}"
    );
    assert!(!page.contains("hunter2"), "{page}");
    // The history keeps names and numbers only: stopped (and so flushed), it has the call
    // but none of what went in or came out.
    app.signal(Signal::SIGTERM);
    assert!(app.wait().success());
    let mut kept = Vec::new();
    for file in std::fs::read_dir(&state).unwrap() {
        let path = file.unwrap().path();
        if path.to_string_lossy().contains("activity.sqlite3") {
            kept.extend(std::fs::read(&path).unwrap());
        }
    }
    let kept = String::from_utf8_lossy(&kept);
    assert!(kept.contains("hello"), "the call is kept");
    for absent in ["Ada", "hunter2", KEY] {
        assert!(!kept.contains(absent), "{absent} is in the history");
    }
}

/// The CSRF token of the first form on `page`.
fn csrf_of(page: &str) -> String {
    page.split_once("name=\"csrf\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(csrf, _)| csrf.to_owned())
        .expect("a form's token")
}

#[tokio::test]
async fn refusals_are_shown_without_their_keys_and_a_locked_address_is_unlocked() {
    let app = App::start(Spawn::default().args(&["--max-key-failures", "3"]));
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &app, KEY).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = text(browser.get(app.url("/console/refusals")).await).await;
    assert!(page.contains("No address is locked out"), "{page}");

    // Three wrong keys, one of them in the path: the address is locked out, even for the
    // right key.
    let client = http();
    let mcp = |url: String, key: &str| {
        mcp_post(&client, &url, &call_hello("Ada")).header("authorization", format!("Bearer {key}"))
    };
    let wrong = "wrong-key-wrong-key-wrong-key-0123456789";
    for _ in 0..2 {
        let refused = mcp(app.url("/mcp"), wrong).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let in_path = mcp_post(
        &client,
        &app.url(&format!("/mcp/{wrong}")),
        &call_hello("Ada"),
    );
    assert_eq!(
        in_path.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let locked = mcp(app.url("/mcp"), KEY).send().await.unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);

    // A refused key is presented, not accepted: the client has not authenticated.
    let (_, clients) = text(browser.get(app.url("/console/clients")).await).await;
    assert!(clients.contains("never authenticated") && !clients.contains("authenticated by"));

    // The page lists the address and the refusals, counted, with why; no key at all.
    let (status, page) = text(browser.get(app.url("/console/refusals")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<td>127.0.0.1</td>"), "{page}");
    assert!(page.contains("too_many_failures"), "{page}");
    let bearer_row = page
        .split("<tr>")
        .find(|row| row.contains("POST /mcp<") && row.contains(">401<"))
        .expect("the wrong keys' row");
    // The key in the path was taken out of it, as from the header: one kind, three times.
    assert!(
        bearer_row.contains("<td class=\"n\">3</td>"),
        "counted: {bearer_row}"
    );
    assert!(
        !page.contains(wrong) && !page.contains(KEY),
        "no key on the page"
    );

    // A forged unlock changes nothing; the session's own unlocks.
    let forged = browser
        .post(
            app.url("/console/unlock"),
            &[("csrf", "forged"), ("who", "127.0.0.1")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let still = mcp(app.url("/mcp"), KEY).send().await.unwrap();
    assert_eq!(still.status(), StatusCode::TOO_MANY_REQUESTS);
    let csrf = csrf_of(&page);
    let unlocked = browser
        .post(
            app.url("/console/unlock"),
            &[("csrf", csrf.as_str()), ("who", "127.0.0.1")],
        )
        .await;
    assert_eq!(unlocked.status(), StatusCode::SEE_OTHER);
    let served = mcp(app.url("/mcp"), KEY).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let (_, page) = text(browser.get(app.url("/console/refusals")).await).await;
    assert!(page.contains("No address is locked out"), "{page}");
    assert!(!app.output().contains(wrong), "no key in the log");
}

#[tokio::test]
async fn the_upstreams_view_shows_state_tools_and_the_last_error_after_a_crash() {
    use common::upstreams::{call as call_upstream, front_python, wait_ready};
    let app = front_python(&[], &[]).await;
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &app, KEY).await.status(),
        StatusCode::SEE_OTHER
    );
    let (status, page) = text(browser.get(app.url("/console/upstreams")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<span class=\"state ready\">ready</span>"),
        "{page}"
    );
    assert!(page.contains("<td>echo</td>"), "its tools: {page}");
    assert!(page.contains("connected again 0 time(s)") && page.contains("no error since start"));

    // It crashes mid-call and is connected again: the view says so, with why.
    let answer = call_upstream(&app, "crash", serde_json::json!({})).await;
    assert!(
        answer["error"].is_object() || answer["result"]["isError"] == true,
        "{answer}"
    );
    common::eventually("the upstream to be connected again", || async {
        let (_, page) = text(browser.get(app.url("/console/upstreams")).await).await;
        page.contains("connected again 1 time(s)")
    })
    .await;
    wait_ready(&app).await;
    let (_, page) = text(browser.get(app.url("/console/upstreams")).await).await;
    assert!(
        page.contains("last error, ") && page.contains("class=\"error\""),
        "{page}"
    );
    assert!(!page.contains(KEY));
}

/// The upstreams and tool-changes views in a real browser, as docs/ shows them.
async fn screenshots_of_the_upstreams_and_changes_views(app: &App) {
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::task::spawn_blocking({
        let (console, shots) = (app.url("/console"), shots.clone());
        move || {
            common::client_script(
                "console_shots.py",
                &[
                    &console,
                    shots.to_str().unwrap(),
                    "console-upstreams=/upstreams=section.upstream td",
                    "console-changes=/changes=section.change pre",
                ],
            )
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", app.output());
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for shot in ["console-upstreams", "console-changes"] {
        assert!(found[shot].as_u64().unwrap() >= 1, "{found}");
        let png = std::fs::read(shots.join(format!("{shot}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{shot}");
        assert!(
            png.len() > 5_000,
            "{shot} has text in it: {} bytes",
            png.len()
        );
    }
}

/// The names `tools/list` answers with, through latchkey.
async fn listed_tools(app: &App) -> Vec<String> {
    let body = common::rpc("tools/list", serde_json::json!({}));
    let response = mcp_post(&http(), &app.url("/mcp"), &body)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = response.json().await.unwrap();
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The value of the hidden field `name` on `page`.
fn field(page: &str, name: &str) -> String {
    page.split_once(&format!("name=\"{name}\" value=\""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value.to_owned())
        .unwrap_or_else(|| panic!("no {name} on {page}"))
}

#[tokio::test]
async fn pinned_tools_withhold_a_new_tool_of_a_real_upstream_until_it_is_approved() {
    use common::upstreams::{call as call_upstream, front_python, text as answer_text};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let app = front_python(
        &["--pin-tools", "--state-dir", state.to_str().unwrap()],
        &[],
    )
    .await;
    let before = listed_tools(&app).await;
    assert!(
        before.contains(&"echo".to_owned()),
        "first use approves all: {before:?}"
    );
    // The upstream adds a tool and says its list changed.
    let grew = call_upstream(&app, "grow", serde_json::json!({})).await;
    assert_eq!(answer_text(&grew), "grew");
    assert!(
        !listed_tools(&app).await.contains(&"grown".to_owned()),
        "withheld"
    );
    let refused = call_upstream(&app, "grown", serde_json::json!({})).await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("awaits approval"), "{refused}");

    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &app, KEY).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = text(browser.get(app.url("/console/changes")).await).await;
    assert!(page.contains("grown added"), "{page}");
    screenshots_of_the_upstreams_and_changes_views(&app).await;
    assert!(
        page.contains("+  &quot;description&quot;: &quot;Added by grow.&quot;"),
        "{page}"
    );
    let form = [
        ("csrf", field(&page, "csrf")),
        ("upstream", field(&page, "upstream")),
        ("tool", field(&page, "tool")),
        ("digest", field(&page, "digest")),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut forged = form.clone();
    forged[3].1 = "0000";
    let conflict = browser.post(app.url("/console/approve"), &forged).await;
    assert_eq!(
        conflict.status(),
        StatusCode::CONFLICT,
        "not the version shown"
    );
    let approved = browser.post(app.url("/console/approve"), &form).await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    assert!(listed_tools(&app).await.contains(&"grown".to_owned()));
    assert_eq!(
        answer_text(&call_upstream(&app, "grown", serde_json::json!({})).await),
        "grown"
    );
    let pins = state.join("pinned-tools.json");
    let mode = std::fs::metadata(&pins).unwrap_or_else(|e| panic!("{}: {e}", pins.display()));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}
