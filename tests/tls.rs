//! HTTPS with certificate files: a test CA made here, a real MCP client over HTTPS, reload on
//! SIGHUP and on change while an open connection survives, the redirect listener, and bad
//! TLS configuration.

mod common;

use std::path::Path;

use common::{App, KEY, Spawn, Via};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for localhost and 127.0.0.1: (chain PEM, key PEM).
    fn leaf(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write_leaf(&self, dir: &Path) {
        let (cert, key) = self.leaf();
        // Written next to the files and renamed over them, as a deploy tool would.
        std::fs::write(dir.join("cert.pem.new"), cert).unwrap();
        std::fs::write(dir.join("key.pem.new"), key).unwrap();
        std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).unwrap();
        std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).unwrap();
    }
}

/// An HTTPS client that trusts only `cas` and finds localhost at 127.0.0.1.
fn https_client(cas: &[&Ca]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only(
            cas.iter()
                .map(|ca| reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()),
        )
        .redirect(reqwest::redirect::Policy::none());
    builder = builder.no_proxy();
    builder.build().unwrap()
}

/// `https://127.0.0.1:PORT` → `https://localhost:PORT`, the name in the certificate.
fn by_name(https: &str) -> String {
    https.replace("127.0.0.1", "localhost")
}

fn tls_spawn(dir: &Path, extra: &[&str]) -> Spawn {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    Spawn::default()
        .args(&[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .args(extra)
}

/// A raw HTTP/1.1 keep-alive connection over TLS, trusting `cas`.
struct Raw(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl Raw {
    async fn open(https: &str, cas: &[&Ca]) -> Raw {
        let roots = cas.iter().map(|ca| ca.cert.der().clone()).collect();
        let addr = https.trim_start_matches("https://");
        Raw(common::tls_connect(addr, "localhost", roots).await)
    }

    /// The certificate the server presented on this connection.
    fn peer_cert(&self) -> Vec<u8> {
        self.0.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    async fn healthz(&mut self) -> String {
        self.0
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let mut buf = [0u8; 1024];
        while !response.ends_with(b"\r\n\r\nok") {
            let n = self.0.read(&mut buf).await.expect("the connection is open");
            assert!(n > 0, "the server closed the connection");
            response.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&response).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_over_https_with_certificate_files_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new("first test CA");
    first.write_leaf(dir.path());
    let app = tls_spawn(dir.path(), &["--hsts"]).start();
    let https = by_name(&app.https[0]);
    // The plain HTTP listener beside it is said, not left to be found.
    app.wait_for_output("plain HTTP is served too, on 127.0.0.1:");

    // A real MCP client over HTTPS, trusting only the test CA.
    for how in [Via::Query, Via::Bearer] {
        let client =
            common::mcp_client_with(https_client(&[&first]), &format!("{https}/mcp"), KEY, how)
                .await;
        common::exercise(&client).await;
        client.cancel().await.unwrap();
    }
    let response = https_client(&[&first])
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN h2");

    // An HTTP/1.1 connection opened before the change.
    let second = Ca::new("second test CA");
    let mut open = Raw::open(&app.https[0], &[&first, &second]).await;
    let before = open.peer_cert();
    assert!(open.healthz().await.starts_with("HTTP/1.1 200"));

    second.write_leaf(dir.path());
    app.signal(nix::sys::signal::Signal::SIGHUP);
    app.wait_for_output("SIGHUP: TLS certificate reloaded");
    let after = Raw::open(&app.https[0], &[&first, &second]).await;
    assert_ne!(
        after.peer_cert(),
        before,
        "new connections get the new certificate"
    );
    assert!(
        https_client(&[&first])
            .get(format!("{https}/healthz"))
            .send()
            .await
            .is_err(),
        "the first CA no longer vouches for what is served"
    );
    assert!(
        open.healthz().await.starts_with("HTTP/1.1 200"),
        "the open connection survives"
    );

    // A broken file keeps the certificate in use.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    app.signal(nix::sys::signal::Signal::SIGHUP);
    app.wait_for_output("keeping the current TLS certificate");
    let client = https_client(&[&second]);
    let status = client
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    // A change is picked up without a signal.
    first.write_leaf(dir.path());
    app.wait_for_output("file change: TLS certificate reloaded");
    let status = https_client(&[&first])
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_listener_sends_to_https_without_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    ca.write_leaf(dir.path());
    let app = tls_spawn(dir.path(), &["--redirect-listen", "127.0.0.1:0"]).start();
    let tls_port = app.https[0].rsplit(':').next().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let plain = by_name(&app.redirects[0]);
    let response = http
        .get(format!("{plain}/mcp?api_key={KEY}&x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(
        response.headers()["location"],
        format!("https://localhost:{tls_port}/mcp").as_str()
    );
    // No ACME here: no challenge is pending.
    let response = http
        .get(format!("{plain}/.well-known/acme-challenge/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // HSTS is off by default with certificate files.
    let response = https_client(&[&ca])
        .get(format!("{}/healthz", by_name(&app.https[0])))
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
    assert!(!app.output().contains(KEY), "the query is not logged");
    // Both listeners log each request with the connection's peer.
    for needle in [
        r#""path":"/mcp","query":"api_key=REDACTED&x=1","status":301,"#,
        r#""path":"/healthz","status":200,"#,
    ] {
        common::wait_for(needle, || {
            app.output()
                .lines()
                .any(|l| l.contains(needle) && l.contains(r#""client":"127.0.0.1""#))
        });
    }
}

#[test]
fn bad_tls_configuration_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("test CA");
    ca.write_leaf(d);
    let (_, other_key) = ca.leaf();
    std::fs::write(d.join("other-key.pem"), other_key).unwrap();
    std::fs::write(d.join("garbage.pem"), "garbage").unwrap();
    std::fs::write(d.join("a-file"), "").unwrap();
    let path = |name: &str| d.join(name).to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--tls-listen".into(), "127.0.0.1:0".into()],
            "--tls-listen needs a certificate",
        ),
        (
            vec![
                "--tls-cert".into(),
                path("cert.pem"),
                "--tls-key".into(),
                path("key.pem"),
            ],
            "no --tls-listen",
        ),
        (
            vec![
                "--tls-listen".into(),
                "127.0.0.1:0".into(),
                "--tls-cert".into(),
                path("garbage.pem"),
                "--tls-key".into(),
                path("key.pem"),
            ],
            "no PEM certificate",
        ),
        (
            vec![
                "--tls-listen".into(),
                "127.0.0.1:0".into(),
                "--tls-cert".into(),
                path("cert.pem"),
                "--tls-key".into(),
                path("other-key.pem"),
            ],
            "do not make a usable pair",
        ),
        (
            vec![
                "--tls-listen".into(),
                "127.0.0.1:0".into(),
                "--acme-domain".into(),
                "mcp.example.com".into(),
            ],
            "ACME needs --acme-cache",
        ),
        (
            vec![
                "--tls-listen".into(),
                "127.0.0.1:0".into(),
                "--acme-domain".into(),
                "mcp.example.com".into(),
                "--acme-cache".into(),
                path("a-file/cache"),
            ],
            "cannot create the ACME cache",
        ),
        (
            vec![
                "--tls-listen".into(),
                "127.0.0.1:0".into(),
                "--acme-domain".into(),
                "mcp.example.com".into(),
                "--acme-cache".into(),
                path("cache"),
                "--acme-ca-root".into(),
                path("garbage.pem"),
            ],
            "--acme-ca-root",
        ),
        (
            vec![
                "--tls-listen".into(),
                "127.0.0.1:0".into(),
                "--acme-domain".into(),
                "mcp.example.com".into(),
                "--acme-cache".into(),
                path("cache"),
                "--acme-challenge".into(),
                "http-01".into(),
            ],
            "add --redirect-listen",
        ),
        (
            vec!["--acme-domain".into(), "https://x.example.com".into()],
            "expected a DNS name",
        ),
        (
            vec!["--acme-contact".into(), "me@example.com".into()],
            "expected mailto:",
        ),
        (
            vec!["--acme-directory".into(), "staging".into()],
            "letsencrypt-staging",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, output) = App::try_start(Spawn::default().args(&args))
            .err()
            .unwrap_or_else(|| panic!("{args:?} started"));
        assert!(!status.success(), "{args:?}");
        assert!(output.contains(expected), "{args:?}: {output}");
        assert!(!output.contains("panicked"), "{args:?}: {output}");
        let errors: Vec<&str> = output.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {output}");
    }
}
