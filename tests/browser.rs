//! A real browser (headless Chromium, Debian's package, installed by `.ci/run`) runs a page
//! that calls latchkey with `fetch`, as a browser-based MCP client does: the Authorization
//! header makes the browser send a CORS preflight first. A local page reaches a loopback
//! latchkey; a foreign page (a name that resolves to this machine, as in DNS rebinding)
//! does not, whether it calls latchkey by address or by its own name.

mod common;

use axum::response::Html;
use common::{App, KEY, Spawn};

/// A page that POSTs `tools/call hello` to `target` with the key as a Bearer token and
/// writes what happened into the DOM.
fn page(target: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="result">pending</pre><script>
(async () => {{
  let out;
  try {{
    const response = await fetch("{target}", {{
      method: "POST",
      headers: {{
        "authorization": "Bearer {KEY}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-06-18",
      }},
      body: JSON.stringify({{jsonrpc: "2.0", id: 1, method: "tools/call",
        params: {{name: "hello", arguments: {{name: "Browser"}}}}}}),
    }});
    out = "status " + response.status + " " + await response.text();
  }} catch (e) {{
    out = "failed " + e;
  }}
  document.getElementById("result").textContent = out;
}})();
</script></body></html>"#
    )
}

/// Serves `html` at `/` on a new loopback port; returns the port.
async fn serve_page(html: String) -> u16 {
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { Html(html) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// What the page at `url` wrote once its script ran, in headless Chromium, with
/// `evil.example` resolving to this machine.
async fn run_page(url: String) -> String {
    tokio::task::spawn_blocking(move || {
        let out = common::chromium(
            &[
                "--host-resolver-rules=MAP evil.example 127.0.0.1",
                "--virtual-time-budget=20000",
                "--dump-dom",
            ],
            &url,
        );
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let result = dom
            .split_once(r#"<pre id="result">"#)
            .and_then(|(_, rest)| rest.split_once("</pre>"))
            .map(|(result, _)| result.to_owned());
        result.unwrap_or_else(|| {
            panic!(
                "no result in the page ({}):\n{dom}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_page_calls_a_tool_and_a_foreign_page_is_refused() {
    let app = App::start(Spawn::default());
    let port = app.tcp[0].rsplit(':').next().unwrap().to_owned();
    let by_address = format!("http://127.0.0.1:{port}/mcp");

    // A page on another loopback port (the MCP Inspector, a dev server): preflight, then POST.
    let local = serve_page(page(&by_address)).await;
    let result = run_page(format!("http://localhost:{local}/")).await;
    assert!(
        result.starts_with("status 200") && result.contains("Hello Browser!"),
        "{result}\n{}",
        app.output()
    );

    // A foreign page, by address and by its own name (DNS rebinding): the preflight gets 403,
    // so the browser never sends the request.
    for target in [
        by_address.clone(),
        format!("http://evil.example:{port}/mcp"),
    ] {
        let foreign = serve_page(page(&target)).await;
        let result = run_page(format!("http://evil.example:{foreign}/")).await;
        assert!(result.starts_with("failed"), "{target}: {result}");
    }
    let log = app.output();
    let preflights: Vec<_> = log
        .lines()
        .filter(|l| l.contains(r#""method":"OPTIONS""#))
        .collect();
    assert!(
        preflights.iter().any(|l| l.contains(r#""status":204"#)),
        "{log}"
    );
    assert_eq!(
        preflights
            .iter()
            .filter(|l| l.contains(r#""status":403"#))
            .count(),
        2,
        "{log}"
    );
    // Only the local page's request got through to a tool.
    let posts = log
        .lines()
        .filter(|l| l.contains(r#""method":"POST""#))
        .count();
    assert_eq!(posts, 1, "{log}");
}
