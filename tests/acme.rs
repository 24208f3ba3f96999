//! ACME end to end against a real ACME server: Debian's Pebble, with pebble-challtestsrv
//! answering DNS with 127.0.0.1. Orders with TLS-ALPN-01 and HTTP-01, the cache across a
//! restart, renewal under load, and an unreachable directory.
//!
//! Pebble validates on fixed ports (its `tlsPort`/`httpPort`), so each test gives Pebble the
//! port latchkey will listen on.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{KEY, Spawn, Via, free_port};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const DOMAIN: &str = "mcp.example.com";

/// Pebble's API certificate, from a CA made here (Debian ships none); returns the CA's path.
fn write_api_certificate(dir: &Path) -> PathBuf {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "pebble API CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let api_ca = dir.join("api-ca.pem");
    std::fs::write(&api_ca, ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    api_ca
}

/// The ports Pebble and pebble-challtestsrv listen on themselves.
struct PebblePorts {
    api: u16,
    management: u16,
    dns: u16,
    dns_management: u16,
}

impl PebblePorts {
    fn pick() -> PebblePorts {
        PebblePorts {
            api: free_port(),
            management: free_port(),
            dns: free_port(),
            dns_management: free_port(),
        }
    }

    /// Starts pebble-challtestsrv and Pebble, their output in files of `dir`.
    fn launch(
        &self,
        dir: &Path,
        tls_port: u16,
        http_port: u16,
        validity: Option<u64>,
    ) -> Vec<Child> {
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{}", self.api),
            "managementListenAddress": format!("127.0.0.1:{}", self.management),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(seconds) = validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();

        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{}", self.dns)])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", self.dns_management)])
            .args(["-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv runs (Debian package pebble)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble runs (Debian package pebble)");
        vec![challtestsrv, pebble]
    }
}

/// Pebble and its DNS, for one test.
struct Pebble {
    dir: tempfile::TempDir,
    processes: Vec<Child>,
    directory: String,
    /// Trust for Pebble's own HTTPS (the ACME API).
    api_ca: PathBuf,
    /// The root that signs the certificates Pebble issues.
    issuing_root: String,
}

impl Pebble {
    /// `tls_port`/`http_port`: where Pebble validates; `validity`: certificate lifetime.
    ///
    /// Pebble's own four ports come from `free_port`, which another test's connection can take
    /// before Pebble binds it (seen once in CI: Pebble's management port up, its ACME port never);
    /// then Pebble exits, and it is started again on fresh ports.
    fn start(tls_port: u16, http_port: u16, validity: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let api_ca = write_api_certificate(dir.path());
        let mut pebble = Pebble {
            dir,
            processes: Vec::new(),
            directory: String::new(),
            api_ca,
            issuing_root: String::new(),
        };
        let mut failures = Vec::new();
        for _ in 0..3 {
            let ports = PebblePorts::pick();
            pebble.processes = ports.launch(pebble.dir.path(), tls_port, http_port, validity);
            pebble.directory = format!("https://127.0.0.1:{}/dir", ports.api);
            match pebble.wait_until_listening(&ports) {
                Ok(()) => {
                    let roots = format!("https://127.0.0.1:{}/roots/0", ports.management);
                    pebble.issuing_root = pebble.fetch(&roots);
                    return pebble;
                }
                Err(failure) => failures.push(failure),
            }
            pebble.stop();
        }
        panic!("Pebble did not start, 3 times:\n{}", failures.join("\n"));
    }

    /// Until Pebble and its DNS listen on every port; an error with their output when one
    /// of them exits first.
    fn wait_until_listening(&mut self, ports: &PebblePorts) -> Result<(), String> {
        let listening = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let mut exited = None;
        common::wait_for("Pebble to listen on its ports", || {
            exited = self
                .processes
                .iter_mut()
                .find_map(|process| process.try_wait().unwrap());
            exited.is_some()
                || [ports.dns_management, ports.management, ports.api]
                    .into_iter()
                    .all(listening)
        });
        match exited {
            None => Ok(()),
            Some(status) => Err(format!(
                "a Pebble process exited ({status}):\n{}",
                self.logs()
            )),
        }
    }

    /// What Pebble and its DNS have printed so far.
    fn logs(&self) -> String {
        [
            "challtestsrv.log",
            "challtestsrv.err",
            "pebble.log",
            "pebble.err",
        ]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            format!("--- {name}\n{text}")
        })
        .collect()
    }

    /// A GET with the blocking client, on its own thread (the tests run in a runtime).
    fn fetch(&self, url: &str) -> String {
        let ca = std::fs::read(&self.api_ca).unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let client = reqwest::blocking::Client::builder()
                        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
                        .build()
                        .unwrap();
                    let response = client.get(url).send().unwrap();
                    assert!(response.status().is_success(), "{url}");
                    response.text().unwrap()
                })
                .join()
                .unwrap()
        })
    }

    /// Orders Pebble has taken so far.
    fn orders(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap()
            .matches("Added order")
            .count()
    }

    /// latchkey's ACME flags for this Pebble, with the cache in `cache`.
    fn args(&self, cache: &Path) -> Vec<String> {
        [
            "--acme-domain",
            DOMAIN,
            "--acme-contact",
            "mailto:test@example.com",
            "--acme-cache",
            cache.to_str().unwrap(),
            "--acme-directory",
            &self.directory,
            "--acme-ca-root",
            self.api_ca.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// An HTTPS client that trusts only Pebble's issuing root and finds DOMAIN on 127.0.0.1.
    fn client(&self, port: u16) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.issuing_root.as_bytes()).unwrap()])
            .resolve(DOMAIN, ([127, 0, 0, 1], port).into())
            .build()
            .unwrap()
    }

    /// The certificate latchkey presents to a new connection, as DER.
    async fn served_certificate(&self, port: u16) -> Vec<u8> {
        let roots = CertificateDer::pem_slice_iter(self.issuing_root.as_bytes())
            .map(Result::unwrap)
            .collect();
        let tls = common::tls_connect(&format!("127.0.0.1:{port}"), DOMAIN, roots).await;
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }
}

impl Pebble {
    /// Takes the ACME server away.
    fn stop(&mut self) {
        for process in &mut self.processes {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(args: &[String]) -> Spawn {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Spawn::default().args(&args)
}

async fn call_hello_over_https(pebble: &Pebble, port: u16) {
    let url = format!("https://{DOMAIN}:{port}/mcp");
    let client = common::mcp_client_with(pebble.client(port), &url, KEY, Via::Bearer).await;
    common::exercise(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_alpn_01_certificate_is_ordered_then_reused_from_the_cache() {
    let port = free_port();
    let pebble = Pebble::start(port, free_port(), None);
    let cache = tempfile::tempdir().unwrap();
    let mut args = pebble.args(cache.path());
    args.extend(["--tls-listen".to_owned(), format!("127.0.0.1:{port}")]);

    let started = Instant::now();
    let mut app = spawn(&args).start();
    app.wait_for_output("ACME: new certificate for mcp.example.com in service");
    let ordered_in = started.elapsed();
    assert!(app.output().contains("answering a TLS-ALPN-01 validation"));
    call_hello_over_https(&pebble, port).await;
    let response = pebble
        .client(port)
        .get(format!("https://{DOMAIN}:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000",
        "HSTS is on by default with ACME"
    );
    assert_eq!(pebble.orders(), 1);
    let first = pebble.served_certificate(port).await;

    // Restarted on the same cache: the certificate comes from it, and no order is placed.
    app.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(app.wait().success());
    let app = spawn(&args).start();
    app.wait_for_output("ACME: serving the cached certificate for mcp.example.com");
    call_hello_over_https(&pebble, port).await;
    assert_eq!(pebble.served_certificate(port).await, first);
    assert_eq!(pebble.orders(), 1, "no new order after the restart");
    assert!(!app.output().contains("new certificate"));
    println!("ordered and in service in {ordered_in:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_01_through_the_redirect_listener() {
    let (port, http_port) = (free_port(), free_port());
    let pebble = Pebble::start(free_port(), http_port, None);
    let cache = tempfile::tempdir().unwrap();
    let mut args = pebble.args(cache.path());
    args.extend(
        [
            "--tls-listen",
            &format!("127.0.0.1:{port}"),
            "--redirect-listen",
            &format!("127.0.0.1:{http_port}"),
            "--acme-challenge",
            "http-01",
        ]
        .map(str::to_owned),
    );
    let app = spawn(&args).start();
    app.wait_for_output("ACME: new certificate for mcp.example.com in service");
    assert!(app.output().contains("answering an HTTP-01 validation"));
    call_hello_over_https(&pebble, port).await;
    assert_eq!(pebble.orders(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_happens_while_calls_keep_succeeding() {
    let port = free_port();
    // 20-second certificates: rustls-acme renews when a third of the lifetime is left.
    let mut pebble = Pebble::start(port, free_port(), Some(20));
    let cache = tempfile::tempdir().unwrap();
    let mut args = pebble.args(cache.path());
    args.extend(["--tls-listen".to_owned(), format!("127.0.0.1:{port}")]);
    let app = spawn(&args).start();
    app.wait_for_output("ACME: new certificate for mcp.example.com in service");
    let first = pebble.served_certificate(port).await;
    let issued = Instant::now();

    let url = format!("https://{DOMAIN}:{port}/mcp");
    let client = common::mcp_client_with(pebble.client(port), &url, KEY, Via::Bearer).await;
    let mut calls = 0;
    let mut fresh_connections = 0;
    while app.output().matches("new certificate for").count() < 2 {
        assert!(
            issued.elapsed() < Duration::from_secs(40),
            "no renewal:\n{}",
            app.output()
        );
        // On the long-lived client, and on a fresh connection each round.
        let result = client
            .call_tool(
                rmcp::model::CallToolRequestParams::new("hello").with_arguments(
                    serde_json::json!({"name": "renewal"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            )
            .await
            .expect("a call during renewal succeeds");
        assert_ne!(result.is_error, Some(true));
        let text = serde_json::to_string(&result.content).unwrap();
        assert!(text.contains("Hello renewal!"), "{text}");
        calls += 1;
        let status = pebble
            .client(port)
            .get(format!("https://{DOMAIN}:{port}/healthz"))
            .send()
            .await
            .expect("a new connection during renewal succeeds")
            .status();
        assert_eq!(status, 200);
        fresh_connections += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let renewed_after = issued.elapsed();
    assert_ne!(
        pebble.served_certificate(port).await,
        first,
        "the renewed certificate is served"
    );
    call_hello_over_https(&pebble, port).await;
    client.cancel().await.unwrap();
    assert_eq!(pebble.orders(), 2);

    // The ACME server goes away: the next renewal fails, and the certificate stays in service.
    pebble.stop();
    let failed = Instant::now();
    app.wait_for_output("retrying in 1s, any certificate in service stays");
    call_hello_over_https(&pebble, port).await;
    println!(
        "the next renewal failed after {:?}; still serving",
        failed.elapsed()
    );
    println!(
        "renewed {renewed_after:?} after the first certificate; {calls} calls and \
         {fresh_connections} new connections meanwhile, none failed"
    );
}

#[test]
fn unreachable_directory_is_explained_and_retried() {
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let app = Spawn::default()
        .args(&[
            "--tls-listen",
            &format!("127.0.0.1:{port}"),
            "--acme-domain",
            DOMAIN,
            "--acme-cache",
            cache.path().to_str().unwrap(),
            "--acme-directory",
            // Nothing listens on port 1.
            "https://127.0.0.1:1/dir",
        ])
        .start();
    app.wait_for_output("retrying in 2s");
    let output = app.output();
    assert!(
        output.contains("cannot reach the ACME directory https://127.0.0.1:1/dir"),
        "{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
    // Still serving plain HTTP meanwhile.
    let health = reqwest::blocking::get(app.url("/healthz")).unwrap();
    assert_eq!(health.status(), 200);
}
