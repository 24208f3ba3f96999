//! The configuration file (`--config`, TOML): several upstreams, each an `[upstreams.NAME]`
//! table with a `command` (and `env`, `cwd`) or a `url` (and `headers`), an optional
//! `timeout`, and a tool allow or deny list.
//!
//! ```toml
//! [upstreams.files]
//! command = ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/data"]
//! env = { NODE_OPTIONS = "--max-old-space-size=256" }
//! tools.deny = ["write_file"]
//!
//! [upstreams.notes]
//! url = "http://notes:8000/mcp"
//! headers = { Authorization = "$NOTES_TOKEN" }
//! timeout = "20s"
//! ```
//!
//! Unknown keys are errors (a misspelt `tools.alow` must not silently allow everything).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use super::http::HttpTarget;
use super::names::{ToolFilter, is_valid_upstream_name};
use super::stdio::StdioCommand;
use super::{Target, UpstreamConfig, values};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    upstreams: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout: Option<String>,
    #[serde(default)]
    tools: Tools,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Tools {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

/// The upstreams `path` names; `timeout` for those that give none. Every error is one line
/// that starts with the file (and line, for a TOML error) and names the upstream.
pub fn read(path: &Path, timeout: Duration) -> anyhow::Result<Vec<UpstreamConfig>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("--config {shown}"))?;
    let file: File = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{column}")
        });
        anyhow::anyhow!("{shown}{at}: {}", e.message().trim())
    })?;
    if file.upstreams.is_empty() {
        anyhow::bail!("{shown}: no [upstreams.NAME] table: name at least one upstream");
    }
    file.upstreams
        .into_iter()
        .map(|(name, entry)| {
            entry
                .config(&name, timeout)
                .with_context(|| format!("{shown}: [upstreams.{name}]"))
        })
        .collect()
}

impl Entry {
    fn config(self, name: &str, timeout: Duration) -> anyhow::Result<UpstreamConfig> {
        if !is_valid_upstream_name(name) {
            anyhow::bail!(
                "an upstream's name is 1 to 32 letters, digits and '-' (it prefixes its tools' names)"
            );
        }
        let target = match (self.command, self.url) {
            (Some(_), Some(_)) => anyhow::bail!("give command or url, not both"),
            (None, None) => anyhow::bail!("give command (a stdio server) or url (an HTTP one)"),
            (Some(command), None) => {
                if !self.headers.is_empty() {
                    anyhow::bail!("headers are for a url, not a command");
                }
                let mut command = command.into_iter();
                let program = command
                    .next()
                    .context("command is empty: give the program and its arguments")?;
                let env = self
                    .env
                    .iter()
                    .map(|(k, v)| Ok((k.into(), values::resolve(v, &format!("env {k}"))?.into())))
                    .collect::<anyhow::Result<_>>()?;
                Target::Stdio(StdioCommand {
                    program: program.into(),
                    args: command.map(Into::into).collect(),
                    env,
                    cwd: self.cwd,
                })
            }
            (None, Some(url)) => {
                if !self.env.is_empty() || self.cwd.is_some() {
                    anyhow::bail!("env and cwd are for a command, not a url");
                }
                let headers = self
                    .headers
                    .iter()
                    .map(|(k, v)| values::header(k, v, "header"))
                    .collect::<anyhow::Result<_>>()?;
                Target::Http(HttpTarget::parse(&url, headers, "url")?.0)
            }
        };
        let tools = match (self.tools.allow, self.tools.deny) {
            (Some(_), Some(_)) => anyhow::bail!("give tools.allow or tools.deny, not both"),
            (Some(allow), None) => ToolFilter::Only(allow),
            (None, Some(deny)) => ToolFilter::AllBut(deny),
            (None, None) => ToolFilter::All,
        };
        let request_timeout = match self.timeout {
            None => timeout,
            Some(given) => humantime::parse_duration(&given)
                .map_err(|e| anyhow::anyhow!("timeout {given:?}: {e} (expected e.g. 30s)"))?,
        };
        Ok(UpstreamConfig {
            name: name.to_owned(),
            target,
            request_timeout,
            tools,
            heartbeat: None,
            relay_roots: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(text: &str) -> anyhow::Result<Vec<UpstreamConfig>> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        read(file.path(), Duration::from_secs(55)).map_err(|e| {
            // Errors name the file; the tests compare what follows it.
            let shown = format!("{e:#}");
            anyhow::anyhow!(
                "{}",
                shown.replacen(&file.path().display().to_string(), "F", 1)
            )
        })
    }

    #[test]
    fn reads_a_command_and_a_url() {
        let upstreams = read_str(
            r#"
            [upstreams.files]
            command = ["npx", "-y", "server", "/data"]
            env = { A = "1" }
            cwd = "/tmp"
            tools.deny = ["write"]

            [upstreams.notes]
            url = "http://notes:8000/mcp"
            headers = { Authorization = "Bearer x" }
            timeout = "20s"
            "#,
        )
        .unwrap();
        assert_eq!(upstreams.len(), 2);
        let files = &upstreams[0];
        assert_eq!(files.name, "files");
        let Target::Stdio(command) = &files.target else {
            panic!("files is a command")
        };
        assert_eq!(command.program, "npx");
        assert_eq!(command.args.len(), 3);
        assert_eq!(command.env, vec![("A".into(), "1".into())]);
        assert!(!files.tools.allows("write") && files.tools.allows("read"));
        assert_eq!(files.request_timeout, Duration::from_secs(55));
        let notes = &upstreams[1];
        assert!(matches!(&notes.target, Target::Http(t) if t.headers.len() == 1));
        assert_eq!(notes.request_timeout, Duration::from_secs(20));
    }

    #[test]
    fn each_mistake_is_one_line_that_says_where() {
        for (text, expected) in [
            (
                "[upstreams.a]\ncommand = [\"x\"]\nurl = \"http://h\"",
                "F: [upstreams.a]: give command or url, not both",
            ),
            (
                "[upstreams.a]\n",
                "F: [upstreams.a]: give command (a stdio server) or url (an HTTP one)",
            ),
            (
                "[upstreams.a_b]\ncommand = [\"x\"]",
                "F: [upstreams.a_b]: an upstream's name is",
            ),
            (
                "[upstreams.a]\ncommand = []",
                "F: [upstreams.a]: command is empty",
            ),
            (
                "[upstreams.a]\ncommand = [\"x\"]\ntools.alow = [\"r\"]",
                "F:3:7: unknown field `alow`",
            ),
            (
                "[upstreams.a]\ncommand = [\"x\"]\ntools = { allow = [\"r\"], deny = [\"w\"] }",
                "F: [upstreams.a]: give tools.allow or tools.deny, not both",
            ),
            (
                "[upstreams.a]\nurl = \"ftp://h\"",
                "F: [upstreams.a]: url \"ftp://h\" is not an http://",
            ),
            (
                "[upstreams.a]\ncommand = [\"x\"]\ntimeout = \"soon\"",
                "F: [upstreams.a]: timeout \"soon\"",
            ),
            (
                "[upstreams.a]\ncommand = [\"x\"]\nenv = { T = \"$TEST_UNSET_VARIABLE_7\" }",
                "F: [upstreams.a]: env T: $TEST_UNSET_VARIABLE_7 is not set",
            ),
            (
                "[upstreams.a]\ncommand = [\"x\"]\nenv = { K = \"$LATCHKEY_API_KEY\" }",
                "F: [upstreams.a]: env K: $LATCHKEY_API_KEY is latchkey's own setting",
            ),
            ("", "F: no [upstreams.NAME] table"),
            ("[upstreams.a\n", "F:1:"),
        ] {
            let error = read_str(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.starts_with(expected), "{text:?}: got {error:?}");
            assert!(!error.contains('\n'), "{text:?}: one line, got {error:?}");
        }
    }
}
