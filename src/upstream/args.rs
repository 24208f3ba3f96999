//! The upstream flags (`serve`'s group for fronting an existing MCP server), owned here next
//! to the code that reads them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::http::HttpTarget;
use super::names::ToolFilter;
use super::stdio::StdioCommand;
use super::{Target, UpstreamConfig, config_file, values};

#[derive(Args)]
pub struct UpstreamArgs {
    /// Serve the tools, prompts and resources of the MCP server at this URL instead of
    /// latchkey's own: Streamable HTTP at http:// or https://, or unix:/path/to.sock for one
    /// listening on a Unix socket (at /mcp).
    #[arg(long, env = "LATCHKEY_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// A header sent to --upstream with every request, as 'NAME: VALUE' (repeatable). A
    /// VALUE of @/path reads the file, $NAME the environment variable: keep secrets out of
    /// the command line. Values are never logged.
    #[arg(long = "upstream-header", value_name = "'NAME: VALUE'")]
    pub upstream_headers: Vec<String>,

    /// How long a request to the upstream may take; then it fails and is cancelled upstream.
    /// ChatGPT gives up on a tool call near 60 s.
    #[arg(long, env = "LATCHKEY_TOOL_TIMEOUT", value_name = "DURATION", default_value = "55s",
          value_parser = parse_duration)]
    pub tool_timeout: Duration,

    /// While an upstream says nothing on a tool call whose client asked for progress, send
    /// that client a progress notification this often, marked as latchkey's (its message
    /// starts "latchkey:"): Claude Code resets its clock on progress. 0s turns it off.
    #[arg(long, env = "LATCHKEY_HEARTBEAT", value_name = "DURATION", default_value = "15s",
          value_parser = parse_duration)]
    pub heartbeat: Duration,

    /// Tell upstreams that latchkey can list the client's roots, and relay their
    /// `roots/list` to the client whose call asks (with --sessions). Off by default: a
    /// server that takes its directories from the client's roots (server-filesystem does)
    /// would then serve paths a client names instead of the ones it was started with.
    #[arg(long, env = "LATCHKEY_RELAY_ROOTS")]
    pub relay_roots: bool,

    /// Serve the MCP server this command starts (it speaks MCP on stdin and stdout), instead
    /// of latchkey's own tools: `latchkey serve -- npx -y @modelcontextprotocol/server-everything`.
    /// It gets a clean environment: PATH, HOME and LANG only.
    #[arg(last = true, value_name = "COMMAND", conflicts_with = "upstream")]
    pub command: Vec<OsString>,

    /// Pass this variable of latchkey's environment through to every upstream command
    /// (repeatable, or comma-separated), besides PATH, HOME and LANG: SSL_CERT_FILE or
    /// HTTPS_PROXY for a child that must reach the network through a proxy that
    /// intercepts TLS. A variable that is not set is left out; LATCHKEY_* ones are refused.
    #[arg(
        long = "pass-env",
        env = "LATCHKEY_PASS_ENV",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub pass_env: Vec<String>,

    /// A TOML file naming several upstreams, each with its command (env, cwd) or URL
    /// (headers), timeout and tool allow or deny list; their names then prefix their tools'
    /// (see README, "Several upstreams").
    #[arg(long, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl std::fmt::Debug for UpstreamArgs {
    /// Without secrets: the URL as [`crate::redact::url_for_display`] shows it, header names
    /// only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self
            .upstream_headers
            .iter()
            .map(|h| h.split_once(':').map_or("?", |(name, _)| name.trim()))
            .collect();
        f.debug_struct("UpstreamArgs")
            .field(
                "upstream",
                &self.upstream.as_deref().map(crate::redact::url_for_display),
            )
            .field("upstream_headers", &headers)
            .field("tool_timeout", &self.tool_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("relay_roots", &self.relay_roots)
            .field("command", &self.command)
            .field("config", &self.config)
            .field("pass_env", &self.pass_env)
            .finish()
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 30s, 5m, 1h)"))
}

impl UpstreamArgs {
    /// The upstreams these flags name (none: latchkey's own tools); a bad header is an
    /// error naming it (but not its value).
    pub fn configs(&self) -> anyhow::Result<Vec<UpstreamConfig>> {
        let passed = self.passed_env()?;
        let mut configs = self.named()?;
        for config in &mut configs {
            config.heartbeat = (!self.heartbeat.is_zero()).then_some(self.heartbeat);
            config.relay_roots = self.relay_roots;
            if let Target::Stdio(command) = &mut config.target {
                // Before the upstream's own `env`, which wins.
                command.env.splice(0..0, passed.iter().cloned());
            }
        }
        Ok(configs)
    }

    /// `--pass-env`'s variables that are set, with their values.
    fn passed_env(&self) -> anyhow::Result<Vec<(OsString, OsString)>> {
        let mut passed = Vec::new();
        for name in self
            .pass_env
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
        {
            if name.starts_with("LATCHKEY_") {
                anyhow::bail!("--pass-env {name}: latchkey's own settings stay with latchkey");
            }
            if let Some(value) = std::env::var_os(name) {
                passed.push((OsString::from(name), value));
            }
        }
        Ok(passed)
    }

    fn named(&self) -> anyhow::Result<Vec<UpstreamConfig>> {
        if let Some(path) = &self.config {
            if self.upstream.is_some() || !self.command.is_empty() {
                anyhow::bail!(
                    "--config names the upstreams: give it, --upstream or a command, not two"
                );
            }
            if !self.upstream_headers.is_empty() {
                anyhow::bail!("--upstream-header is for --upstream: with --config, use headers");
            }
            return config_file::read(path, self.tool_timeout);
        }
        if let Some((program, args)) = self.command.split_first() {
            if !self.upstream_headers.is_empty() {
                anyhow::bail!("--upstream-header is for --upstream, not a command");
            }
            let name = Path::new(program)
                .file_name()
                .unwrap_or(program)
                .to_string_lossy()
                .into_owned();
            return Ok(vec![UpstreamConfig {
                name,
                target: Target::Stdio(StdioCommand {
                    program: program.clone(),
                    args: args.to_vec(),
                    env: Vec::new(),
                    cwd: None,
                }),
                request_timeout: self.tool_timeout,
                tools: ToolFilter::All,
                heartbeat: None,
                relay_roots: false,
            }]);
        }
        let Some(url) = &self.upstream else {
            if !self.upstream_headers.is_empty() {
                anyhow::bail!("--upstream-header needs --upstream");
            }
            return Ok(Vec::new());
        };
        let headers = self
            .upstream_headers
            .iter()
            .map(|given| {
                let (name, value) = given
                    .split_once(':')
                    .context("--upstream-header must be 'NAME: VALUE'")?;
                values::header(name, value, "--upstream-header")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (target, name) = HttpTarget::parse(url, headers, "--upstream")?;
        Ok(vec![UpstreamConfig {
            name,
            target: Target::Http(target),
            request_timeout: self.tool_timeout,
            tools: ToolFilter::All,
            heartbeat: None,
            relay_roots: false,
        }])
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        upstream: UpstreamArgs,
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let flags = Flags::parse_from([
            "latchkey",
            "--upstream",
            "http://me:pw-secret@h/mcp?token=q-secret",
            "--upstream-header",
            "Authorization: Bearer h-secret",
        ]);
        let shown = format!("{:?}", flags.upstream);
        assert!(shown.contains("Authorization"), "{shown}");
        for secret in ["pw-secret", "q-secret", "h-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let command = StdioCommand {
            program: "server".into(),
            args: Vec::new(),
            env: vec![("TOKEN".into(), "e-secret".into())],
            cwd: None,
        };
        let shown = format!("{command:?}");
        assert!(
            shown.contains("TOKEN") && !shown.contains("e-secret"),
            "{shown}"
        );
    }
}
