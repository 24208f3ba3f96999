//! Who gets in: keys in each place, wrong and missing keys, digests, several keys, and the
//! routes that need no key.

mod common;

use common::{App, KEY, OTHER_KEY, Spawn, call_hello, http, mcp_post};
use reqwest::StatusCode;

async fn assert_401(response: reqwest::Response, problem: &str, sent: Option<&str>) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"latchkey\""
    );
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "invalid_token");
    let description = json["error_description"].as_str().unwrap();
    assert!(description.contains(problem), "{description}");
    for way in ["Authorization: Bearer", "X-API-Key", "api_key"] {
        assert!(
            description.contains(way),
            "{description} does not name {way}"
        );
    }
    if let Some(sent) = sent {
        assert!(!body.contains(sent), "the 401 echoes what was sent");
    }
}

async fn hello_ok(response: reqwest::Response) {
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Hello you!"), "{body}");
}

#[tokio::test]
async fn each_way_of_sending_the_key_is_accepted() {
    let app = App::start(Spawn::default());
    let client = http();
    let mcp = app.url("/mcp");
    let encoded = KEY.replace('-', "%2D");
    let body = call_hello("you");
    let requests = [
        mcp_post(&client, &format!("{mcp}?api_key={KEY}"), &body),
        mcp_post(&client, &mcp, &body).bearer_auth(KEY),
        mcp_post(&client, &mcp, &body).header("authorization", format!("bearer {KEY}")),
        mcp_post(&client, &mcp, &body).header("x-api-key", KEY),
        // Percent-encoded in the query, and with other parameters around it.
        mcp_post(&client, &format!("{mcp}?x=1&api_key={encoded}&y=2"), &body),
        // A trailing slash on the MCP path works too.
        mcp_post(&client, &format!("{mcp}/"), &body).bearer_auth(KEY),
    ];
    for request in requests {
        hello_ok(request.send().await.unwrap()).await;
    }
}

#[tokio::test]
async fn missing_wrong_and_malformed_keys_get_401() {
    let app = App::start(Spawn::default());
    let client = http();
    let mcp = app.url("/mcp");
    let body = call_hello("you");
    let wrong = "lk-wrong-key-000000000000000000000000000000000";
    let prefix = &KEY[..KEY.len() - 1];
    let cases = [
        (mcp_post(&client, &mcp, &body), "No API key was sent", None),
        (
            mcp_post(&client, &format!("{mcp}?api_key={wrong}"), &body),
            "not valid",
            Some(wrong),
        ),
        (
            mcp_post(&client, &mcp, &body).bearer_auth(wrong),
            "not valid",
            Some(wrong),
        ),
        (
            mcp_post(&client, &mcp, &body).header("x-api-key", wrong),
            "not valid",
            Some(wrong),
        ),
        // A prefix of the key, the key with a character more, an empty key, another scheme.
        (
            mcp_post(&client, &mcp, &body).bearer_auth(prefix),
            "not valid",
            None,
        ),
        (
            mcp_post(&client, &mcp, &body).bearer_auth(format!("{KEY}x")),
            "not valid",
            None,
        ),
        (
            mcp_post(&client, &format!("{mcp}?api_key="), &body),
            "not valid",
            None,
        ),
        (
            mcp_post(&client, &mcp, &body).basic_auth("user", Some(KEY)),
            "No API key was sent",
            None,
        ),
    ];
    for (request, problem, sent) in cases {
        assert_401(request.send().await.unwrap(), problem, sent).await;
    }
    // Any other path needs the key too, and then is a JSON 404.
    assert_401(
        client.get(app.url("/anything")).send().await.unwrap(),
        "No API key",
        None,
    )
    .await;
    let response = client
        .get(app.url("/anything"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn several_keys_and_sha256_digests() {
    let digest = common::keygen_digest(OTHER_KEY);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let third = "lk-third-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let app = App::start(Spawn::default().args(&["--api-key", &format!("{third},{digest}")]));
    let client = http();
    let mcp = app.url("/mcp");
    for key in [KEY, OTHER_KEY, third] {
        hello_ok(
            mcp_post(&client, &mcp, &call_hello("you"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    // The digest itself is not a key.
    assert_401(
        mcp_post(&client, &mcp, &call_hello("you"))
            .bearer_auth(&digest)
            .send()
            .await
            .unwrap(),
        "not valid",
        None,
    )
    .await;
    // A digest that does not match.
    let wrong_digest = format!("sha256:{}", "0".repeat(64));
    let only_digest = App::start(
        Spawn::default()
            .no_default_key()
            .args(&["--api-key", &wrong_digest]),
    );
    assert_401(
        mcp_post(&client, &only_digest.url("/mcp"), &call_hello("you"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap(),
        "not valid",
        None,
    )
    .await;
}

#[tokio::test]
async fn healthz_and_well_known_need_no_key() {
    let app = App::start(Spawn::default().args(&["--base-path", "/mcptest"]));
    let client = http();
    for path in ["/healthz", "/mcptest/healthz"] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource/mcptest/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/mcptest/.well-known/oauth-protected-resource",
        "/mcptest/.well-known/openid-configuration",
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "GET {path}"
        );
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "not_found");
        let response = client.head(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "HEAD {path}");
        assert!(
            response.text().await.unwrap().is_empty(),
            "HEAD {path} has a body"
        );
    }
}

#[tokio::test]
async fn base_path_moves_the_mcp_endpoint() {
    let app = App::start(Spawn::default().args(&["--base-path", "/mcptest"]));
    let client = http();
    hello_ok(
        mcp_post(&client, &app.url("/mcptest/mcp"), &call_hello("you"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let response = mcp_post(&client, &app.url("/mcp"), &call_hello("you"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn foreign_host_and_origin_get_403() {
    let app = App::start(Spawn::default().args(&["--public-url", "https://mcp.example.com/x"]));
    let client = http();
    let mcp = app.url("/mcp");
    let send = |host: Option<&str>, origin: Option<&str>| {
        let mut request = mcp_post(&client, &mcp, &call_hello("you")).bearer_auth(KEY);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    // Allowed: loopback, the public URL's host (as Apache with ProxyPreserveHost sends it),
    // the hosted clients' origins and the public URL's origin.
    hello_ok(send(None, None).await.unwrap()).await;
    hello_ok(send(Some("localhost"), None).await.unwrap()).await;
    hello_ok(send(Some("mcp.example.com"), None).await.unwrap()).await;
    for origin in [
        "https://chatgpt.com",
        "https://chat.openai.com",
        "https://claude.ai",
        "https://claude.com",
        "https://mcp.example.com",
    ] {
        hello_ok(send(None, Some(origin)).await.unwrap()).await;
    }
    for (host, origin) in [
        (Some("evil.example"), None),
        (Some("mcp.example.com.evil.example"), None),
        (None, Some("https://evil.example")),
        (None, Some("http://chatgpt.com")),
        (None, Some("null")),
    ] {
        let response = send(host, origin).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{host:?} {origin:?}"
        );
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "forbidden");
    }
    // The guard stands before the key check: a foreign Host is refused even with no key.
    let response = client
        .get(app.url("/mcp"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // healthz stays reachable for health checks under any name.
    let response = client
        .get(app.url("/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let custom = App::start(Spawn::default().args(&[
        "--allowed-host",
        "*",
        "--allowed-origin",
        "http://localhost:*",
    ]));
    let response = mcp_post(&client, &custom.url("/mcp"), &call_hello("you"))
        .bearer_auth(KEY)
        .header("host", "anything.example")
        .header("origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    hello_ok(response).await;
    let response = mcp_post(&client, &custom.url("/mcp"), &call_hello("you"))
        .bearer_auth(KEY)
        .header("origin", "https://chatgpt.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "an explicit list replaces the default"
    );
}

#[tokio::test]
async fn pages_of_the_host_itself_and_local_pages_work_with_a_key() {
    let app = App::start(Spawn::default());
    let client = http();
    let mcp = app.url("/mcp");
    let port = mcp.split(':').nth(2).unwrap().split('/').next().unwrap();
    let send = |host: String, origin: &str| {
        mcp_post(&client, &mcp, &call_hello("you"))
            .bearer_auth(KEY)
            .header("host", host)
            .header("origin", origin)
            .send()
    };
    for (host, origin) in [
        // The same origin: a page served by this host.
        (
            format!("localhost:{port}"),
            format!("http://localhost:{port}"),
        ),
        (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
        ),
        // Loopback pages talking to a loopback listener (the MCP Inspector, a dev server).
        (
            format!("localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
        ),
        (
            format!("127.0.0.1:{port}"),
            "http://localhost:6274".to_owned(),
        ),
        (format!("[::1]:{port}"), "http://[::1]:5173".to_owned()),
    ] {
        let response = send(host.clone(), &origin).await.unwrap();
        assert_eq!(
            response.headers().get("access-control-allow-origin"),
            Some(&origin.parse().unwrap()),
            "{host} {origin}"
        );
        let exposed = response.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(exposed.contains("mcp-session-id"), "{exposed}");
        hello_ok(response).await;
    }
    // Rebinding attempts stay out: a foreign name in Host, or a foreign page's Origin.
    for (host, origin) in [
        ("evil.example".to_owned(), "http://evil.example".to_owned()),
        (
            format!("evil.example:{port}"),
            format!("http://evil.example:{port}"),
        ),
        (
            format!("localhost:{port}"),
            "https://evil.example".to_owned(),
        ),
        (
            format!("localhost:{port}"),
            "http://localhost.evil.example".to_owned(),
        ),
    ] {
        let response = send(host.clone(), &origin).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host} {origin}");
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
    }
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let app = App::start(Spawn::default().args(&["--base-path", "/b"]));
    let client = http();
    let preflight = |path: &str, origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, mcp-protocol-version",
            )
            .send()
    };
    // No key is sent with a preflight, and none is asked for.
    for origin in ["http://localhost:6274", "https://chatgpt.com"] {
        let response = preflight("/b/mcp", origin).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{origin}");
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], origin);
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        for method in ["GET", "POST", "DELETE"] {
            assert!(methods.contains(method), "{methods}");
        }
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        for name in [
            "authorization",
            "x-api-key",
            "content-type",
            "accept",
            "mcp-session-id",
            "mcp-protocol-version",
            "mcp-method",
            "mcp-name",
            "last-event-id",
        ] {
            assert!(allowed.split(", ").any(|h| h == name), "{name}: {allowed}");
        }
    }
    // OAuth discovery documents can be fetched from a page too.
    let response = preflight(
        "/.well-known/oauth-protected-resource/b/mcp",
        "https://claude.ai",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // An origin not allowed gets the guard's 403 and nothing else.
    let response = preflight("/b/mcp", "https://evil.example").await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // A preflight is no way around the key: the request it announces still needs one, and
    // its 401 is readable by the allowed page (to learn how to authenticate).
    let response = mcp_post(&client, &app.url("/b/mcp"), &call_hello("x"))
        .header("origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    assert_401(response, "No API key was sent", None).await;
    // A preflight to a path latchkey does not serve is not answered as one.
    let response = preflight("/b/elsewhere", "http://localhost:6274")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Only a path segment that could be a key is taken as one: `/mcp/sse` (old SSE clients,
/// scanners) is no guess and never locks anyone out.
#[tokio::test]
async fn keyless_probes_under_mcp_are_not_guesses() {
    let app = App::start(Spawn::default().args(&["--max-key-failures", "3"]));
    for _ in 0..10 {
        let probe = http().get(app.url("/mcp/sse")).send().await.unwrap();
        assert_eq!(probe.status(), StatusCode::UNAUTHORIZED);
    }
    let response = mcp_post(&http(), &app.url("/mcp"), &call_hello("you"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    hello_ok(response).await;
    // A segment the length of a key is a guess like any other.
    for _ in 0..3 {
        let guess = mcp_post(
            &http(),
            &app.url(&format!("/mcp/{OTHER_KEY}")),
            &call_hello("x"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(guess.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = mcp_post(&http(), &app.url("/mcp"), &call_hello("x"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// A request with several different keys (150 `api_key` values were one guess) is refused
/// with 400 and counts as a failure; the same key twice is still one key.
#[tokio::test]
async fn several_different_credentials_are_refused_and_counted() {
    let app = App::start(Spawn::default().args(&["--max-key-failures", "2"]));
    let mcp = app.url("/mcp");
    let many: String = (0..150)
        .map(|i| format!("api_key=lk-guess-{i:040}"))
        .collect::<Vec<_>>()
        .join("&");
    let same_twice = mcp_post(&http(), &format!("{mcp}?api_key={KEY}"), &call_hello("you"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    hello_ok(same_twice).await;
    for request in [
        mcp_post(&http(), &format!("{mcp}?{many}"), &call_hello("x")),
        mcp_post(&http(), &format!("{mcp}?api_key={KEY}"), &call_hello("x")).bearer_auth(OTHER_KEY),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
    let locked = mcp_post(&http(), &mcp, &call_hello("x"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
}
