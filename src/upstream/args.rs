//! The upstream flags (`serve`'s group for fronting an existing MCP server), owned here next
//! to the code that reads them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{HeaderName, HeaderValue};
use clap::Args;

use super::http::HttpTarget;
use super::stdio::StdioCommand;
use super::{Target, UpstreamConfig};

#[derive(Debug, Args)]
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

    /// Serve the MCP server this command starts (it speaks MCP on stdin and stdout), instead
    /// of latchkey's own tools: `latchkey serve -- npx -y @modelcontextprotocol/server-everything`.
    /// It gets a clean environment: PATH, HOME and LANG only.
    #[arg(last = true, value_name = "COMMAND", conflicts_with = "upstream")]
    pub command: Vec<OsString>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 30s, 5m, 1h)"))
}

impl UpstreamArgs {
    /// The upstream these flags name, if any; a bad header is an error naming it (but not
    /// its value).
    pub fn config(&self) -> anyhow::Result<Option<UpstreamConfig>> {
        if let Some((program, args)) = self.command.split_first() {
            if !self.upstream_headers.is_empty() {
                anyhow::bail!("--upstream-header is for --upstream, not a command");
            }
            let name = Path::new(program)
                .file_name()
                .unwrap_or(program)
                .to_string_lossy()
                .into_owned();
            return Ok(Some(UpstreamConfig {
                name,
                target: Target::Stdio(StdioCommand {
                    program: program.clone(),
                    args: args.to_vec(),
                    env: Vec::new(),
                    cwd: None,
                }),
                request_timeout: self.tool_timeout,
            }));
        }
        let Some(url) = &self.upstream else {
            if !self.upstream_headers.is_empty() {
                anyhow::bail!("--upstream-header needs --upstream");
            }
            return Ok(None);
        };
        let headers = self
            .upstream_headers
            .iter()
            .map(|h| header(h))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (url, socket, name) = match url.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => (
                "http://localhost/mcp".to_owned(),
                Some(PathBuf::from(path)),
                path.to_owned(),
            ),
            _ => {
                let parsed = reqwest::Url::parse(url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .with_context(|| {
                        format!(
                            "--upstream {:?} is not an http://, https:// or unix: URL",
                            crate::redact::url_for_display(url)
                        )
                    })?;
                let name = parsed.host_str().unwrap_or("upstream").to_owned();
                (url.clone(), None, name)
            }
        };
        Ok(Some(UpstreamConfig {
            name,
            target: Target::Http(HttpTarget {
                url,
                socket,
                headers,
            }),
            request_timeout: self.tool_timeout,
        }))
    }
}

/// `NAME: VALUE`, the value literal, `@file` or `$VARIABLE`.
fn header(given: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = given
        .split_once(':')
        .context("--upstream-header must be 'NAME: VALUE'")?;
    let name = HeaderName::try_from(name.trim())
        .with_context(|| format!("--upstream-header: {:?} is not a header name", name.trim()))?;
    let value = value.trim();
    let value = if let Some(path) = value.strip_prefix('@') {
        std::fs::read_to_string(path)
            .with_context(|| format!("--upstream-header {name}: cannot read {path}"))?
            .trim()
            .to_owned()
    } else if let Some(var) = value.strip_prefix('$') {
        std::env::var(var)
            .with_context(|| format!("--upstream-header {name}: ${var} is not set"))?
    } else {
        value.to_owned()
    };
    let mut value = HeaderValue::try_from(value).map_err(|_| {
        anyhow::anyhow!("--upstream-header {name}: the value is not a valid header value")
    })?;
    value.set_sensitive(true);
    Ok((name, value))
}
