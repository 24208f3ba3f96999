//! Clients: plain HTTP with the headers MCP needs, and real rmcp clients over TCP and the
//! Unix socket, each way of sending the key.

use std::path::Path;

use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::{App, KEY};

/// A plain HTTP client (no proxy from the environment).
/// Runs `tests/clients/<script>` with the test venv's Python (`.ci/run` makes it) and `args`:
/// the key in `LATCHKEY_TEST_KEY` (never on a command line), no proxy. Blocks.
pub fn client_script(script: &str, args: &[&str]) -> std::process::Output {
    script_command(script, args).output().unwrap()
}

/// [`client_script`] for a script that prints its first line, then waits until its
/// standard input ends: the line, and a handle that ends the script and returns its output.
pub fn client_script_paused(script: &str, args: &[&str]) -> (String, PausedScript) {
    use std::io::BufRead as _;
    let mut child = script_command(script, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read on a thread of its own: a full stderr pipe would stop the script before its line.
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut text);
        text
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    (line, PausedScript { child, stderr })
}

/// A client script waiting for its standard input to end.
pub struct PausedScript {
    child: std::process::Child,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl PausedScript {
    /// Ends its standard input and waits for it to exit.
    pub fn finish(mut self) -> std::process::Output {
        drop(self.child.stdin.take());
        let mut output = self.child.wait_with_output().unwrap();
        output.stderr = self.stderr.join().unwrap();
        output
    }
}

fn script_command(script: &str, args: &[&str]) -> std::process::Command {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut command = std::process::Command::new(super::upstreams::python());
    command
        .arg(path)
        .args(args)
        .env("LATCHKEY_TEST_KEY", KEY)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY");
    command
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The body of an MCP JSON-RPC request.
pub fn rpc(method: &str, params: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

pub fn call_hello(name: &str) -> serde_json::Value {
    rpc(
        "tools/call",
        serde_json::json!({"name": "hello", "arguments": {"name": name}}),
    )
}

/// A POST with the headers MCP requires.
pub fn mcp_post(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(body)
}

/// Opens the MCP GET event stream with `key`; checks it is accepted.
pub async fn open_event_stream(app: &App, key: &str) -> reqwest::Response {
    let response = http()
        .get(app.url("/mcp"))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response
}

/// How a test's MCP client sends the key.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    Query,
    Bearer,
    Header,
}

/// A real rmcp client over TCP.
pub async fn mcp_client(url: &str, key: &str, how: Via) -> RunningService<RoleClient, ()> {
    let (_, config) = client_config(url, key, how);
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport)
        .await
        .expect("the MCP client initializes")
}

/// A real rmcp client on protocol 2026-07-28: no `initialize`, `server/discover` first and
/// each request's version and capabilities in its own `_meta`; the key as a Bearer token.
pub async fn mcp_client_2026(url: &str, key: &str) -> RunningService<RoleClient, ()> {
    use rmcp::{ClientLifecycleMode, ClientServiceExt, model::ProtocolVersion};
    let (_, config) = client_config(url, key, Via::Bearer);
    let transport = StreamableHttpClientTransport::from_config(config);
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    ().serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("the 2026-07-28 client discovers")
}

/// A real rmcp client over a given HTTP client (e.g. one that trusts a test CA).
pub async fn mcp_client_with(
    http: reqwest::Client,
    url: &str,
    key: &str,
    how: Via,
) -> RunningService<RoleClient, ()> {
    let (_, config) = client_config(url, key, how);
    let transport = StreamableHttpClientTransport::with_client(http, config);
    ().serve(transport)
        .await
        .expect("the MCP client initializes over HTTPS")
}

/// A real rmcp client over a Unix socket.
pub async fn mcp_client_unix(
    socket: &Path,
    url: &str,
    key: &str,
    how: Via,
) -> RunningService<RoleClient, ()> {
    let (uri, config) = client_config(url, key, how);
    let client = rmcp::transport::UnixSocketHttpClient::new(socket.to_str().unwrap(), &uri);
    let transport = StreamableHttpClientTransport::with_client(client, config);
    ().serve(transport)
        .await
        .expect("the MCP client initializes over the socket")
}

fn client_config(url: &str, key: &str, how: Via) -> (String, StreamableHttpClientTransportConfig) {
    match how {
        Via::Query => {
            let uri = format!("{url}?api_key={key}");
            (
                uri.clone(),
                StreamableHttpClientTransportConfig::with_uri(uri),
            )
        }
        Via::Bearer => (
            url.to_owned(),
            StreamableHttpClientTransportConfig::with_uri(url).auth_header(key),
        ),
        Via::Header => {
            let mut headers = std::collections::HashMap::new();
            headers.insert(
                http::HeaderName::from_static("x-api-key"),
                http::HeaderValue::from_str(key).unwrap(),
            );
            (
                url.to_owned(),
                StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
            )
        }
    }
}

/// A real client for each way of sending the key over TCP, and one over the Unix socket
/// (the app's first), each exercised with [`exercise`].
pub async fn exercise_every_way(app: &App) {
    for how in [Via::Query, Via::Bearer, Via::Header] {
        let client = mcp_client(&app.url("/mcp"), KEY, how).await;
        exercise(&client).await;
        client.cancel().await.unwrap();
    }
    let client = mcp_client_unix(&app.sockets[0], "http://localhost/mcp", KEY, Via::Query).await;
    exercise(&client).await;
    client.cancel().await.unwrap();
}

/// The names of every tool `client` is offered, all pages.
pub async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    let tools = client.list_all_tools().await.expect("tools/list");
    tools.into_iter().map(|t| t.name.into_owned()).collect()
}

/// Lists tools and calls `hello`, checking both answers.
pub async fn exercise(client: &RunningService<RoleClient, ()>) {
    let info = client.peer_info().expect("server info after initialize");
    let server = info.server_info.as_ref().expect("serverInfo");
    assert_eq!(server.name, "latchkey");
    assert_eq!(server.version, env!("CARGO_PKG_VERSION"));
    let tools = client.list_all_tools().await.expect("tools/list");
    let hello = tools
        .iter()
        .find(|t| t.name == "hello")
        .expect("hello is listed");
    let annotations = hello.annotations.as_ref().expect("hello has annotations");
    assert_eq!(annotations.title.as_deref(), Some("Say hello to someone"));
    assert_eq!(annotations.read_only_hint, Some(true));
    assert_eq!(annotations.destructive_hint, Some(false));
    assert_eq!(annotations.open_world_hint, Some(false));
    let mut args = serde_json::Map::new();
    args.insert("name".into(), "Ada".into());
    let result = client
        .call_tool(CallToolRequestParams::new("hello").with_arguments(args))
        .await
        .expect("tools/call hello");
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("Hello Ada!"), "{text}");
    assert_ne!(result.is_error, Some(true));
}
