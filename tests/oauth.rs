//! `--oauth`: latchkey as a single-user OAuth 2.1 authorization server, driven by the
//! official SDKs' OAuth clients (Python `mcp`'s `OAuthClientProvider`, TypeScript
//! `@modelcontextprotocol/sdk`'s `auth`) and, for the refusals, by hand over real HTTP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{App, KEY, OTHER_KEY, Spawn, chromium, free_port, wait_for};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

/// latchkey with `--oauth` on `port` (known in advance: the public URL names it), its state
/// in `dir`, at `RUST_LOG=trace` so that the secret checks see everything.
fn oauth_spawn(dir: &Path, port: u16, base: &str) -> Spawn {
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}{base}");
    let state = dir.join("state");
    let mut spawn = Spawn::default()
        .args(&["--listen", &listen, "--public-url", &public, "--oauth"])
        .args(&["--state-dir", state.to_str().unwrap()])
        .env("RUST_LOG", "trace");
    if !base.is_empty() {
        spawn = spawn.args(&["--base-path", base]);
    }
    spawn
}

/// [`oauth_spawn`] on a free port, started, with `extra` arguments.
fn start(dir: &Path, base: &str, extra: &[&str]) -> App {
    oauth_spawn(dir, free_port(), base).args(extra).start()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// Runs the Python SDK's OAuth client; what it printed.
fn python_client(
    url: &str,
    store: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_oauth_client.py"
    );
    let mut cmd = Command::new(common::upstreams::python());
    cmd.arg(script)
        .arg(url)
        .arg(store)
        .args(extra)
        .env("LATCHKEY_TEST_KEY", KEY);
    for (name, value) in env {
        cmd.env(name, value);
    }
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        cmd.env_remove(proxy);
    }
    what_it_saw("the Python OAuth client", cmd.output().unwrap())
}

/// The JSON line a client script printed last, once it exited 0.
fn what_it_saw(client: &str, out: std::process::Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{client} failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("no JSON from {client}:\n{stdout}\n{stderr}"))
}

fn stored(store: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(store).unwrap()).unwrap()
}

/// An MCP `tools/call hello` with `token` as Bearer: the status.
async fn call_with(app: &App, path: &str, token: &str) -> StatusCode {
    let mut request = client().post(app.url(path));
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    request
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(common::call_hello("OAuth").to_string())
        .send()
        .await
        .unwrap()
        .status()
}

/// Fails if anything secret from the flow is in latchkey's output.
fn assert_nothing_secret_logged(app: &App, secrets: &[&str]) {
    let output = app.output();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !output.contains(secret),
            "a secret ({}…) reached the output",
            &secret[..8]
        );
    }
}

/// The JSON document at `url`, which must answer GET and HEAD with 200.
async fn document(http: &reqwest::Client, url: &str) -> serde_json::Value {
    assert_eq!(
        http.head(url).send().await.unwrap().status(),
        200,
        "HEAD {url}"
    );
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn discovery_documents_are_where_clients_look_and_a_401_points_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), "/p", &[]);
    let public = app.url("/p");
    let http = client();
    for path in [
        "/.well-known/oauth-protected-resource/p/mcp",
        "/.well-known/oauth-protected-resource",
        "/p/.well-known/oauth-protected-resource/mcp",
        "/p/.well-known/oauth-protected-resource",
    ] {
        let doc = document(&http, &app.url(path)).await;
        assert_eq!(doc["resource"], format!("{public}/mcp"), "{path}");
        assert_eq!(doc["authorization_servers"][0], public.as_str());
    }
    for path in [
        "/.well-known/oauth-authorization-server/p",
        "/.well-known/openid-configuration/p",
        "/.well-known/oauth-authorization-server",
        "/p/.well-known/openid-configuration",
        "/p/.well-known/oauth-authorization-server",
    ] {
        let doc = document(&http, &app.url(path)).await;
        assert_eq!(doc["issuer"], public.as_str());
        assert_eq!(doc["token_endpoint"], format!("{public}/oauth/token"));
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        let methods = doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(methods.contains(&"none".into()));
    }
    for path in [
        "/.well-known/oauth-protected-resource/q/mcp",
        "/.well-known/oauth-authorization-server/q",
        "/.well-known/mcp",
    ] {
        assert_eq!(
            http.get(app.url(path)).send().await.unwrap().status(),
            404,
            "{path}"
        );
    }
    // Without credentials: 401 saying where the resource metadata is; with a bad token,
    // the error fields too.
    let response = http.post(app.url("/p/mcp")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let metadata = format!("{public}/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata}\"")
    );
    assert_eq!(http.get(&metadata).send().await.unwrap().status(), 200);
    let response = http
        .post(app.url("/p/mcp"))
        .bearer_auth("lka_not-a-token")
        .send()
        .await
        .unwrap();
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    // The keys keep working beside OAuth.
    assert_eq!(call_with(&app, "/p/mcp", KEY).await, 200);
}

#[test]
fn oauth_needs_a_public_url_and_oauth_off_does_not() {
    let off = App::try_start(Spawn::default().env("LATCHKEY_OAUTH", "false"));
    assert!(
        off.is_ok(),
        "LATCHKEY_OAUTH=false must start without --public-url"
    );
    let err = App::try_start(Spawn::default().args(&["--oauth"]))
        .err()
        .expect("it must not start");
    assert!(!err.0.success());
    assert!(err.1.contains("--public-url"), "{}", err.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_registers_consents_refreshes_survives_a_restart_and_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("python-client.json");
    let mut app = start(dir.path(), "", &["--oauth-token-lifetime", "3s"]);
    let url = app.url("/mcp");

    // Discovery, DCR, consent over HTTP, token, tool call; then, once the access token has
    // expired (3 s), another call, for which the SDK refreshes it without asking for consent.
    let first = tokio::task::block_in_place(|| python_client(&url, &store, &["--refresh"], &[]));
    assert_eq!(first["text"][0], "Hello OAuth!");
    assert_eq!(first["consent"], true);
    assert_eq!(
        first["consent_title"],
        "Allow Python SDK test client to use your tools?"
    );
    assert_eq!(first["iss"], app.url(""));
    let client_id = first["client_id"].as_str().unwrap().to_owned();
    assert!(client_id.starts_with("lkcl_"), "{client_id}");
    assert_eq!(
        first["refreshed"], true,
        "the SDK must have refreshed: {first}"
    );
    let exchanges = app
        .output()
        .matches("\"path\":\"/oauth/token\",\"status\":200")
        .count();
    assert_eq!(exchanges, 2, "one code exchange and one refresh");
    let tokens = stored(&store)["tokens"].clone();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("lka_") && refresh.starts_with("lkr_"));
    let rotated = refresh.clone();

    // The grant survives a restart (same state directory): its refresh token still works
    // (the SDK, started anew, cannot know its stored token expired, so it is refreshed here).
    app.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(app.wait().success());
    let output_before = app.output();
    let app = start_again(dir.path(), &url, &["--oauth-token-lifetime", "1h"]);
    common::eventually("the 3 s access token to expire", || async {
        call_with(&app, "/mcp", &access).await == 401
    })
    .await;
    let (status, tokens) = Flow::new(&app)
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&app, "/mcp", &access).await, 200);

    // `latchkey oauth list` shows the client; `revoke --client` ends its grants at once.
    let list = latchkey_oauth(dir.path(), &["list"]);
    assert!(
        list.contains(&client_id) && list.contains("Python SDK test client"),
        "{list}"
    );
    assert!(
        !list.contains(&access) && !list.contains(&rotated),
        "{list}"
    );
    let revoked = latchkey_oauth(dir.path(), &["revoke", "--client", &client_id]);
    assert!(revoked.contains("revoked 1 grant"), "{revoked}");
    common::eventually("the revoked token to be refused", || async {
        call_with(&app, "/mcp", &access).await == 401
    })
    .await;
    let err = latchkey_oauth_fails(dir.path(), &["revoke", "--client", "lkcl_nobody"]);
    assert!(err.contains("no client \"lkcl_nobody\""), "{err}");

    let code_like: Vec<String> = [output_before.clone(), app.output()]
        .iter()
        .flat_map(|o| {
            o.split(['"', '&', '=', ' '])
                .filter(|w| w.starts_with("lkc_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        code_like.is_empty(),
        "a code reached the output: {code_like:?}"
    );
    for output in [&output_before, &app.output()] {
        for secret in [KEY, &access, &refresh, &rotated] {
            assert!(
                !output.contains(secret),
                "a secret reached the trace-level output"
            );
        }
    }
}

/// latchkey started again on the port of `url` (no base path), with the state in `dir`.
fn start_again(dir: &Path, url: &str, extra: &[&str]) -> App {
    let port = url.trim_end_matches("/mcp").rsplit(':').next().unwrap();
    oauth_spawn(dir, port.parse().unwrap(), "")
        .args(extra)
        .start()
}

fn latchkey_oauth_command(dir: &Path, args: &[&str]) -> std::process::Output {
    common::command(dir)
        .arg("oauth")
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .unwrap()
}

fn latchkey_oauth(dir: &Path, args: &[&str]) -> String {
    let out = latchkey_oauth_command(dir, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn latchkey_oauth_fails(dir: &Path, args: &[&str]) -> String {
    let out = latchkey_oauth_command(dir, args);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A PKCE pair: (verifier, S256 challenge).
fn pkce() -> (String, String) {
    let verifier = format!("v{}", "x".repeat(50));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// The OAuth flow by hand, to take each step wrong on purpose.
struct Flow<'a> {
    app: &'a App,
    http: reqwest::Client,
}

impl<'a> Flow<'a> {
    fn new(app: &'a App) -> Self {
        Flow {
            app,
            http: client(),
        }
    }

    /// Consent with `secret` and the code exchanged ([`pkce`]'s pair): the token answer.
    async fn granted(&self, client_id: &str, secret: &str) -> serde_json::Value {
        let (verifier, challenge) = pkce();
        let code = self.consent(client_id, &challenge, secret).await["code"].clone();
        let (status, tokens) = self.exchange(client_id, &code, &verifier).await;
        assert_eq!(status, 200, "{tokens}");
        tokens
    }

    async fn refresh(&self, client_id: &str, refresh: &str) -> (StatusCode, serde_json::Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", client_id),
        ])
        .await
    }

    async fn register(&self, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.app.url("/oauth/register"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn client_id(&self) -> String {
        let response = self
            .register(serde_json::json!({"redirect_uris": [CALLBACK], "client_name": "Hand"}))
            .await;
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        body["client_id"].as_str().unwrap().to_owned()
    }

    fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        let query = serde_urlencoded::to_string(params).unwrap();
        self.app.url(&format!("/oauth/authorize?{query}"))
    }

    fn params<'p>(&self, client_id: &'p str, challenge: &'p str) -> Vec<(&'p str, &'p str)> {
        vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("state", "st4te"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]
    }

    /// GETs the consent page: (status, csrf field, cookie, body).
    async fn open(&self, url: &str) -> (StatusCode, String, String, String) {
        let response = self.http.get(url).send().await.unwrap();
        let status = response.status();
        let cookie = response
            .headers()
            .get("set-cookie")
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.text().await.unwrap();
        let csrf = body
            .split_once("name=\"csrf\" value=\"")
            .map(|(_, rest)| rest.split('"').next().unwrap().to_owned())
            .unwrap_or_default();
        (status, csrf, cookie, body)
    }

    async fn answer(
        &self,
        csrf: &str,
        cookie: &str,
        secret: &str,
        decision: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.app.url("/oauth/authorize"))
            .header("cookie", cookie)
            .form(&[("csrf", csrf), ("secret", secret), ("decision", decision)])
            .send()
            .await
            .unwrap()
    }

    /// Consents with `secret`; the parameters of the redirect.
    async fn consent(
        &self,
        client_id: &str,
        challenge: &str,
        secret: &str,
    ) -> std::collections::HashMap<String, String> {
        let (status, csrf, cookie, _) = self
            .open(&self.authorize_url(&self.params(client_id, challenge)))
            .await;
        assert_eq!(status, 200);
        let response = self.answer(&csrf, &cookie, secret, "allow").await;
        assert_eq!(response.status(), 303);
        redirect_params(&response)
    }

    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
        let response = self
            .http
            .post(self.app.url("/oauth/token"))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn exchange(
        &self,
        client_id: &str,
        code: &str,
        verifier: &str,
    ) -> (StatusCode, serde_json::Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ])
        .await
    }
}

fn redirect_params(response: &reqwest::Response) -> std::collections::HashMap<String, String> {
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(CALLBACK), "{location}");
    let query = location.split_once('?').unwrap().1;
    serde_urlencoded::from_str(query).unwrap()
}

#[tokio::test]
async fn each_wrong_step_is_refused_and_nothing_secret_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, format!("{KEY}\n{OTHER_KEY}\n")).unwrap();
    let app = start(
        dir.path(),
        "",
        &[
            "--api-key-file",
            key_file.to_str().unwrap(),
            "--max-key-failures",
            "3",
        ],
    );
    let flow = Flow::new(&app);
    let (verifier, challenge) = pkce();

    // Registration: only allowed redirect URIs.
    let foreign = flow
        .register(serde_json::json!({"redirect_uris": ["https://evil.example/cb"]}))
        .await;
    assert_eq!(foreign.status(), 400);
    assert_eq!(
        foreign.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_redirect_uri"
    );
    let chatgpt = flow
        .register(
            serde_json::json!({"redirect_uris": ["https://chatgpt.com/connector/oauth/abc"],
            "token_endpoint_auth_method": "client_secret_post"}),
        )
        .await;
    assert_eq!(chatgpt.status(), 201);
    let chatgpt: serde_json::Value = chatgpt.json().await.unwrap();
    assert_eq!(
        chatgpt["token_endpoint_auth_method"], "client_secret_post",
        "echoed"
    );
    assert!(
        chatgpt["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("lks_")
    );
    let client_id = flow.client_id().await;

    // A redirect URI the client did not register: a page here, nothing sent anywhere.
    let mut params = flow.params(&client_id, &challenge);
    params[2].1 = "http://127.0.0.1:9/other";
    let response = flow
        .http
        .get(flow.authorize_url(&params))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    // No state, a wrong resource, no PKCE: sent back to the client as errors.
    for (drop, add, error) in [
        ("state", None, "invalid_request"),
        ("code_challenge", None, "invalid_request"),
        (
            "",
            Some(("resource", "http://127.0.0.1:1/elsewhere/mcp")),
            "invalid_target",
        ),
    ] {
        let mut params: Vec<_> = flow
            .params(&client_id, &challenge)
            .into_iter()
            .filter(|(n, _)| *n != drop)
            .collect();
        params.extend(add);
        let response = flow
            .http
            .get(flow.authorize_url(&params))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{error}");
        let back = redirect_params(&response);
        assert_eq!(back["error"], error);
        assert_eq!(back["iss"], app.url(""));
    }
    // The resource with a trailing slash, and no scope, are fine.
    let resource = app.url("/mcp/");
    let mut params = flow.params(&client_id, &challenge);
    params.push(("resource", &resource));
    assert_eq!(flow.open(&flow.authorize_url(&params)).await.0, 200);

    // Consent: a POST without the cookie, or with another page's token, is refused.
    let (_, csrf, cookie, page) = flow
        .open(&flow.authorize_url(&flow.params(&client_id, &challenge)))
        .await;
    assert!(
        page.contains("Allow Hand to use your tools?") && page.contains("127.0.0.1:9"),
        "{page}"
    );
    assert_eq!(flow.answer(&csrf, "", KEY, "allow").await.status(), 400);
    assert_eq!(
        flow.answer("forged", &cookie, KEY, "allow").await.status(),
        400
    );
    // Deny: access_denied with the state.
    let denied = flow.answer(&csrf, &cookie, "", "deny").await;
    assert_eq!(denied.status(), 303);
    let back = redirect_params(&denied);
    assert_eq!(
        (back["error"].as_str(), back["state"].as_str()),
        ("access_denied", "st4te")
    );

    // A right consent, then a wrong verifier: the code is spent.
    let back = flow.consent(&client_id, &challenge, KEY).await;
    assert_eq!(back["state"], "st4te");
    let code = back["code"].clone();
    let (status, body) = flow
        .exchange(&client_id, &code, &format!("w{}", "x".repeat(50)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        flow.exchange(&client_id, &code, &verifier).await.1["error"],
        "invalid_grant"
    );

    // A redirect URI at the token endpoint other than the code's: refused.
    let code = flow.consent(&client_id, &challenge, KEY).await["code"].clone();
    let (status, body) = flow
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // A code used twice: the second is refused and the first one's tokens are revoked.
    let code = flow.consent(&client_id, &challenge, KEY).await["code"].clone();
    let (status, tokens) = flow.exchange(&client_id, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&app, "/mcp", &access).await, 200);
    assert_eq!(
        flow.exchange(&client_id, &code, &verifier).await.1["error"],
        "invalid_grant"
    );
    assert_eq!(call_with(&app, "/mcp", &access).await, 401);

    // Another client may not use a code; an unknown client must register again.
    let code = flow.consent(&client_id, &challenge, KEY).await["code"].clone();
    let other = flow.client_id().await;
    assert_eq!(
        flow.exchange(&other, &code, &verifier).await.1["error"],
        "invalid_grant"
    );
    let (status, body) = flow.exchange("lkcl_gone", "lkc_x", &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // Refresh: rotation, and a replayed refresh token revokes the grant.
    let tokens = flow.granted(&client_id, OTHER_KEY).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = flow.refresh(&client_id, &refresh).await;
    assert_eq!(refreshed.0, 200, "{}", refreshed.1);
    let new_access = refreshed.1["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&app, "/mcp", &new_access).await, 200);
    let replay = flow.refresh(&client_id, &refresh).await;
    assert_eq!(replay.1["error"], "invalid_grant");
    assert_eq!(
        call_with(&app, "/mcp", &new_access).await,
        401,
        "reuse revokes the grant"
    );

    // Revocation by the client (RFC 7009).
    let tokens = flow.granted(&client_id, OTHER_KEY).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&app, "/mcp", &access).await, 200);
    let revoked = flow
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(call_with(&app, "/mcp", &access).await, 401);

    // A grant made with a key that is then rotated out stops working.
    let tokens = flow.granted(&client_id, OTHER_KEY).await;
    let with_other = tokens["access_token"].as_str().unwrap().to_owned();
    let tokens = flow.granted(&client_id, KEY).await;
    let with_key = tokens["access_token"].as_str().unwrap().to_owned();
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    app.signal(nix::sys::signal::Signal::SIGHUP);
    common::eventually("the rotated key's grant to end", || async {
        call_with(&app, "/mcp", &with_other).await == 401
    })
    .await;
    assert_eq!(call_with(&app, "/mcp", &with_key).await, 200);

    // Wrong secrets count toward the lockout: after 3, even the right key is refused.
    let (_, csrf, cookie, _) = flow
        .open(&flow.authorize_url(&flow.params(&client_id, &challenge)))
        .await;
    for _ in 0..3 {
        let wrong = flow
            .answer(
                &csrf,
                &cookie,
                "not-the-key-not-the-key-not-the-key",
                "allow",
            )
            .await;
        assert_eq!(wrong.status(), 401);
        assert!(
            wrong
                .text()
                .await
                .unwrap()
                .contains("not an API key or the passphrase")
        );
    }
    let locked = flow.answer(&csrf, &cookie, KEY, "allow").await;
    assert_eq!(locked.status(), 429);

    // Metadata documents that point inside, or are not https, are never fetched.
    for client_id in [
        "https://127.0.0.1/client.json",
        "https://169.254.169.254/latest/meta-data/client.json",
        "https://localhost:1/client.json",
        "https://[::1]/client.json",
    ] {
        let (status, _, _, page) = flow
            .open(&flow.authorize_url(&flow.params(client_id, &challenge)))
            .await;
        assert_eq!(status, 400, "{client_id}");
        assert!(page.contains("not a public address"), "{client_id}: {page}");
    }
    let (status, _, _, _) = flow
        .open(&flow.authorize_url(&flow.params("http://example.com/c.json", &challenge)))
        .await;
    assert_eq!(status, 400);

    assert_nothing_secret_logged(
        &app,
        &[
            KEY,
            OTHER_KEY,
            &verifier,
            &access,
            &with_key,
            &with_other,
            &refresh,
            &new_access,
        ],
    );
    assert!(!app.output().contains("lkc_"), "a code reached the output");
}

#[tokio::test]
async fn a_key_in_the_path_opens_mcp_and_is_never_logged() {
    let app = Spawn::default().env("RUST_LOG", "trace").start();
    assert_eq!(call_with(&app, &format!("/mcp/{KEY}"), "").await, 200);
    assert_eq!(
        call_with(&app, "/mcp/lk-wrong-key-0000000000000000000000000000", "").await,
        401
    );
    wait_for("the access log line", || {
        app.output().contains("\"auth\":\"path\"") || app.output().contains("auth=path")
    });
    assert!(!app.output().contains(KEY));
    // The request was sent on to `/mcp`: the key is in no path recorded.
    assert!(app.output().contains("\"path\":\"/mcp\""));
}

#[tokio::test]
async fn with_oauth_off_discovery_stays_404_and_the_endpoints_need_a_key() {
    let app = Spawn::default().start();
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
    ] {
        assert_eq!(
            client().get(app.url(path)).send().await.unwrap().status(),
            404,
            "{path}"
        );
    }
    let response = client().post(app.url("/oauth/token")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"latchkey\""
    );
}

/// A CA made for one test and a certificate for localhost it signed, as files in `dir`:
/// (CA file, certificate file, key file).
fn localhost_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "latchkey test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, leaf.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

/// latchkey --oauth that fetches metadata documents from this machine (`--oauth-cimd-allow`)
/// and trusts the test CA for them (`SSL_CERT_FILE`, read by the platform verifier).
fn start_for_documents(dir: &Path, ca: &Path) -> App {
    oauth_spawn(dir, free_port(), "")
        .args(&["--oauth-cimd-allow", "127.0.0.0/8,::1/128"])
        .env("SSL_CERT_FILE", ca.to_str().unwrap())
        .start()
}

/// Killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_documents_that_redirect_are_too_big_lie_or_are_slow_are_refused_and_good_ones_cached()
 {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = localhost_certificate(dir.path());
    let app = start_for_documents(dir.path(), &ca);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/cimd_server.py");
    let mut server = Child(
        Command::new(common::upstreams::python())
            .arg(script)
            .args([&cert, &key])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut port = String::new();
    std::io::BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let base = format!("https://localhost:{}", port.trim());
    let flow = Flow::new(&app);
    let (_, challenge) = pkce();
    let (flow, challenge) = (&flow, &challenge);
    let open = |path: &str| {
        let url = flow.authorize_url(&flow.params(&format!("{base}{path}"), challenge));
        async move { flow.open(&url).await }
    };
    let (status, _, _, page) = open("/client.json").await;
    assert_eq!(status, 200, "the good document is accepted: {page}");
    assert!(page.contains("Allow Refused to use your tools?"), "{page}");
    for (path, says) in [
        ("/redirect.json", "answered 302"),
        ("/big.json", "larger than 16384 bytes"),
        ("/other.json", "client_id is not its own URL"),
        // Valid, but only after 8 s: refused because latchkey stopped waiting at 5 s.
        ("/slow.json", "cannot fetch"),
    ] {
        let (status, _, _, page) = open(path).await;
        assert_eq!(status, 400, "{path}: {page}");
        assert!(page.contains(says), "{path}: {page}");
    }
    // The good document is cached: it is still accepted with its server gone.
    drop(server);
    assert_eq!(open("/client.json").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_identifies_itself_by_a_metadata_document() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = localhost_certificate(dir.path());
    let app = start_for_documents(dir.path(), &ca);
    let store = dir.path().join("python-client.json");
    let url = app.url("/mcp");
    let seen = tokio::task::block_in_place(|| {
        python_client(
            &url,
            &store,
            &["--cimd", cert.to_str().unwrap(), key.to_str().unwrap()],
            &[],
        )
    });
    assert_eq!(seen["text"][0], "Hello OAuth!");
    assert_eq!(
        seen["consent_title"],
        "Allow Python SDK test client (CIMD) to use your tools?"
    );
    let client_id = seen["client_id"].as_str().unwrap();
    assert!(
        client_id.starts_with("https://localhost:") && client_id.ends_with("/client.json"),
        "{client_id}"
    );
    assert!(
        !app.output().contains("/oauth/register"),
        "a document client does not register"
    );
    let list = latchkey_oauth(dir.path(), &["list"]);
    assert!(
        list.contains(client_id) && list.contains("registered clients (0)"),
        "{list}"
    );
}

/// Runs the TypeScript SDK's OAuth client (from where npm installed the SDK).
fn ts_client(url: &str, args: &[&str]) -> serde_json::Value {
    let node_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-node");
    assert!(
        node_dir
            .join("node_modules/@modelcontextprotocol/sdk")
            .exists(),
        "{} lacks the TypeScript SDK: .ci/run installs it",
        node_dir.display()
    );
    // ES modules find packages from the script's own directory: run a copy there.
    let script = node_dir.join(format!("ts_oauth_client_{}.mjs", free_port()));
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/ts_oauth_client.mjs"
        ),
        &script,
    )
    .unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(url)
        .args(args)
        .env("LATCHKEY_TEST_KEY", KEY)
        .output()
        .unwrap();
    std::fs::remove_file(&script).unwrap();
    what_it_saw("the TypeScript OAuth client", out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_connects_by_metadata_document_and_by_registration() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = localhost_certificate(dir.path());
    let app = start_for_documents(dir.path(), &ca);
    let url = app.url("/mcp");

    let by_document = tokio::task::block_in_place(|| {
        ts_client(&url, &[cert.to_str().unwrap(), key.to_str().unwrap()])
    });
    assert_eq!(by_document["text"][0], "Hello TypeScript!");
    assert_eq!(
        by_document["consent_title"],
        "Allow TypeScript SDK test client (CIMD) to use your tools?"
    );
    assert!(
        by_document["client_id"]
            .as_str()
            .unwrap()
            .starts_with("https://localhost:")
    );
    assert_eq!(by_document["iss"], app.url(""));
    assert_eq!(by_document["token_prefix"], "lka_");

    let registered = tokio::task::block_in_place(|| ts_client(&url, &["--register"]));
    assert_eq!(registered["text"][0], "Hello TypeScript!");
    assert_eq!(
        registered["consent_title"],
        "Allow TypeScript SDK test client to use your tools?"
    );
    assert!(
        registered["client_id"]
            .as_str()
            .unwrap()
            .starts_with("lkcl_")
    );
    assert_nothing_secret_logged(&app, &[KEY]);
    assert!(!app.output().contains("lkc_") && !app.output().contains("lka_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_page_renders_in_a_browser_and_its_screenshot_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), "", &[]);
    let flow = Flow::new(&app);
    let response = flow
        .register(serde_json::json!({
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
            "client_name": "Claude"
        }))
        .await;
    let client_id = response.json::<serde_json::Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, challenge) = pkce();
    let mut params = flow.params(&client_id, &challenge);
    params[2].1 = "https://claude.ai/api/mcp/auth_callback";
    let url = flow.authorize_url(&params);

    let dom = tokio::task::block_in_place(|| chromium(&["--dump-dom"], &url));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("Allow Claude to use your tools?"), "{dom}");
    assert!(
        dom.contains("claude.ai") && dom.contains("type=\"password\""),
        "{dom}"
    );

    // A phone-sized window: the page must read there.
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("oauth-consent-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::task::block_in_place(|| {
        chromium(
            &[
                &format!("--screenshot={}", shot.display()),
                "--window-size=412,760",
            ],
            &url,
        )
    });
    let png = std::fs::read(&shot)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 10_000,
        "a page with text is more than {} bytes",
        png.len()
    );
    eprintln!("consent page screenshot: {}", shot.display());
}

/// A person answers the consent page in headless Chromium (over the DevTools protocol,
/// `tests/clients/consent_browser.py`): types the key, presses Allow, and the browser lands
/// on the client's callback with a code. The page's own form must pass the Host/Origin guard
/// as a browser sends it (under `Referrer-Policy: no-referrer` it carried `Origin: null`,
/// and every consent was refused with 403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_consents_in_a_real_browser_and_it_reaches_the_callback() {
    let callback = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback_url = format!(
        "http://127.0.0.1:{}/cb",
        callback.local_addr().unwrap().port()
    );
    let landed = axum::Router::new().route("/cb", axum::routing::get(|| async { "signed in" }));
    tokio::spawn(async move { axum::serve(callback, landed).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), "", &["--oauth-redirect-uri", &callback_url]);
    let flow = Flow::new(&app);
    let response = flow
        .register(serde_json::json!({"redirect_uris": [callback_url], "client_name": "Browser"}))
        .await;
    assert_eq!(response.status(), 201);
    let client_id = response.json::<serde_json::Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, challenge) = pkce();
    let mut params = flow.params(&client_id, &challenge);
    params[2].1 = &callback_url;
    let url = flow.authorize_url(&params);
    let out = tokio::task::block_in_place(|| {
        common::client_script("consent_browser.py", &[&url, &callback_url])
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let location = seen["location"].as_str().unwrap();
    assert!(
        location.starts_with(&format!("{callback_url}?code=lkc"))
            && location.contains("state=st4te"),
        "{location}\n{}",
        app.output()
    );
}

/// `latchkey oauth passphrase` with `phrase` on stdin.
fn hash_passphrase(dir: &Path, phrase: &str) -> std::process::Output {
    common::with_stdin(common::command(dir).args(["oauth", "passphrase"]), phrase)
}

#[tokio::test]
async fn a_passphrase_opens_the_consent_page_and_changing_it_ends_its_grants() {
    let dir = tempfile::tempdir().unwrap();
    const PHRASE: &str = "correct horse battery staple";
    const NEXT: &str = "a different long passphrase";
    let short = hash_passphrase(dir.path(), "too short\n");
    assert!(!short.status.success());
    let said = String::from_utf8_lossy(&short.stderr);
    assert!(
        said.contains("at least 12 characters") && !said.contains("too short"),
        "{said}"
    );
    let hashed = hash_passphrase(dir.path(), &format!("{PHRASE}\n"));
    assert!(hashed.status.success());
    let hash = String::from_utf8(hashed.stdout).unwrap();
    assert!(
        hash.starts_with("$argon2id$") && !hash.contains(PHRASE),
        "{hash}"
    );
    let file = dir.path().join("passphrase");
    std::fs::write(&file, "not a hash\n").unwrap();
    let broken = App::try_start(Spawn::default().args(&[
        "--oauth",
        "--public-url",
        "http://127.0.0.1:1",
        "--oauth-passphrase-file",
        file.to_str().unwrap(),
    ]));
    let (status, output) = broken
        .err()
        .expect("a broken passphrase file stops the start");
    assert!(!status.success());
    assert!(
        output.contains("holds no argon2 hash") && !output.contains("not a hash"),
        "{output}"
    );
    std::fs::write(&file, &hash).unwrap();

    let app = start(
        dir.path(),
        "",
        &["--oauth-passphrase-file", file.to_str().unwrap()],
    );
    let flow = Flow::new(&app);
    let (verifier, challenge) = pkce();
    let client_id = flow.client_id().await;
    let tokens = flow.granted(&client_id, PHRASE).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&app, "/mcp", &access).await, 200);

    // A client removed between consent and token must register again: invalid_client.
    let code = flow.consent(&client_id, &challenge, PHRASE).await["code"].clone();
    let doomed = flow.client_id().await;
    let other_code = flow.consent(&doomed, &challenge, PHRASE).await["code"].clone();
    latchkey_oauth(dir.path(), &["revoke", "--client", &doomed]);
    let (status, body) = flow.exchange(&doomed, &other_code, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );

    // One consent page, answered twice at once (a double click; argon2 makes each answer
    // slow): it gives one code, the other answer is told it was already answered. Twice, not
    // more: latchkey runs two passphrase checks at once, and a third waiting behind two slow
    // ones (a loaded CI machine, a debug build) is rightly told "busy" (503), not checked.
    let (_, csrf, cookie, _) = flow
        .open(&flow.authorize_url(&flow.params(&client_id, &challenge)))
        .await;
    let answers =
        futures::future::join_all((0..2).map(|_| flow.answer(&csrf, &cookie, PHRASE, "allow")))
            .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 400).count(),
        1,
        "{statuses:?}"
    );

    // A new passphrase (SIGHUP): grants made with the old one end, the old one opens nothing.
    let next = String::from_utf8(hash_passphrase(dir.path(), NEXT).stdout).unwrap();
    std::fs::write(&file, next).unwrap();
    app.signal(nix::sys::signal::Signal::SIGHUP);
    common::eventually("the old passphrase's grant to end", || async {
        call_with(&app, "/mcp", &access).await == 401
    })
    .await;
    let (_, tokens) = flow.exchange(&client_id, &code, &verifier).await;
    let late = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        call_with(&app, "/mcp", &late).await,
        401,
        "made with the old passphrase"
    );
    let (_, csrf, cookie, _) = flow
        .open(&flow.authorize_url(&flow.params(&client_id, &challenge)))
        .await;
    assert_eq!(
        flow.answer(&csrf, &cookie, PHRASE, "allow").await.status(),
        401
    );
    assert_eq!(
        flow.answer(&csrf, &cookie, NEXT, "allow").await.status(),
        303
    );
    assert_nothing_secret_logged(&app, &[PHRASE, NEXT, &access, &late, &verifier]);
}

#[tokio::test]
async fn spans_of_the_whole_flow_hold_no_code_token_or_key() {
    let (endpoint, received) = common::otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let app = oauth_spawn(dir.path(), free_port(), "")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .start();
    let flow = Flow::new(&app);
    let (verifier, challenge) = pkce();
    let client_id = flow.client_id().await;
    let code = flow.consent(&client_id, &challenge, KEY).await["code"].clone();
    let (_, tokens) = flow.exchange(&client_id, &code, &verifier).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (_, tokens) = flow.refresh(&client_id, &refresh).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let new_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(&app, "/mcp", &access).await, 200);
    common::eventually("the tool call's span to be exported", || async {
        received
            .span_names()
            .iter()
            .any(|n| n == "tools/call hello")
    })
    .await;
    let dump = received.dump();
    assert!(
        dump.contains("/oauth/token") && dump.contains("/oauth/authorize"),
        "the OAuth requests have spans"
    );
    for secret in [KEY, &code, &verifier, &refresh, &access, &new_refresh] {
        assert!(
            !dump.contains(secret),
            "a secret ({}…) is in an exported span",
            &secret[..6]
        );
    }
    assert_nothing_secret_logged(
        &app,
        &[KEY, &code, &verifier, &refresh, &access, &new_refresh],
    );
}

/// `chunk`-byte pieces of a chunked body, one every `every`, until `total` or the server
/// stops reading; the status it answered (0 if none).
async fn slow_chunked(
    app: &App,
    path: &str,
    chunk: usize,
    total: usize,
    every: std::time::Duration,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = app.tcp[0].strip_prefix("http://").unwrap().to_owned();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let piece = vec![b'a'; chunk];
        let mut sent = 0;
        while sent < total {
            let framed = [
                format!("{chunk:x}\r\n").into_bytes(),
                piece.clone(),
                b"\r\n".to_vec(),
            ]
            .concat();
            if write.write_all(&framed).await.is_err() {
                break;
            }
            sent += chunk;
            tokio::time::sleep(every).await;
        }
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let answered = tokio::time::timeout(common::PATIENCE, async {
        while !seen.windows(2).any(|w| w == b"\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        answered.is_ok(),
        "{path}: no answer while the body was still coming"
    );
    String::from_utf8_lossy(&seen)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A POST whose head declares `declared` bytes, of which `sent` are written (a failed write
/// ignored: the server may have answered already); the status it answered.
async fn sized_body(app: &App, path: &str, declared: usize, sent: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = app.tcp[0].strip_prefix("http://").unwrap().to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(&vec![b'a'; sent]).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(common::PATIENCE, async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `streams` requests on one HTTP/2 connection, each sending a 2 MB body slowly: statuses.
async fn h2_slow_bodies(app: &App, path: &str, streams: usize) -> Vec<u16> {
    use futures::StreamExt as _;
    let authority = app.tcp[0].strip_prefix("http://").unwrap().to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let requests = (0..streams).map(|_| {
        let mut sender = sender.clone();
        let url = format!("http://{authority}{path}");
        async move {
            let pieces = Box::pin(futures::stream::iter(0..32).then(|_| async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(
                    vec![b'a'; 64 * 1024],
                )))
            }));
            let request = http::Request::post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(http_body_util::StreamBody::new(pieces))
                .unwrap();
            match sender.send_request(request).await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            }
        }
    });
    futures::future::join_all(requests).await
}

/// Bodies sent to the OAuth endpoints without a key: 200 slow 2 MB bodies over HTTP/1.1,
/// 200 streams of one HTTP/2 connection, a byte every 0.2 s. Each is cut off small, in
/// time, a few at once; memory stays low and the owner is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_bodies_are_small_read_in_time_and_few_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), "", &["--header-timeout", "2s"]);
    let (_, before) = common::rss_mib(app.pid());
    // Refused as soon as the head says too much, or once 8 KiB have come: read by hand, since
    // the server may answer (and close) while a client is still writing the rest.
    assert_eq!(
        sized_body(&app, "/oauth/register", 3 * 1024 * 1024, 0).await,
        413
    );
    assert_eq!(
        sized_body(&app, "/oauth/token", 9 * 1024, 9 * 1024).await,
        413
    );
    let slow_h1 = futures::future::join_all((0..200).map(|i| {
        let path = [
            "/oauth/token",
            "/oauth/register",
            "/oauth/authorize",
            "/oauth/revoke",
        ][i % 4];
        slow_chunked(
            &app,
            path,
            64 * 1024,
            2_000_000,
            std::time::Duration::from_millis(50),
        )
    }));
    let slow_h2 = h2_slow_bodies(&app, "/oauth/token", 200);
    let owner = async {
        let client = common::mcp_client(&app.url("/mcp"), KEY, common::Via::Bearer).await;
        common::exercise(&client).await;
    };
    let (h1, h2, ()) = tokio::join!(slow_h1, slow_h2, owner);
    for (what, statuses) in [("HTTP/1.1", &h1), ("HTTP/2", &h2)] {
        assert!(
            statuses.iter().all(|s| [413, 429, 503].contains(s)),
            "{what}: {statuses:?}"
        );
    }
    let trickle = slow_chunked(
        &app,
        "/oauth/token",
        1,
        100,
        std::time::Duration::from_millis(200),
    );
    assert_eq!(trickle.await, 408);
    let (_, peak) = common::rss_mib(app.pid());
    eprintln!(
        "OAuth bodies: peak RSS {peak} MiB (idle {before} MiB); HTTP/1.1 {h1:?}; HTTP/2 {h2:?}"
    );
    assert!(
        peak < before.max(16) + 48,
        "peak RSS {peak} MiB (was {before} MiB)"
    );
}

/// Wrong passphrases at once: from one address no more are checked than
/// `--max-key-failures` (they are counted before argon2 runs); from 128 addresses, argon2's
/// memory stays bounded; the right one still opens the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passphrases_are_counted_first_and_checked_few_at_once() {
    const PHRASE: &str = "correct horse battery staple";
    let dir = tempfile::tempdir().unwrap();
    let hashed = hash_passphrase(dir.path(), &format!("{PHRASE}\n"));
    assert!(hashed.status.success());
    let file = dir.path().join("passphrase");
    std::fs::write(&file, &hashed.stdout).unwrap();
    let app = start(
        dir.path(),
        "",
        &[
            "--oauth-passphrase-file",
            file.to_str().unwrap(),
            "--max-key-failures",
            "10",
        ],
    );
    let flow = Flow::new(&app);
    let client_id = flow.client_id().await;
    let (_, challenge) = pkce();
    let (status, csrf, cookie, _) = flow
        .open(&flow.authorize_url(&flow.params(&client_id, &challenge)))
        .await;
    assert_eq!(status, 200);
    let (_, before) = common::rss_mib(app.pid());
    // Each client is built before the burst: building one takes long on a loaded machine,
    // and 128 built inside the burst held connections silent past --header-timeout.
    let answer = |client: reqwest::Client, secret: &'static str| {
        let (csrf, cookie, url) = (csrf.clone(), cookie.clone(), app.url("/oauth/authorize"));
        async move {
            client
                .post(url)
                .header("cookie", cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("secret", secret),
                    ("decision", "allow"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let here: Vec<reqwest::Client> = (0..64).map(|_| common::client_from("127.0.0.1")).collect();
    let one_address = futures::future::join_all(
        here.into_iter()
            .map(|client| answer(client, "wrong passphrase 1")),
    )
    .await;
    let checked = one_address.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 10 && one_address.iter().all(|s| [401, 429, 503].contains(s)),
        "{checked} checked: {one_address:?}"
    );
    let clients: Vec<reqwest::Client> = (1..=128)
        .map(|i| common::client_from(&format!("127.0.4.{i}")))
        .collect();
    let many = futures::future::join_all(
        clients
            .into_iter()
            .map(|client| answer(client, "wrong passphrase 2")),
    )
    .await;
    assert!(many.iter().all(|s| [401, 503].contains(s)), "{many:?}");
    let (_, peak) = common::rss_mib(app.pid());
    eprintln!(
        "passphrases: one address {checked} checked of 64; 128 addresses {} checked, {} busy; \
         peak RSS {peak} MiB (idle {before} MiB)",
        many.iter().filter(|s| **s == 401).count(),
        many.iter().filter(|s| **s == 503).count()
    );
    assert!(
        peak < before.max(16) + 96,
        "peak RSS {peak} MiB (was {before} MiB)"
    );
    // The owner, from an address of its own, once the checks are free.
    common::eventually("the passphrase to be checked", || async {
        answer(common::client_from("127.0.5.1"), PHRASE).await == 303
    })
    .await;
}

/// While one address registers 300 clients and opens 100 consent pages, a person signing
/// in from another finishes: its client is not evicted between consent and token, its
/// page stays open; the flood is cut off early and writes little.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_and_consent_flood_does_not_block_a_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let app = oauth_spawn(dir.path(), free_port(), "")
        .env("RUST_LOG", "info")
        .start();
    let person = Flow::new(&app);
    let client_id = person.client_id().await;
    let (verifier, challenge) = pkce();
    let code = person.consent(&client_id, &challenge, KEY).await["code"].clone();
    let (_, second_challenge) = pkce();
    let (status, csrf, cookie, _) = person
        .open(&person.authorize_url(&person.params(&client_id, &second_challenge)))
        .await;
    assert_eq!(status, 200);

    let written = common::written_bytes(app.pid());
    let flood = Flow {
        app: &app,
        http: common::client_from("127.0.6.6"),
    };
    let name = "x".repeat(1000);
    let mut registered = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let response = flood
            .register(serde_json::json!({"redirect_uris": [CALLBACK], "client_name": name}))
            .await;
        match response.status().as_u16() {
            201 => registered.push(response.json::<serde_json::Value>().await.unwrap()),
            429 => refused += 1,
            other => panic!("registration answered {other}"),
        }
    }
    assert!(
        !registered.is_empty() && refused >= 250,
        "{} registered",
        registered.len()
    );
    let theirs = registered[0]["client_id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        let (status, ..) = flood
            .open(&flood.authorize_url(&flood.params(&theirs, &challenge)))
            .await;
        assert_eq!(status, 200);
    }
    let flood_wrote = common::written_bytes(app.pid()) - written;
    eprintln!(
        "flood: {} registered, {refused} refused, 100 consent pages; {flood_wrote} bytes written",
        registered.len()
    );
    assert!(
        flood_wrote < 10_000_000,
        "the flood wrote {flood_wrote} bytes"
    );

    let (status, tokens) = person.exchange(&client_id, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let answered = person.answer(&csrf, &cookie, KEY, "allow").await;
    assert_eq!(answered.status(), 303);
    // A registration far larger than ChatGPT's or Claude's is refused.
    let big = person
        .register(serde_json::json!({"redirect_uris": [CALLBACK], "client_name": "y".repeat(5000)}))
        .await;
    assert_eq!(big.status(), 400);
}

/// Almost right is refused: a PKCE challenge outside base64url, a loopback redirect URI
/// whose port is no port; and a client name with bidi controls is shown as what it is.
#[tokio::test]
async fn almost_right_requests_are_refused_and_bidi_names_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), "", &[]);
    let flow = Flow::new(&app);
    let bad_port = flow
        .register(serde_json::json!({"redirect_uris": ["http://127.0.0.1:99999/cb"]}))
        .await;
    assert_eq!(bad_port.status(), 400);
    let named = flow
        .register(serde_json::json!({
            "redirect_uris": [CALLBACK],
            "client_name": "Claude\u{202E}moc.evil\u{2066}"
        }))
        .await;
    assert_eq!(named.status(), 201);
    let client_id = named.json::<serde_json::Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for challenge in [
        format!("{}=", "a".repeat(42)),
        format!("{}+/", "a".repeat(41)),
    ] {
        let response = flow
            .http
            .get(flow.authorize_url(&flow.params(&client_id, &challenge)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{challenge}");
        assert_eq!(redirect_params(&response)["error"], "invalid_request");
    }
    let (_, challenge) = pkce();
    let (status, _, _, page) = flow
        .open(&flow.authorize_url(&flow.params(&client_id, &challenge)))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("Claude[U+202E]moc.evil[U+2066]"), "{page}");
    assert!(!page.contains('\u{202E}') && !page.contains('\u{2066}'));
}

/// Signs in to the console with the key; the session cookie and the page at `path`.
async fn console_page(app: &App, cookie: Option<&str>, path: &str) -> (String, String) {
    let http = client();
    let cookie = match cookie {
        Some(cookie) => cookie.to_owned(),
        None => {
            let signed_in = http
                .post(app.url("/console/sign-in"))
                .form(&[("secret", KEY)])
                .send()
                .await
                .unwrap();
            assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
            let set = signed_in.headers()["set-cookie"].to_str().unwrap();
            set.split(';').next().unwrap().to_owned()
        }
    };
    let page = http
        .get(app.url(path))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    (cookie, page.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_an_oauth_connection_step_by_step_and_revokes_its_grant() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("python-client.json");
    let app = start(dir.path(), "", &[]);
    let url = app.url("/mcp");
    let seen = tokio::task::block_in_place(|| python_client(&url, &store, &[], &[]));
    assert_eq!(seen["text"][0], "Hello OAuth!");
    let access = stored(&store)["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (cookie, page) = console_page(&app, None, "/console/clients").await;
    let card = page
        .split("<section class=\"client\">")
        .find(|card| card.contains("/oauth/token"))
        .unwrap_or_else(|| panic!("no client with a token step: {page}"));
    // The connection, in order: the 401, discovery, registration, consent, token, then MCP.
    let mut at = 0;
    for step in [
        "POST /mcp</td><td></td><td class=\"error\">401",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
        "POST /oauth/register",
        "/oauth/authorize",
        "POST /oauth/token",
        "<td>initialize</td><td class=\"ok\">200",
    ] {
        let found = card[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step} after {at}: {card}"));
        at += found + step.len();
    }
    assert!(card.contains("authenticated by oauth"), "{card}");
    // The call that followed is counted, not a step: the calls view has it.
    assert!(!card.contains("<td>tools/call</td>"), "{card}");
    assert!(
        page.contains("Python SDK test client"),
        "the grant is listed: {page}"
    );
    assert!(
        !page.contains(&access) && !page.contains(KEY),
        "no secret on the page"
    );

    // Revoked from the console: the token is refused at once.
    let csrf = page
        .split_once("name=\"csrf\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(csrf, _)| csrf.to_owned())
        .unwrap();
    let client_id = page
        .split_once("name=\"client\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(id, _)| id.to_owned())
        .unwrap();
    let revoked = client()
        .post(app.url("/console/revoke"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("client", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(call_with(&app, "/mcp", &access).await, 401);
    let (_, page) = console_page(&app, Some(&cookie), "/console/clients").await;
    assert!(page.contains("No client holds a grant"), "{page}");
    assert_nothing_secret_logged(&app, &[&access]);
}

/// RFC 7592's DELETE: only the token a registration was answered with removes it, and a
/// refusal — a wrong token, none, another client's id — writes nothing and says nothing more.
#[tokio::test]
async fn a_registration_is_deleted_only_with_its_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), "", &[]);
    let flow = Flow::new(&app);
    let store = dir.path().join("state/oauth.json");
    let mut made = Vec::new();
    for _ in 0..2 {
        let answer = flow
            .register(serde_json::json!({"redirect_uris": [CALLBACK]}))
            .await;
        assert_eq!(answer.status(), 201);
        made.push(answer.json::<serde_json::Value>().await.unwrap());
    }
    let (mine, other) = (&made[0], &made[1]);
    let token = mine["registration_access_token"].as_str().unwrap();
    assert!(token.starts_with("lkrg_"), "{mine}");
    let uri = mine["registration_client_uri"].as_str().unwrap();
    assert_eq!(
        uri,
        app.url(&format!(
            "/oauth/register?client_id={}",
            mine["client_id"].as_str().unwrap()
        ))
    );
    let other_uri = other["registration_client_uri"].as_str().unwrap();
    let delete = |url: &str, token: Option<&str>| {
        let mut request = flow.http.delete(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    // A save replaces the file (a new inode), so a write on refusal cannot hide in one
    // clock tick of the modification time.
    let identity = || {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(&store).unwrap();
        (
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            std::fs::read_to_string(&store).unwrap(),
        )
    };
    let before = identity();
    let stored_before = before.3.clone();
    assert!(
        !stored_before.contains(token),
        "only the token's hash is kept"
    );
    let no_id = app.url("/oauth/register");
    for (url, sent) in [
        (no_id.as_str(), Some(token)),
        (uri, None),
        (uri, Some("lkrg_not-the-token")),
        (other_uri, Some(token)),
        (uri, Some(KEY)),
    ] {
        let refused = delete(url, sent).await.unwrap();
        assert_eq!(refused.status(), 401, "{sent:?}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
    }
    assert!(identity() == before, "a refusal wrote oauth.json");
    assert_eq!(stored(&store)["clients"].as_array().unwrap().len(), 2);

    assert_eq!(delete(uri, Some(token)).await.unwrap().status(), 204);
    let clients = stored(&store)["clients"].clone();
    assert_eq!(clients.as_array().unwrap().len(), 1, "{clients}");
    assert_eq!(clients[0]["id"], other["client_id"]);
    assert_eq!(
        delete(uri, Some(token)).await.unwrap().status(),
        401,
        "gone"
    );
    assert_nothing_secret_logged(&app, &[token]);
}
