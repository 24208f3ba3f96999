//! The one way tests start latchkey: the real binary, on ephemeral ports and temporary
//! sockets, with everything it writes kept for inspection. Split by concern: `clients` (HTTP
//! and MCP clients), `tls` (a TLS client), `otlp` (the OTLP receiver).
#![allow(dead_code)]

pub mod clients;
pub mod otlp;
pub mod tls;
pub mod upstreams;

// Each test file uses some of these; the rest would warn as unused there.
#[allow(unused_imports)]
pub use clients::*;
#[allow(unused_imports)]
pub use tls::*;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A key long enough to be accepted, easy to search for in output.
pub const KEY: &str = "lk-test-key-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e";
pub const OTHER_KEY: &str = "lk-other-key-0a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// How long anything in a test may take before it counts as hung.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A TCP port nobody listens on right now (for servers whose port must be known in advance).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_latchkey")
}

/// A running latchkey process.
pub struct App {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    /// Temporary directory: HOME, state and sockets live here.
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT` of each TCP listener, in order.
    pub tcp: Vec<String>,
    /// Each Unix socket path, in order.
    pub sockets: Vec<PathBuf>,
    /// `https://127.0.0.1:PORT` of each --tls-listen, in order.
    pub https: Vec<String>,
    /// `http://127.0.0.1:PORT` of each --redirect-listen, in order.
    pub redirects: Vec<String>,
}

/// What to start latchkey with.
#[derive(Default, Clone)]
pub struct Spawn {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Listen on a Unix socket (in the temp dir) besides TCP.
    pub unix: bool,
    /// Don't add `--api-key KEY`.
    pub no_default_key: bool,
}

impl Spawn {
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
    pub fn unix(mut self) -> Self {
        self.unix = true;
        self
    }
    pub fn no_default_key(mut self) -> Self {
        self.no_default_key = true;
        self
    }
    pub fn start(self) -> App {
        App::start(self)
    }
}

/// A command for the latchkey binary with a clean environment rooted in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(bin());
    for (name, _) in std::env::vars() {
        if name.starts_with("LATCHKEY_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.env("HOME", dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .stdin(Stdio::null());
    cmd
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

/// Polls `condition` every 10 ms until it holds or `PATIENCE` runs out.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls the async `condition` every 10 ms until it holds or `PATIENCE` runs out.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl App {
    pub fn start(spawn: Spawn) -> App {
        Self::try_start(spawn).unwrap_or_else(|(status, output)| {
            panic!("latchkey exited early ({status}):\n{output}")
        })
    }

    /// Starts latchkey and waits until every listener is up; on an early exit, returns the
    /// exit status and everything written.
    pub fn try_start(spawn: Spawn) -> Result<App, (ExitStatus, String)> {
        let dir = tempfile::tempdir().unwrap();
        Self::try_start_in(dir, spawn)
    }

    pub fn try_start_in(dir: tempfile::TempDir, spawn: Spawn) -> Result<App, (ExitStatus, String)> {
        let mut cmd = command(dir.path());
        cmd.arg("serve");
        if !spawn.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
            if spawn.unix {
                let socket = dir.path().join("latchkey.sock");
                cmd.arg("--listen")
                    .arg(format!("unix:{}", socket.display()));
            }
        }
        if !spawn.no_default_key {
            cmd.args(["--api-key", KEY]);
        }
        // latchkey says where it listens in this file once every listener is bound.
        let address_file = dir.path().join("addresses.json");
        cmd.arg("--address-file").arg(&address_file);
        cmd.args(&spawn.args);
        for (name, value) in &spawn.env {
            cmd.env(name, value);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("latchkey starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&address_file) {
                let addresses: serde_json::Value =
                    serde_json::from_str(&text).expect("the address file is JSON");
                let list = |kind: &str| -> Vec<String> {
                    addresses[kind]
                        .as_array()
                        .unwrap_or_else(|| panic!("no {kind} in {text}"))
                        .iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect()
                };
                let sockets = list("unix")
                    .iter()
                    .map(|a| PathBuf::from(a.strip_prefix("unix:").unwrap()))
                    .collect();
                return Ok(App {
                    tcp: list("http"),
                    https: list("https"),
                    redirects: list("redirect"),
                    sockets,
                    child,
                    output,
                    dir,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader threads drain what is left.
                std::thread::sleep(Duration::from_millis(50));
                let text = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
                return Err((status, text));
            }
            assert!(
                start.elapsed() < PATIENCE,
                "latchkey never listened:\n{}",
                String::from_utf8_lossy(&output.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.tcp[0])
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "latchkey did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything written to stdout and stderr so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub fn output_bytes(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output holds `needle`.
    pub fn wait_for_output(&self, needle: &str) {
        wait_for(&format!("{needle:?} in the output"), || {
            self.output().contains(needle)
        });
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` with `input` on its stdin; what it wrote and how it ended.
pub fn with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `latchkey keygen --digest` of `key`: its `sha256:<hex>` form.
pub fn keygen_digest(key: &str) -> String {
    let out = with_stdin(Command::new(bin()).args(["keygen", "--digest"]), key);
    assert!(out.status.success(), "keygen --digest failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Every form of `key` that would give it away.
pub fn key_forms(key: &str) -> Vec<String> {
    let encoded: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
    let digest = keygen_digest(key);
    let hex = digest.trim_start_matches("sha256:").to_owned();
    assert_eq!(hex.len(), 64);
    vec![
        key.to_owned(),
        encoded.clone(),
        encoded.to_lowercase(),
        key.replace('-', "%2D"),
        digest,
        hex,
    ]
}

/// Headless Chromium (Debian's, installed by `.ci/run`) opening `url` with `args` besides
/// the usual flags, with a profile of its own that is removed afterwards: nothing is left in
/// HOME or shared. Background networking off: this machine's closed network refuses it.
pub fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-proxy-server",
            "--no-first-run",
            "--disable-background-networking",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .env("HOME", profile.path())
        .output()
        .unwrap_or_else(|e| panic!("chromium cannot run ({e}): .ci/run installs it"))
}

/// A receiver on loopback that keeps what it gets: `(endpoint URL, what it received)`.
pub async fn otlp_receiver() -> (String, otlp::Received) {
    let received = otlp::Received::default();
    let addr = otlp::receiver("127.0.0.1:0", received.clone()).await;
    (format!("http://{addr}"), received)
}

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in MiB.
pub fn rss_mib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes a process has written through system calls so far (`wchar`: files, pipes, sockets).
pub fn written_bytes(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar in /proc/<pid>/io")
}

/// A reqwest client whose connections come from `source` (any 127.0.0.0/8 address reaches
/// a 127.0.0.1 listener, so a test can be several clients), redirects not followed.
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `latchkey doctor` with `args`, run in `dir` at `RUST_LOG=trace` (so that anything it might
/// log is searched too): its exit status and output, which must hold neither the key nor a
/// panic.
pub fn doctor(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = command(dir)
        .env("RUST_LOG", "trace")
        .arg("doctor")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains(KEY), "the key was printed:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    (output.status.code().expect("an exit status"), text)
}
