//! A stdio upstream: a child process latchkey starts, speaking MCP on its stdin and stdout.
//!
//! The child is the leader of its own process group, so the signals at shutdown reach what
//! it started too (`npx` and `uvx` run the server as a grandchild). It gets a clean
//! environment ([`super::INHERITED_ENV`] and what the configuration names). Its stderr is
//! logged line by line under the upstream's name; lines on its stdout that are not JSON-RPC
//! are skipped with a warning (a server that prints a banner would otherwise confuse the
//! client).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rmcp::ServiceExt;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::client::{Client, Connection, Env, INHERITED_ENV, Session};
use super::error::UpstreamError;
use super::lines::{Kind, Read, kind, read_line};
use super::log_line::LogLines;
use super::notices::{Listener, ProgressRoutes};
use super::progress_transport::ProgressTransport;

/// How long a child has to exit after its stdin closes, and again after SIGTERM.
const GRACE: Duration = Duration::from_secs(5);

/// The command line of a stdio upstream.
#[derive(Clone)]
pub struct StdioCommand {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Set in the child's environment besides [`INHERITED_ENV`].
    pub env: Env,
    pub cwd: Option<PathBuf>,
}

impl std::fmt::Debug for StdioCommand {
    /// Without the environment's values (configured to hold the server's secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioCommand")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl StdioCommand {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).env_clear();
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        command
    }
}

/// Why a command did not start, as a person would say it: `uvx: not found on PATH (PATH=…)`.
fn cannot_start(shown: &str, e: std::io::Error) -> UpstreamError {
    let program = shown.to_owned();
    match e.kind() {
        std::io::ErrorKind::NotFound if !shown.contains('/') => UpstreamError::NotOnPath {
            program,
            path: std::env::var("PATH").unwrap_or_default(),
        },
        std::io::ErrorKind::NotFound => UpstreamError::NoSuchFile { program },
        std::io::ErrorKind::PermissionDenied => UpstreamError::NotExecutable { program },
        _ => UpstreamError::CannotStart { program, source: e },
    }
}

/// A running child and the rmcp client on its pipes.
pub struct ChildSession {
    child: Child,
    client: Client,
}

pub(super) async fn connect(
    command: &StdioCommand,
    listener: Listener,
    progress: Arc<ProgressRoutes>,
) -> Result<(ChildSession, Connection), UpstreamError> {
    let name = listener.name.clone();
    let log = listener.log.clone();
    let shown = command.program.to_string_lossy().into_owned();
    let mut child = command
        .command()
        .spawn()
        .map_err(|e| cannot_start(&shown, e))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    tokio::spawn(log_stderr(name.clone(), log.clone(), stderr));
    let (reader, writer) = tokio::io::duplex(64 * 1024);
    tokio::spawn(json_lines_only(name, log, stdout, writer));
    let transport = ProgressTransport::new(AsyncRwTransport::new_client(reader, stdin), progress);
    let client = match listener.serve(transport).await {
        Ok(client) => client,
        Err(e) => {
            let status = stop(&mut child).await;
            return Err(UpstreamError::ChildInitialize {
                reason: e.to_string(),
                ended: status,
            });
        }
    };
    let (client, connection) = Client::watch(client)?;
    Ok((ChildSession { child, client }, connection))
}

impl Session for ChildSession {
    fn ended(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            // The pipes close when the child exits; rmcp's client ends then.
            tokio::select! {
                status = self.child.wait() => match status {
                    Ok(status) => format!("the child exited ({status})"),
                    Err(e) => format!("cannot wait for the child: {e}"),
                },
                reason = self.client.ended() => {
                    format!("{reason} (the child {})", stop(&mut self.child).await)
                }
            }
        })
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Closing the client closes the child's stdin: the MCP way to ask a stdio server
            // to stop. Then SIGTERM, then SIGKILL, each after a grace period.
            self.client.close().await;
            let status = stop(&mut self.child).await;
            tracing::info!("upstream child {status}");
        })
    }
}

/// Waits for the child to exit, SIGTERM and then SIGKILL to its group after a grace
/// period each; says how it ended.
async fn stop(child: &mut Child) -> String {
    if let Ok(Ok(status)) = tokio::time::timeout(GRACE, child.wait()).await {
        return format!("exited ({status})");
    }
    if let Some(pid) = child.id() {
        let group = nix::unistd::Pid::from_raw(-(pid as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        if let Ok(Ok(status)) = tokio::time::timeout(GRACE, child.wait()).await {
            return format!("stopped on SIGTERM ({status})");
        }
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill().await;
    "was killed (SIGKILL)".to_owned()
}

/// The largest message a stdio upstream may send; a longer line is passed over (the call
/// it answered then ends at --tool-timeout), so a runaway child cannot exhaust memory.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Of a stderr line, only this much is kept (the log shows less still).
const MAX_STDERR_LINE: usize = 64 * 1024;

async fn log_stderr(name: Arc<str>, log: LogLines, stderr: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    while let Ok(Read::Line | Read::Cut(_)) =
        read_line(&mut lines, &mut line, MAX_STDERR_LINE).await
    {
        tracing::info!(upstream = &*name, "stderr: {}", log.show(&line));
    }
}

/// Copies the child's stdout to rmcp, line by line, skipping lines that cannot be JSON-RPC
/// (not an object or a batch) and messages over [`MAX_MESSAGE_BYTES`] with a warning.
async fn json_lines_only(
    name: Arc<str>,
    log: LogLines,
    stdout: impl AsyncRead + Unpin,
    mut to_client: tokio::io::DuplexStream,
) {
    let mut lines = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        match read_line(&mut lines, &mut line, MAX_MESSAGE_BYTES).await {
            Ok(Read::End) | Err(_) => return,
            Ok(Read::Cut(length)) => tracing::warn!(
                upstream = &*name,
                "skipped a message of {length} bytes on stdout: more than {MAX_MESSAGE_BYTES}"
            ),
            Ok(Read::Line) => match kind(&line) {
                Kind::Message if to_client.write_all(&line).await.is_err() => return,
                Kind::Message | Kind::Blank => {}
                Kind::Other => tracing::warn!(
                    upstream = &*name,
                    "skipped a line on stdout that is not JSON-RPC: {}",
                    log.show(&line)
                ),
            },
        }
    }
}
