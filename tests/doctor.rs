//! `latchkey doctor URL` against a real latchkey on loopback: over plain HTTP with the key in
//! the query, the path and a header; over HTTPS with a CA made here (a whole chain, a chain
//! without its intermediate, an expired certificate); with OAuth. Each failure provoked is
//! its failing line and a non-zero exit, and no output holds the key. Names are resolved by
//! `--resolve`, never by this machine's resolver.

mod common;

use std::path::Path;

use common::{App, KEY, Spawn};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// `latchkey doctor` with `args`, its output and whether it exited 0.
fn doctor(args: &[&str]) -> (bool, String) {
    let (code, text) = doctor_status(args);
    (code == 0, text)
}

/// `latchkey doctor` with `args`: its exit status and output ([`common::doctor`]).
fn doctor_status(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    common::doctor(dir.path(), args)
}

/// Whether a line of `text` says `status` for the check `id` and holds `seen`.
fn has(text: &str, status: &str, id: &str, seen: &str) -> bool {
    text.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some(status) && words.next() == Some(id) && line.contains(seen)
    })
}

/// `http://127.0.0.1:PORT` → the port.
fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

fn resolving(port: u16) -> String {
    format!("localhost:{port}:127.0.0.1")
}

#[test]
fn a_working_connector_passes_every_check_and_prints_no_key() {
    let app = Spawn::default().start();
    let port = port_of(&app.tcp[0]);
    let resolve = resolving(port);
    for url in [
        format!("http://localhost:{port}/mcp?api_key={KEY}"),
        format!("http://localhost:{port}/mcp/{KEY}"),
    ] {
        let (ok, text) = doctor(&[&url, "--client", "claude-code", "--resolve", &resolve]);
        assert!(ok, "{text}");
        for (id, seen) in [
            ("dns", "from --resolve"),
            ("tcp", "accepts connections"),
            ("well_known", "JSON 404 (no OAuth)"),
            ("mcp.no_key", "without the key: 401 and WWW-Authenticate"),
            ("mcp.initialize", "initialize with the key: 200"),
            (
                "server",
                concat!("latchkey ", env!("CARGO_PKG_VERSION"), ", as this doctor"),
            ),
            ("mcp.tools", "tools/list: 1 tool(s)"),
            ("mcp.stream", "GET of the event stream: 200"),
            ("mcp.bearer", "Authorization: Bearer reaches latchkey"),
            ("user_agent", "as any other"),
            ("discovery", "the well-known fetches"),
        ] {
            assert!(
                has(&text, "ok", id, seen),
                "{id}: {seen:?} missing:\n{text}"
            );
        }
        assert!(
            text.contains("claude-code can connect to this URL."),
            "{text}"
        );
        assert!(text.contains("/mcp") && text.contains("<key>"), "{text}");
    }
    // With sessions, whose answers come as event streams: read to the answer, not the end.
    let sessions = Spawn::default().args(&["--sessions"]).start();
    let port = port_of(&sessions.tcp[0]);
    let url = format!("http://localhost:{port}/mcp/{KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(port),
    ]);
    assert!(ok, "{text}");
    assert!(
        has(&text, "ok", "mcp.tools", "tools/list: 1 tool(s)"),
        "{text}"
    );
    let port = port_of(&app.tcp[0]);
    let resolve = resolving(port);
    // The header forms, the key from a file; and --json, one document.
    let key_file = app.dir.path().join("doctor-key");
    std::fs::write(&key_file, format!("{KEY} laptop\n")).unwrap();
    let url = format!("http://localhost:{port}/mcp");
    let key_file = key_file.to_str().unwrap();
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolve,
        "--key-file",
        key_file,
        "--json",
    ]);
    assert!(ok, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(report["ok"], true, "{text}");
    let initialize = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "mcp.initialize")
        .expect("initialize was checked");
    assert_eq!(initialize["status"], "pass", "{text}");
    assert!(initialize["ms"].is_u64(), "{text}");
}

/// A URL whose path is not latchkey's (a `--base-path` the URL lacks): the key is taken,
/// and latchkey's 404 says where MCP is.
#[test]
fn a_url_off_the_base_path_is_told_where_mcp_is() {
    let app = Spawn::default().args(&["--base-path", "/tools"]).start();
    let port = port_of(&app.tcp[0]);
    let url = format!("http://localhost:{port}/mcp?api_key={KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(port),
    ]);
    assert!(!ok, "{text}");
    assert!(
        has(
            &text,
            "FAIL",
            "mcp.path",
            "latchkey took the key, but serves MCP at /tools/mcp"
        ),
        "{text}"
    );
    let url = format!("http://localhost:{port}/tools/mcp?api_key={KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(port),
    ]);
    assert!(ok, "{text}");
}

#[test]
fn what_a_client_cannot_use_fails_with_its_fix() {
    let app = Spawn::default().start();
    let port = port_of(&app.tcp[0]);
    let resolve = resolving(port);
    // Plain http, another port than 443, the key in the query: Claude takes none of it.
    let url = format!("http://localhost:{port}/mcp?api_key={KEY}");
    let (ok, text) = doctor(&[&url, "--client", "claude", "--resolve", &resolve]);
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL  scheme"), "{text}");
    assert!(text.contains("FAIL  key.form"), "{text}");
    assert!(text.contains("put it in the path"), "{text}");
    assert!(text.contains("latchkey: error: "), "{text}");
    // A key latchkey does not have: refused in another form too, so not a proxy's doing.
    let wrong =
        format!("http://localhost:{port}/mcp?api_key=not-the-key-0123456789abcdefghijklmnop");
    let (code, text) = doctor_status(&[&wrong, "--client", "chatgpt", "--resolve", &resolve]);
    assert_eq!(code, 1, "{text}");
    assert!(
        has(
            &text,
            "FAIL",
            "mcp.initialize",
            "401 Unauthorized, and as a header"
        ),
        "{text}"
    );
    assert!(text.contains("latchkey does not know this key"), "{text}");
    // No key, and no OAuth to get one: nobody gets in.
    let url = format!("http://localhost:{port}/mcp");
    let (ok, text) = doctor(&[&url, "--client", "claude-code", "--resolve", &resolve]);
    assert!(!ok, "{text}");
    assert!(
        has(&text, "FAIL", "mcp.initialize", "offers no OAuth"),
        "{text}"
    );
    // Nothing listening.
    let closed = common::free_port();
    let url = format!("http://localhost:{closed}/mcp/{KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(closed),
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL  tcp"), "{text}");
    // A URL that cannot be examined: one line, and 2 (not 1: the doctor could not tell).
    let (code, text) = doctor_status(&[&format!("ftp://localhost/mcp/{KEY}")]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("scheme is ftp"), "{text}");
    let (code, text) = doctor_status(&[&format!("ftp://localhost/mcp/{KEY}"), "--json"]);
    assert_eq!(code, 2, "{text}");
    let json = text
        .lines()
        .take_while(|l| !l.starts_with("latchkey:"))
        .collect::<String>();
    let document: serde_json::Value = serde_json::from_str(&json).expect(&text);
    assert_eq!(document["ok"], false, "{text}");
    assert!(
        document["error"]
            .as_str()
            .unwrap()
            .contains("scheme is ftp"),
        "{text}"
    );
    let (code, text) = doctor_status(&["https://localhost/mcp", "--resolve", "localhost:443"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("HOST:PORT:ADDR"), "{text}");
}

/// A root CA, an intermediate it signs, and leaves the intermediate signs.
struct Chain {
    root: rcgen::Certificate,
    intermediate: rcgen::Certificate,
    intermediate_key: KeyPair,
}

impl Chain {
    fn new() -> Chain {
        let root_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "doctor test root");
        let root = params.self_signed(&root_key).unwrap();
        let intermediate_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "doctor test intermediate");
        let intermediate = params
            .signed_by(&intermediate_key, &root, &root_key)
            .unwrap();
        Chain {
            root,
            intermediate,
            intermediate_key,
        }
    }

    /// Writes a certificate for localhost to `dir` (cert.pem, key.pem), with the
    /// intermediate after it or not, and the root to root.pem.
    fn write(&self, dir: &Path, with_intermediate: bool, expired: bool) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let leaf = params
            .signed_by(&key, &self.intermediate, &self.intermediate_key)
            .unwrap();
        let mut chain = leaf.pem();
        if with_intermediate {
            chain.push_str(&self.intermediate.pem());
        }
        std::fs::write(dir.join("cert.pem"), chain).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("root.pem"), self.root.pem()).unwrap();
    }
}

/// latchkey serving https with what `chain` wrote, and its https port.
fn https_app(
    chain: &Chain,
    with_intermediate: bool,
    expired: bool,
    extra: &[&str],
) -> (App, u16, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    chain.write(certs.path(), with_intermediate, expired);
    let path = |name: &str| certs.path().join(name).to_str().unwrap().to_owned();
    let app = Spawn::default()
        .args(&[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &path("cert.pem"),
            "--tls-key",
            &path("key.pem"),
        ])
        .args(extra)
        .start();
    let port = port_of(&app.https[0]);
    (app, port, certs)
}

/// `latchkey doctor` of the https latchkey on `port` (key in the path) as `client`, trusting
/// the root in `certs` too when `with_root`.
fn doctor_https(port: u16, client: &str, certs: &Path, with_root: bool) -> (bool, String) {
    let url = format!("https://localhost:{port}/mcp/{KEY}");
    let root = certs.join("root.pem");
    let resolve = resolving(port);
    let mut args = vec![url.as_str(), "--client", client, "--resolve", &resolve];
    if with_root {
        args.extend(["--ca-file", root.to_str().unwrap()]);
    }
    doctor(&args)
}

#[test]
fn the_certificate_is_checked_as_a_client_checks_it() {
    let chain = Chain::new();
    let (_app, port, certs) = https_app(&chain, true, false, &[]);
    let (ok, text) = doctor_https(port, "chatgpt", certs.path(), true);
    assert!(ok, "{text}");
    assert!(
        text.contains("ok  tls.chain        TLSv1.3, chain trusted"),
        "{text}"
    );
    assert!(text.contains("ok  tls.expiry"), "{text}");
    // Certificate files: no HSTS unless asked, which latchkey's own fix names.
    assert!(
        has(&text, "warn", "tls.hsts", "no Strict-Transport-Security"),
        "{text}"
    );
    assert!(text.contains("serve with --hsts"), "{text}");
    // Claude: port 443 only.
    let (ok, text) = doctor_https(port, "claude", certs.path(), true);
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  port") && text.contains("443"),
        "{text}"
    );
    // Not trusted without the CA, and nothing further tried.
    let (ok, text) = doctor_https(port, "chatgpt", certs.path(), false);
    assert!(!ok, "{text}");
    assert!(
        has(
            &text,
            "FAIL",
            "tls.chain",
            "issued by \"doctor test root\", which is not trusted"
        ),
        "{text}"
    );
    assert!(text.contains("skip  mcp"), "{text}");

    // The chain without its intermediate.
    let (_app, port, certs) = https_app(&chain, false, false, &[]);
    let (ok, text) = doctor_https(port, "chatgpt", certs.path(), true);
    assert!(!ok, "{text}");
    assert!(
        has(
            &text,
            "FAIL",
            "tls.chain",
            "alone, without the intermediate \"doctor test intermediate\""
        ),
        "{text}"
    );
    assert!(text.contains("fullchain.pem"), "{text}");

    // An expired certificate.
    let (_app, port, certs) = https_app(&chain, true, true, &[]);
    let (ok, text) = doctor_https(port, "chatgpt", certs.path(), true);
    assert!(!ok, "{text}");
    assert!(text.contains("the certificate has expired"), "{text}");

    // --hsts: the header seen.
    let (_app, port, certs) = https_app(&chain, true, false, &["--hsts"]);
    let (ok, text) = doctor_https(port, "chatgpt", certs.path(), true);
    assert!(ok, "{text}");
    assert!(
        has(
            &text,
            "ok",
            "tls.hsts",
            "Strict-Transport-Security: max-age="
        ),
        "{text}"
    );
}

#[test]
fn oauth_metadata_is_checked_against_the_url() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let public = format!("http://localhost:{port}");
    let _app = Spawn::default()
        .args(&["--listen", &listen, "--public-url", &public, "--oauth"])
        .args(&["--state-dir", state.to_str().unwrap()])
        .start();
    let url = format!("http://localhost:{port}/mcp");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(port),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("ok  oauth"), "{text}");
    assert!(text.contains("with resource_metadata"), "{text}");
    assert!(text.contains("skip  mcp.initialize"), "{text}");
    assert!(has(&text, "skip", "oauth.register", "loopback"), "{text}");

    // Without --register nothing is written; with it, one trial a redirect URI, removed.
    let store = state.join("oauth.json");
    // A save replaces the file: a registration made and deleted still shows.
    let identity = || {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&store)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
    };
    let before = identity();
    let (_, text) = doctor(&[&url, "--client", "chatgpt", "--resolve", &resolving(port)]);
    assert!(has(&text, "skip", "oauth.register", "--register"), "{text}");
    assert_eq!(
        identity(),
        before,
        "the doctor wrote on the server without --register"
    );
    let (_, text) = doctor(&[
        &url,
        "--client",
        "any",
        "--register",
        "--resolve",
        &resolving(port),
    ]);
    for uri in [
        "https://chatgpt.com/connector_platform_oauth_redirect",
        "https://claude.ai/api/mcp/auth_callback",
    ] {
        let seen = format!("registering {uri}: 201 Created, removed again");
        assert!(has(&text, "ok", "oauth.register", &seen), "{text}");
    }
    assert!(
        !text.contains("lkrg_"),
        "a registration token was printed:\n{text}"
    );
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&store).unwrap()).unwrap();
    assert_eq!(kept["clients"], serde_json::json!([]), "{kept}");
}

/// A real Apache (Debian's, as the bundle's) in front of `backend` on five ports, each with
/// one fault people meet: the query string dropped on the way (a `RewriteRule` to a fixed
/// URL), a catch-all page answering `/.well-known/*` with HTML 200, a rule that refuses
/// Claude's User-Agent, the key headers unset, and the path rewritten to `/mcp` (the key's
/// segment lost). Killed when dropped.
struct Apache {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    ports: [u16; 5],
}

impl Apache {
    fn start(backend: u16) -> Apache {
        let dir = tempfile::tempdir().unwrap();
        // Readable by the user Apache's children run as.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("page.html"), "<html>a catch-all page</html>").unwrap();
        let ports = [(); 5].map(|()| common::free_port());
        let root = dir.path().display();
        let modules = "/usr/lib/apache2/modules";
        let conf = format!(
            r#"ServerRoot {root}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_http_module {modules}/mod_proxy_http.so
LoadModule rewrite_module {modules}/mod_rewrite.so
LoadModule mime_module {modules}/mod_mime.so
LoadModule headers_module {modules}/mod_headers.so
ServerName localhost
TypesConfig /dev/null
AddType text/html .html
PidFile {root}/httpd.pid
DefaultRuntimeDir {root}
ErrorLog {root}/error.log
User www-data
Group www-data
DocumentRoot {root}/www
<Directory {root}/www>
  Require all granted
</Directory>
Listen 127.0.0.1:{q}
Listen 127.0.0.1:{w}
Listen 127.0.0.1:{u}
Listen 127.0.0.1:{h}
Listen 127.0.0.1:{p}
<VirtualHost 127.0.0.1:{q}>
  RewriteEngine On
  RewriteRule ^/mcp$ http://127.0.0.1:{backend}/mcp? [P]
  ProxyPass / http://127.0.0.1:{backend}/
</VirtualHost>
<VirtualHost 127.0.0.1:{w}>
  RewriteEngine On
  RewriteRule ^/\.well-known/ /page.html [L]
  ProxyPass /page.html !
  ProxyPass / http://127.0.0.1:{backend}/
</VirtualHost>
<VirtualHost 127.0.0.1:{u}>
  RewriteEngine On
  RewriteCond %{{HTTP_USER_AGENT}} Claude-User [NC]
  RewriteRule ^ - [F]
  ProxyPass / http://127.0.0.1:{backend}/
</VirtualHost>
<VirtualHost 127.0.0.1:{h}>
  RequestHeader unset Authorization
  RequestHeader unset X-API-Key
  ProxyPass / http://127.0.0.1:{backend}/
</VirtualHost>
<VirtualHost 127.0.0.1:{p}>
  RewriteEngine On
  RewriteRule ^/mcp/.+$ http://127.0.0.1:{backend}/mcp [P]
  ProxyPass / http://127.0.0.1:{backend}/
</VirtualHost>
"#,
            q = ports[0],
            w = ports[1],
            u = ports[2],
            h = ports[3],
            p = ports[4],
        );
        let path = dir.path().join("httpd.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new("/usr/sbin/apache2")
            .arg("-f")
            .arg(&path)
            .arg("-X")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("apache2 (.ci/run installs it)");
        let mut apache = Apache {
            child,
            _dir: dir,
            ports,
        };
        common::wait_for("Apache to listen", || {
            if let Ok(Some(status)) = apache.child.try_wait() {
                let log = std::fs::read_to_string(apache._dir.path().join("error.log"));
                panic!("apache2 exited ({status}): {log:?}");
            }
            ports
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        apache
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn faults_of_a_proxy_in_front_each_fail_their_check() {
    let app = Spawn::default().start();
    let apache = Apache::start(port_of(&app.tcp[0]));
    let [query, well_known, agent, headers, path] = apache.ports;

    let url = format!("http://localhost:{query}/mcp?api_key={KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(query),
    ]);
    assert!(!ok, "{text}");
    assert!(has(&text, "FAIL", "mcp.initialize", "401"), "{text}");
    assert!(text.contains("drops the query string"), "{text}");
    // The same latchkey, the key in the path: through.
    let url = format!("http://localhost:{query}/mcp/{KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(query),
    ]);
    assert!(ok, "{text}");

    let url = format!("http://localhost:{well_known}/mcp/{KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "chatgpt",
        "--resolve",
        &resolving(well_known),
    ]);
    assert!(!ok, "{text}");
    assert!(
        has(&text, "FAIL", "well_known", "200 that is not JSON"),
        "{text}"
    );

    let url = format!("http://localhost:{agent}/mcp/{KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(agent),
    ]);
    assert!(ok, "Claude Code's User-Agent is let through:\n{text}");
    let (ok, text) = doctor(&[&url, "--client", "any", "--resolve", &resolving(agent)]);
    assert!(!ok, "{text}");
    assert!(
        has(&text, "FAIL", "user_agent", "Claude-User: 403 Forbidden"),
        "{text}"
    );
    assert!(
        has(&text, "ok", "user_agent", "openai-mcp/1.0.0: 200"),
        "{text}"
    );

    // The key headers unset: the key in a header is refused where the query's is taken;
    // with the key in the path, Bearer alone is refused (a warning: no OAuth here).
    let url = format!("http://localhost:{headers}/mcp");
    let resolve = resolving(headers);
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolve,
        "--key",
        KEY,
    ]);
    assert!(!ok, "{text}");
    assert!(
        has(
            &text,
            "FAIL",
            "mcp.initialize",
            "but as ?api_key= in the URL: 200"
        ),
        "{text}"
    );
    assert!(
        text.contains("strips Authorization and X-API-Key"),
        "{text}"
    );
    let url = format!("http://localhost:{headers}/mcp/{KEY}");
    let (ok, text) = doctor(&[&url, "--client", "claude-code", "--resolve", &resolve]);
    assert!(ok, "a warning only:\n{text}");
    assert!(
        has(
            &text,
            "warn",
            "mcp.bearer",
            "401, where the URL's key is taken"
        ),
        "{text}"
    );

    // The path rewritten: the key's segment never reaches latchkey.
    let url = format!("http://localhost:{path}/mcp/{KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(path),
    ]);
    assert!(!ok, "{text}");
    assert!(
        has(&text, "FAIL", "mcp.initialize", "but as a header"),
        "{text}"
    );
    assert!(text.contains("rewrites the path"), "{text}");
}

/// OAuth metadata naming another URL than the one pasted (a `--public-url` left from
/// another setup): what clients reject with "Error fetching OAuth configuration".
#[test]
fn oauth_metadata_for_another_url_fails() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _app = Spawn::default()
        .args(&[
            "--listen",
            &listen,
            "--public-url",
            "http://localhost:9",
            "--oauth",
        ])
        .args(&["--state-dir", state.to_str().unwrap()])
        .start();
    let url = format!("http://localhost:{port}/mcp");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(port),
    ]);
    assert!(!ok, "{text}");
    assert!(
        has(
            &text,
            "FAIL",
            "oauth.prm",
            "names \"http://localhost:9/mcp\""
        ),
        "{text}"
    );
    assert!(text.contains("set --public-url"), "{text}");
}

/// A proxy to `backend` that holds each request for the well-known documents `delay`
/// before passing it on: a slow discovery, as a cold upstream or a far proxy makes it.
/// Its port; it serves until the test ends.
fn slow_discovery(backend: u16, delay: std::time::Duration) -> u16 {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", backend)) else {
                return;
            };
            let (mut from_server, mut to_client) =
                (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
            std::thread::spawn(move || {
                let mut buf = [0; 16 * 1024];
                while let Ok(n @ 1..) = client.read(&mut buf) {
                    let request = &buf[..n];
                    if request.starts_with(b"GET /.well-known/")
                        || request.starts_with(b"HEAD /.well-known/")
                    {
                        // The fault this proxy is for, not a wait for readiness.
                        std::thread::sleep(delay);
                    }
                    if server.write_all(request).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Discovery slower than a client waits (about 10 s): its line fails with the time taken.
#[test]
fn a_slow_discovery_fails_against_the_clients_budget() {
    let app = Spawn::default().start();
    let slow = slow_discovery(
        port_of(&app.tcp[0]),
        std::time::Duration::from_millis(5_500),
    );
    let url = format!("http://localhost:{slow}/mcp/{KEY}");
    let (ok, text) = doctor(&[
        &url,
        "--client",
        "claude-code",
        "--resolve",
        &resolving(slow),
    ]);
    assert!(!ok, "{text}");
    assert!(
        has(&text, "FAIL", "discovery", "the well-known fetches, in 1"),
        "{text}"
    );
    assert!(text.contains("clients give up after about 10 s"), "{text}");
    // What is not slow still passes.
    assert!(
        has(
            &text,
            "ok",
            "mcp.initialize",
            "initialize with the key: 200"
        ),
        "{text}"
    );
}
