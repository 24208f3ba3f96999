//! `latchkey watch`: the console's live calls in a terminal, for a server reached by SSH
//! (`docker compose exec latchkey latchkey watch`). It reads `{base}/activity` with the first
//! plain key configured, as `latchkey url` finds it, and follows it until interrupted,
//! reconnecting (from the last call it received) when the stream ends or, once the server
//! was reached, while it is away (a restart).

use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;

use crate::activity::{Call, Outcome};
use crate::cli::WatchArgs;
use crate::keys::KeyEntry;
use crate::listen::ListenAddr;

/// Waits between reconnections.
const RECONNECT: Duration = Duration::from_secs(1);

/// Where the feed is.
struct Feed {
    client: reqwest::Client,
    url: String,
    key: secrecy::SecretString,
}

impl Feed {
    fn from_args(args: &WatchArgs) -> anyhow::Result<Self> {
        let key = args
            .keys
            .sources()?
            .load()?
            .into_iter()
            .find_map(|configured| match configured.entry {
                KeyEntry::Plain(key) => Some(key),
                KeyEntry::Digest(_) => None,
            })
            .context("only sha256: digests are configured, so the key itself is not known here: give --api-key or --api-key-file")?;
        let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        let base = match (&args.url, args.listen.listen.first()) {
            (Some(url), _) => base_url(url)?,
            (None, Some(ListenAddr::Tcp(addr))) => format!(
                "{}{}",
                ListenAddr::local_http_base(*addr),
                args.listen.base_path
            ),
            (None, Some(ListenAddr::Unix(socket))) => {
                client = client.unix_socket(socket.clone());
                format!("http://localhost{}", args.listen.base_path)
            }
            (None, None) => anyhow::bail!("nowhere to watch: give --url"),
        };
        Ok(Feed {
            client: client.build().context("cannot make an HTTP client")?,
            url: format!("{base}{}", crate::console::ACTIVITY),
            key,
        })
    }

    /// Reads the feed from after `last` (or the last `recent` kept) until it ends.
    async fn follow(&self, query: &str, out: &mut Printer) -> Result<(), Failure> {
        let mut response = self
            .client
            .get(format!("{}?{query}", self.url))
            .bearer_auth(self.key.expose_secret())
            .send()
            .await
            .map_err(|e| Failure::again(format!("cannot reach {}: {}", self.url, plain(e))))?;
        match response.status() {
            status if status.is_success() => out.connected = true,
            reqwest::StatusCode::UNAUTHORIZED => {
                return Err(Failure::fatal(format!(
                    "{} does not accept the key configured here",
                    self.url
                )));
            }
            reqwest::StatusCode::FORBIDDEN => {
                return Err(Failure::fatal(format!(
                    "{} refused the key: the feed takes an API key, not an OAuth token",
                    self.url
                )));
            }
            reqwest::StatusCode::NOT_FOUND => {
                return Err(Failure::fatal(format!(
                    "{} is not served: is the console off (--no-console), or the base path another?",
                    self.url
                )));
            }
            status => return Err(Failure::again(format!("{} answered {status}", self.url))),
        }
        let mut pending = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap_or(None) {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                out.line(&line[..end], &mut std::io::stdout().lock())
                    .map_err(|e| Failure::fatal(format!("cannot write: {e}")))?;
            }
        }
        Ok(())
    }
}

/// Why a reading of the feed ended early: `fatal` when trying again cannot help (the key is
/// refused, the feed is not served, stdout is closed).
struct Failure {
    said: String,
    fatal: bool,
}

impl Failure {
    fn fatal(said: String) -> Self {
        Failure { said, fatal: true }
    }

    fn again(said: String) -> Self {
        Failure { said, fatal: false }
    }
}

/// `--url` as a base to put `/activity` after; a URL holding a key (a pasted connector URL)
/// is refused without repeating it.
fn base_url(url: &str) -> anyhow::Result<String> {
    let parsed: http::Uri = url
        .parse()
        .map_err(|_| anyhow::anyhow!("--url is not a URL"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        anyhow::bail!("--url must be an http:// or https:// URL");
    }
    if parsed.query().is_some() || parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
        anyhow::bail!(
            "--url must be the server's base URL, with no query or user (the key is read from --api-key or --api-key-file)"
        );
    }
    let base = url.trim_end_matches('/');
    Ok(base
        .strip_suffix(crate::configuration::MCP_PATH)
        .unwrap_or(base)
        .to_owned())
}

/// The error's own words and its causes' (the URL, holding no key, is said before them).
fn plain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Prints the calls that pass the filters, and remembers the last one seen.
struct Printer {
    json: bool,
    color: bool,
    tool: Option<String>,
    client: Option<String>,
    outcome: Option<Outcome>,
    last: u64,
    /// Whether the feed was reached once: after that, a lost connection (a restart) is
    /// waited out.
    connected: bool,
}

impl Printer {
    fn line(&mut self, line: &[u8], stdout: &mut impl Write) -> anyhow::Result<()> {
        let Ok(call) = serde_json::from_slice::<Call>(line) else {
            return Ok(());
        };
        let passed_over = match self.last {
            0 => 0,
            last => call.id.saturating_sub(last + 1),
        };
        self.last = self.last.max(call.id);
        // The feed keeps the last 1,000 calls for a reader: at a pace it cannot keep up
        // with, it passes over the older ones, and the ids say so (`--json` keeps them).
        if passed_over > 0 && !self.json {
            writeln!(
                stdout,
                "… {passed_over} calls passed over: they came faster than the feed keeps them"
            )?;
        }
        if !self.passes(&call) {
            return Ok(());
        }
        if self.json {
            writeln!(stdout, "{}", json_shown(line))?;
        } else {
            writeln!(stdout, "{}", render(&call, self.color))?;
        }
        stdout.flush()?;
        Ok(())
    }

    fn passes(&self, call: &Call) -> bool {
        let name = call
            .tool
            .as_deref()
            .or(call.prompt.as_deref())
            .unwrap_or("");
        let has = |filter: &Option<String>, value: &str| {
            filter
                .as_deref()
                .is_none_or(|f| value.to_lowercase().contains(&f.to_lowercase()))
        };
        has(&self.tool, name)
            && has(&self.client, call.client.as_deref().unwrap_or(""))
            && self.outcome.is_none_or(|o| call.outcome == o)
    }
}

/// A call as one line: time, client, method and name, outcome, duration. What a client
/// chose is written with its control characters escaped, so it cannot drive the terminal.
fn render(call: &Call, color: bool) -> String {
    let time =
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(call.at_ms))
            .to_string();
    let name = call.tool.as_deref().or(call.prompt.as_deref());
    let what = match name {
        Some(name) => format!("{} {}", shown(&call.method), shown(name)),
        None => shown(&call.method),
    };
    let outcome = shown(&call.outcome_text());
    let outcome = match (color, call.outcome) {
        (false, _) => outcome,
        (true, Outcome::Ok) => format!("\x1b[32m{outcome}\x1b[0m"),
        (true, Outcome::Cancelled) => format!("\x1b[33m{outcome}\x1b[0m"),
        (true, _) => format!("\x1b[1;31m{outcome}\x1b[0m"),
    };
    format!(
        "{time}  {client}  {what}  {outcome}  {ms:.1} ms",
        client = shown(call.client.as_deref().unwrap_or("-")),
        ms = call.duration_ms,
    )
}

/// Characters that would drive or reorder a terminal: control characters (C0 and C1,
/// escape sequences among them) and bidi controls, as `crate::html` counts them.
fn drives_the_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with what drives a terminal written as escapes.
fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if drives_the_terminal(c) {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A JSON line with what drives a terminal as `\u` escapes (still JSON: such characters
/// can only be inside its strings, where an escape means the same).
fn json_shown(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .chars()
        .map(|c| {
            if drives_the_terminal(c) {
                format!("\\u{:04x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let feed = Feed::from_args(&args)?;
    let mut printer = Printer {
        json: args.json,
        color: !args.json && std::io::stdout().is_terminal(),
        tool: args.tool,
        client: args.client,
        outcome: args.outcome,
        last: 0,
        connected: false,
    };
    let mut query = format!("recent={}", args.recent);
    if args.once {
        query.push_str("&follow=false");
    }
    let mut waiting = false;
    loop {
        match feed.follow(&query, &mut printer).await {
            Ok(()) => waiting = false,
            Err(failure) if failure.fatal || !printer.connected || args.once => {
                anyhow::bail!("{}", failure.said)
            }
            Err(failure) => {
                if !std::mem::replace(&mut waiting, true) {
                    eprintln!(
                        "latchkey watch: {}; trying again every {RECONNECT:?}",
                        failure.said
                    );
                }
            }
        }
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(RECONNECT).await;
        query = format!("after={}", printer.last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls the feed passed over (it keeps the last 1,000 for a reader) are said, in
    /// words; with `--json` the ids say it.
    #[test]
    fn calls_passed_over_are_said() {
        let printed = |json: bool| {
            let mut printer = Printer {
                json,
                color: false,
                tool: None,
                client: None,
                outcome: None,
                last: 0,
                connected: true,
            };
            let mut out = Vec::new();
            for id in [3, 4, 9] {
                let line = format!(
                    r#"{{"id":{id},"at_ms":0,"method":"tools/call","tool":"hello","outcome":"ok","duration_ms":1.0}}"#
                );
                printer.line(line.as_bytes(), &mut out).unwrap();
            }
            String::from_utf8(out).unwrap()
        };
        let text = printed(false);
        assert_eq!(text.lines().count(), 4, "{text}");
        assert_eq!(
            text.lines().nth(2),
            Some("… 4 calls passed over: they came faster than the feed keeps them")
        );
        assert_eq!(printed(true).lines().count(), 3);
    }

    #[test]
    fn a_line_cannot_drive_the_terminal() {
        let call = Call {
            id: 1,
            at_ms: 0,
            method: "tools/call".into(),
            tool: Some("x\u{1b}[2J\u{202E}".into()),
            prompt: None,
            client: Some("Claude".into()),
            outcome: Outcome::Error,
            error: Some("-32602".into()),
            duration_ms: 1.25,
            arguments_bytes: None,
            answer_bytes: None,
            trace_id: None,
            arguments: None,
            result: None,
        };
        let line = render(&call, false);
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202E}'),
            "{line:?}"
        );
        let json = json_shown("{\"method\":\"x\u{9b}2J\u{200F}\"}".as_bytes());
        assert_eq!(json, r#"{"method":"x\u009b2J\u200f"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["method"], "x\u{9b}2J\u{200F}", "the same JSON");
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z  Claude  tools/call x\\u{1b}[2J\\u{202e}  error -32602  1.2 ms"
        );
    }
}
