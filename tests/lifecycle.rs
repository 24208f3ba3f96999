//! Start, key rotation, shutdown, sockets, bad configuration, and the helper commands.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Output;

use common::{App, KEY, OTHER_KEY, Spawn, call_hello, command, http, mcp_post};
use futures::StreamExt;
use nix::sys::signal::Signal;
use reqwest::StatusCode;

async fn status_with(app: &App, key: &str) -> StatusCode {
    mcp_post(&http(), &app.url("/mcp"), &call_hello("x"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn sighup_rotates_keys_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_key");
    std::fs::write(&file, format!("# the key\n{KEY}\n")).unwrap();
    let file_arg = file.to_str().unwrap().to_owned();
    let app = App::start(
        Spawn::default()
            .no_default_key()
            .args(&["--api-key-file", &file_arg]),
    );
    assert_eq!(status_with(&app, KEY).await, StatusCode::OK);
    assert_eq!(status_with(&app, OTHER_KEY).await, StatusCode::UNAUTHORIZED);

    // A request in flight (an open event stream) outlives the rotation.
    let mut stream = common::open_event_stream(&app, KEY).await.bytes_stream();
    assert!(stream.next().await.unwrap().is_ok());

    std::fs::write(&file, format!("{OTHER_KEY}\n")).unwrap();
    app.signal(Signal::SIGHUP);
    app.wait_for_output("SIGHUP: reloaded 1 API key(s)");
    assert_eq!(status_with(&app, KEY).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_with(&app, OTHER_KEY).await, StatusCode::OK);
    let still_open =
        tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await;
    assert!(
        still_open.is_err(),
        "the stream opened with the old key was cut: {still_open:?}"
    );

    // A broken file keeps the keys in force, and says why.
    std::fs::write(&file, "too-short\n").unwrap();
    app.signal(Signal::SIGHUP);
    app.wait_for_output("SIGHUP: keeping the current keys");
    assert!(app.output().contains(&format!(
        "{}:1: a plain key must be at least 32",
        file.display()
    )));
    assert_eq!(status_with(&app, OTHER_KEY).await, StatusCode::OK);
    std::fs::remove_file(&file).unwrap();
    app.signal(Signal::SIGHUP);
    common::wait_for("a second refusal", || {
        app.output().matches("keeping the current keys").count() == 2
    });
    assert_eq!(status_with(&app, OTHER_KEY).await, StatusCode::OK);
}

#[tokio::test]
async fn sigterm_and_sigint_exit_zero_and_remove_the_socket() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut app = App::start(Spawn::default().unix());
        let socket = app.sockets[0].clone();
        assert!(socket.exists());
        // The address file told the test where to connect; it goes too.
        let address_file = app.dir.path().join("addresses.json");
        assert!(address_file.exists());
        // An open event stream must not hold the shutdown up.
        let stream = common::open_event_stream(&app, KEY).await;
        app.signal(signal);
        let status = app.wait();
        assert!(status.success(), "{signal}: {status}\n{}", app.output());
        assert!(!socket.exists(), "{signal}: the socket is left behind");
        assert!(
            !address_file.exists(),
            "{signal}: the address file is left behind"
        );
        assert!(app.output().contains("shutting down"));
        let rest = stream.bytes().await;
        assert!(rest.is_ok(), "the stream did not end cleanly: {rest:?}");
    }
}

#[tokio::test]
async fn unix_socket_mode_group_and_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mcp.sock");
    // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let gid = nix::unistd::getgid().as_raw();
    let group = nix::unistd::Group::from_gid(nix::unistd::getgid())
        .unwrap()
        .unwrap()
        .name;
    let listen = format!("unix:{}", socket.display());
    let app = App::start(Spawn::default().args(&["--listen", &listen, "--socket-group", &group]));
    app.wait_for_output("removed a stale socket file");
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);

    // A live socket is not taken over.
    let second = App::try_start(Spawn::default().args(&["--listen", &listen]));
    let (status, output) = second
        .err()
        .expect("a second latchkey must refuse the live socket");
    assert!(!status.success());
    assert!(
        output.contains("another process is listening on it"),
        "{output}"
    );
    assert!(socket.exists(), "the live socket was removed");
    drop(app);

    let other = dir.path().join("other.sock");
    let listen = format!("unix:{}", other.display());
    let app = App::start(Spawn::default().args(&[
        "--listen",
        &listen,
        "--socket-mode",
        "0600",
        "--socket-group",
        &gid.to_string(),
    ]));
    assert_eq!(
        std::fs::metadata(&other).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(app);
}

/// Runs a `serve` that should refuse to start; one that starts anyway is stopped after
/// `PATIENCE` (so the test fails rather than hangs), its output returned all the same.
fn refused_start(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut child = command(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < common::PATIENCE {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn fails_with(output: Output, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "exit 0 for a bad configuration: {stderr}"
    );
    assert!(stderr.contains(message), "{message:?} not in:\n{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.contains(message),
        "the first line does not say it: {stderr}"
    );
}

#[test]
fn bad_configuration_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        command(dir.path())
            .arg("serve")
            .args(["--api-key", KEY])
            .args(args)
            .output()
            .unwrap()
    };
    for (args, message) in [
        (
            &["--listen", "nonsense"][..],
            "invalid value 'nonsense' for '--listen <ADDR>': expected HOST:PORT",
        ),
        (&["--listen", "127.0.0.1:99999"], "expected HOST:PORT"),
        (
            &["--base-path", "mcptest"],
            "invalid value 'mcptest' for '--base-path <PATH>'",
        ),
        (
            &["--api-key-file", "/nonexistent/keys"],
            "cannot read key file /nonexistent/keys: No such file",
        ),
        (
            &["--listen", "unix:/nonexistent/dir/mcp.sock"],
            "cannot listen on unix:/nonexistent/dir/mcp.sock: directory /nonexistent/dir does not exist",
        ),
        (&["--socket-group", "no-such-group-here"], "no such group"),
        (&["--socket-mode", "999"], "expected octal permission bits"),
        (&["--public-url", "example.com"], "expected an http(s) URL"),
        (
            &["--allowed-origin", "chatgpt.com"],
            "expected scheme://host",
        ),
        (&["--session-idle-timeout", "soon"], "expected e.g. 30s"),
    ] {
        fails_with(run(args), message);
    }
    let not_a_socket = dir.path().join("file");
    std::fs::write(&not_a_socket, "mine").unwrap();
    fails_with(
        run(&["--listen", &format!("unix:{}", not_a_socket.display())]),
        "the path exists and is not a socket",
    );
    assert_eq!(std::fs::read_to_string(&not_a_socket).unwrap(), "mine");
    // Port in use: the second listener fails, and nothing is served.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    fails_with(
        run(&["--listen", &addr]),
        &format!("cannot listen on {addr}: Address already in use"),
    );
    fails_with(
        run(&[
            "--api-key-file",
            dir.path().join("missing").to_str().unwrap(),
        ]),
        "cannot read key file",
    );
}

#[tokio::test]
async fn empty_key_file_falls_back_to_the_generated_key() {
    // What a compose secret left unset (`/dev/null`) looks like.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "# nothing yet\n").unwrap();
    let app = Spawn::default()
        .no_default_key()
        .args(&["--api-key-file", empty.to_str().unwrap()])
        .start();
    app.wait_for_output("holds no key: generated a new key in");
    let generated = std::fs::read_to_string(app.dir.path().join("state/latchkey/api_key")).unwrap();
    let generated = generated
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap()
        .trim();
    assert_eq!(status_with(&app, generated).await, StatusCode::OK);
    assert_eq!(status_with(&app, KEY).await, StatusCode::UNAUTHORIZED);
    assert!(!app.output().contains(generated));
}

#[tokio::test]
async fn no_key_configured_generates_one_and_reuses_it() {
    // The state directory outlives both runs.
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_owned();
    let spawn = Spawn::default()
        .no_default_key()
        .env("XDG_STATE_HOME", &state_dir);
    let app = App::start(spawn.clone());
    let key_file = state.path().join("latchkey/api_key");
    // Log lines are written by a thread of their own: they may follow the address file.
    app.wait_for_output(&format!("generated a new key in {}", key_file.display()));
    app.wait_for_output("latchkey url");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // `latchkey url` (same environment) prints the URL with the key; it works.
    let out = command(app.dir.path())
        .env("XDG_STATE_HOME", &state_dir)
        .args(["url", "--listen", app.tcp[0].trim_start_matches("http://")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with(&format!("{}/mcp?api_key=", app.tcp[0])),
        "{url}"
    );
    let key = url.split("api_key=").nth(1).unwrap().to_owned();
    assert_eq!(key.len(), 43);
    assert!(
        !app.output().contains(&key),
        "the key was printed to a non-terminal"
    );
    let response = mcp_post(&http(), &url, &call_hello("gen"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(app);

    // Restart: the same key is used.
    let app = App::start(spawn);
    app.wait_for_output("using the key in");
    assert_eq!(status_with(&app, &key).await, StatusCode::OK);
}

#[test]
fn url_command() {
    let dir = tempfile::tempdir().unwrap();
    let url = |args: &[&str]| command(dir.path()).arg("url").args(args).output().unwrap();
    let out = url(&[
        "--api-key",
        KEY,
        "--public-url",
        "https://example.com/mcptest/",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("https://example.com/mcptest/mcp?api_key={KEY}")
    );
    let out = url(&[
        "--api-key",
        KEY,
        "--base-path",
        "/x",
        "--listen",
        "0.0.0.0:9000",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("http://127.0.0.1:9000/x/mcp?api_key={KEY}")
    );
    // With ACME, latchkey answers https://<first domain> on 443.
    let out = url(&[
        "--api-key",
        KEY,
        "--acme-domain",
        "mcp.example.com,b.example.com",
        "--base-path",
        "/x",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("https://mcp.example.com/x/mcp?api_key={KEY}")
    );
    let out = url(&["--api-key", KEY, "--listen", "unix:/run/x.sock"]);
    fails_with(out, "set --public-url");
    let digest = format!("sha256:{}", "a".repeat(64));
    fails_with(
        url(&["--api-key", &digest]),
        "only sha256: digests are configured",
    );
}

#[test]
fn keygen_command() {
    let dir = tempfile::tempdir().unwrap();
    let keygen =
        || String::from_utf8(command(dir.path()).arg("keygen").output().unwrap().stdout).unwrap();
    let (a, b) = (keygen(), keygen());
    let a = a.trim();
    assert_eq!(a.len(), 43, "{a}");
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{a}"
    );
    assert_ne!(a, b.trim());
    let mut child = command(dir.path())
        .args(["keygen", "--digest"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    fails_with(
        child.wait_with_output().unwrap(),
        "the key on stdin is refused",
    );
}

#[tokio::test]
async fn healthcheck_command() {
    let app = App::start(Spawn::default().unix().args(&["--base-path", "/lk"]));
    let dir = tempfile::tempdir().unwrap();
    let check = |args: &[String], env: Option<(&str, String)>| {
        let mut cmd = command(dir.path());
        cmd.arg("healthcheck").args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let socket = app.sockets[0].display().to_string();
    for (args, env) in [
        (vec!["--url".to_owned(), app.url("/healthz")], None),
        (
            vec![
                "--socket".to_owned(),
                socket.clone(),
                "--base-path".to_owned(),
                "/lk".to_owned(),
            ],
            None,
        ),
        (vec![], Some(("LATCHKEY_LISTEN", format!("unix:{socket}")))),
        (
            vec![
                "--listen".to_owned(),
                app.tcp[0].trim_start_matches("http://").to_owned(),
            ],
            None,
        ),
    ] {
        let out = check(&args, env.clone());
        assert!(
            out.status.success(),
            "{args:?} {env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
    let out = check(&["--url".to_owned(), app.url("/nothing")], None);
    fails_with(out, "answered 401");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = check(
        &["--url".to_owned(), format!("http://{closed}/healthz")],
        None,
    );
    fails_with(out, "Connection refused");
    let out = check(
        &["--url".to_owned(), "https://example.com/healthz".to_owned()],
        None,
    );
    fails_with(out, "--url must be an http:// URL");
}

#[test]
fn generated_key_url_is_printed_only_to_a_terminal() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut child = command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(pty.slave))
        .spawn()
        .unwrap();
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut master = std::fs::File::from(pty.master);
    let sink = output.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    common::wait_for("the listening line on the terminal", || {
        output.lock().unwrap().contains("listening on http://")
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = output.lock().unwrap().clone();
    let key = std::fs::read_to_string(dir.path().join("state/latchkey/api_key")).unwrap();
    let key = key.lines().last().unwrap();
    assert!(
        text.contains("Local connector URL (this machine only): http://127.0.0.1:")
            && text.contains("need a public HTTPS URL"),
        "{text}"
    );
    assert!(text.contains(&format!("/mcp?api_key={key}")), "{text}");
}

/// A digest written some other way than `sha256:<64 hex>` would become the password (the
/// real key refused): it stops the start, and a SIGHUP keeps the keys in force, naming the
/// line and never quoting it.
#[tokio::test]
async fn a_miswritten_digest_is_refused_at_start_and_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_key");
    let digest = common::keygen_digest(KEY);
    let hex = digest.strip_prefix("sha256:").unwrap().to_owned();
    for miswritten in [
        format!("SHA256:{hex}"),
        format!("Sha256:{hex}"),
        hex.clone(),
    ] {
        std::fs::write(&file, format!("# the key\n{miswritten}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let output = refused_start(dir.path(), &["--api-key-file", file.to_str().unwrap()]);
        fails_with(
            output,
            &format!("{}:2: this looks like a SHA-256 digest", file.display()),
        );
    }
    std::fs::write(&file, format!("{digest}\n")).unwrap();
    let file_arg = file.to_str().unwrap().to_owned();
    let app = App::start(
        Spawn::default()
            .no_default_key()
            .args(&["--api-key-file", &file_arg]),
    );
    assert_eq!(status_with(&app, KEY).await, StatusCode::OK);
    std::fs::write(&file, format!("SHA256:{hex}\n")).unwrap();
    app.signal(Signal::SIGHUP);
    app.wait_for_output("SIGHUP: keeping the current keys");
    assert_eq!(status_with(&app, KEY).await, StatusCode::OK);
    assert_eq!(
        status_with(&app, &format!("SHA256:{hex}")).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(!app.output().contains(&hex), "{}", app.output());
}

/// A key file others may write, or a state directory others may write, stops the start
/// with the command that fixes it; one others may only read is a warning.
#[tokio::test]
async fn key_files_and_state_directories_others_may_change_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = refused_start(dir.path(), &["--api-key-file", file.to_str().unwrap()]);
    fails_with(output, &format!("chmod go-w {}", file.display()));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file_arg = file.to_str().unwrap().to_owned();
    let app = App::start(
        Spawn::default()
            .no_default_key()
            .args(&["--api-key-file", &file_arg]),
    );
    app.wait_for_output(&format!("chmod 600 {}", file.display()));
    assert_eq!(status_with(&app, KEY).await, StatusCode::OK);
    drop(app);

    let state = dir.path().join("shared-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = refused_start(dir.path(), &["--state-dir", state.to_str().unwrap()]);
    fails_with(
        output,
        &format!("state directory {} can be changed", state.display()),
    );
}

/// A mistake in a variable is as easy to trace as one in a flag: a bad value names the
/// variable it came from, and a `LATCHKEY_*` variable that nothing reads is a warning with
/// the nearest real name.
#[tokio::test]
async fn variable_mistakes_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .args(["serve", "--api-key", KEY, "--listen", "127.0.0.1:0"])
        .env("LATCHKEY_SESSIONS", "flase")
        .output()
        .unwrap();
    fails_with(output, "(from the variable LATCHKEY_SESSIONS)");
    // Given as a flag, the flag is what is named (and no variable).
    let output = command(dir.path())
        .args(["serve", "--api-key", KEY, "--sessions", "flase"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && !said.contains("from the variable"),
        "{said}"
    );

    let app = App::start(Spawn::default().env("LATCHKEY_LISTN", "127.0.0.1:9"));
    app.wait_for_output(
        "the variable LATCHKEY_LISTN is set but no setting of latchkey reads it (did you mean LATCHKEY_LISTEN?)",
    );
    assert_eq!(status_with(&app, KEY).await, StatusCode::OK);
}
