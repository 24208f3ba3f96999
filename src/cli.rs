//! The command line: every flag, its environment variable and its help text.
//!
//! Values are parsed into their final types here, so a bad value is reported by clap as
//! one line naming the flag. Keys are the exception: they are checked later, by a message
//! that never repeats them (clap would echo a rejected value).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use nix::unistd::Gid;
use secrecy::SecretString;

use crate::configuration::{BasePath, KeySources, PublicUrl};
use crate::host_origin::{HostPattern, OriginPattern};
use crate::listen::{self, ListenAddr};
use crate::oauth::args::OAuthArgs;
use crate::telemetry::LogFormat;
use crate::tls::args::{AcmeDomainArgs, TlsArgs};
use crate::upstream::args::UpstreamArgs;

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    // No command means `serve`: say so where the usage is read first.
    override_usage = "latchkey [serve] [OPTIONS] [-- UPSTREAM COMMAND...]\n       latchkey <COMMAND>",
    about = "Reach your own tools from ChatGPT, Claude and any remote MCP client, behind a key.",
    long_about = "latchkey serves MCP (Streamable HTTP) behind an API key, on TCP or a Unix socket.\n\n\
        Run with no command to serve (the same as `latchkey serve`). With no key configured, \
        latchkey generates one, keeps it in the state directory and reuses it on every start; \
        `latchkey url` prints the connector URL to paste into ChatGPT.\n\n\
        Every flag can also be set by the environment variable shown with it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process arguments; with no command given, `serve` is implied. A bad value
    /// that came from a variable, not the command line, is said to come from it (clap names
    /// only the flag, and `LATCHKEY_SESSIONS=flase` is then hard to find).
    pub fn parse_with_default_command() -> Self {
        let args = with_default_command(std::env::args_os());
        match Self::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(e) => {
                let rendered = e.render().to_string();
                match variable_behind(&e, &args) {
                    Some(variable) => {
                        let (first, rest) = rendered.split_once('\n').unwrap_or((&rendered, ""));
                        eprintln!("{first} (from the variable {variable})\n{rest}");
                        std::process::exit(e.exit_code());
                    }
                    None => e.exit(),
                }
            }
        }
    }
}

/// The variable a refused value came from: the flag clap names has one, it is set, and the
/// flag itself is not on the command line.
fn variable_behind(e: &clap::Error, args: &[OsString]) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let given = args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")))
    });
    if given {
        return None;
    }
    let command = Cli::command();
    let mut commands = vec![&command];
    commands.extend(command.get_subcommands());
    commands
        .iter()
        .flat_map(|c| c.get_arguments())
        .filter(|a| a.get_long() == Some(long))
        .find_map(|a| a.get_env())
        .and_then(|env| env.to_str())
        .filter(|env| std::env::var_os(env).is_some())
        .map(str::to_owned)
}

/// One line for each `LATCHKEY_*` variable set that no flag reads (a misspelled
/// `LATCHKEY_LISTN` was silently ignored), with the nearest name.
pub fn unread_variables() -> Vec<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let mut known: Vec<String> = Vec::new();
    let mut stack = vec![&command];
    while let Some(c) = stack.pop() {
        known.extend(
            c.get_arguments()
                .filter_map(|a| a.get_env()?.to_str().map(str::to_owned)),
        );
        stack.extend(c.get_subcommands());
    }
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("LATCHKEY_") && !known.contains(name))
        .map(|name| {
            let nearest = known
                .iter()
                .min_by_key(|k| strsim::levenshtein(&name, k))
                .map_or(String::new(), |k| format!(" (did you mean {k}?)"));
            format!("the variable {name} is set but no setting of latchkey reads it{nearest}")
        })
        .collect()
}

/// Inserts `serve` when the first argument is not a command (or a top-level help/version
/// flag), so `latchkey` and `latchkey --listen …` serve.
pub fn with_default_command(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_command = matches!(
        first,
        "serve"
            | "keygen"
            | "healthcheck"
            | "url"
            | "watch"
            | "oauth"
            | "doctor"
            | "help"
            | "-h"
            | "--help"
            | "-V"
            | "--version"
    );
    if !is_command {
        args.insert(1.min(args.len()), OsString::from("serve"));
    }
    args
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over HTTP (what `latchkey` does with no command).
    Serve(Box<ServeArgs>),
    /// Print a new random API key (256 bits, URL-safe), or the sha256: form of a key.
    Keygen(KeygenArgs),
    /// Exit 0 when latchkey's /healthz answers 200, else 1 with the reason (for Docker).
    Healthcheck(HealthcheckArgs),
    /// Print the connector URL, key included, to paste into ChatGPT.
    Url(UrlArgs),
    /// Follow the MCP calls clients make, live, as the console shows them: one line each
    /// (or JSON). Finds the server and its key as `url` does.
    Watch(WatchArgs),
    /// Manage OAuth (`--oauth`): list clients and grants, revoke them, hash a passphrase.
    #[command(subcommand)]
    Oauth(OAuthCommand),
    /// Check, from the outside in, what ChatGPT or Claude meets at a connector URL (DNS, port,
    /// TLS, the MCP endpoint with the key and without, the well-known paths, User-Agent rules,
    /// time against each client's budget): one line a check, a fix for each failure; exit 0
    /// only when every check the client needs passes.
    Doctor(DoctorArgs),
}

#[derive(Debug, Subcommand)]
pub enum OAuthCommand {
    /// List registered clients and the grants given to clients, from the state directory.
    List(OAuthStoreArgs),
    /// Revoke grants: a client's (its registration too), or all. A running latchkey stops
    /// accepting their tokens within a second.
    Revoke(OAuthRevokeArgs),
    /// Read a passphrase on stdin and print its argon2 hash, for --oauth-passphrase-file.
    Passphrase,
}

#[derive(Debug, Args)]
pub struct OAuthStoreArgs {
    /// The state directory of the latchkey whose grants these are
    /// [default: $XDG_STATE_HOME/latchkey, else ~/.local/state/latchkey].
    #[arg(long, env = "LATCHKEY_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OAuthRevokeArgs {
    /// The client id (as `latchkey oauth list` shows it) whose grants to revoke.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub client: Option<String>,

    /// Revoke every grant and registration.
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub store: OAuthStoreArgs,
}

/// Where latchkey listens and under which path it serves.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on: HOST:PORT, or unix:/path/to/socket. Repeat the flag (or separate
    /// with commas in the variable) to listen on several.
    #[arg(
        long = "listen",
        env = "LATCHKEY_LISTEN",
        value_name = "ADDR",
        value_delimiter = ',',
        default_value = "127.0.0.1:8080"
    )]
    pub listen: Vec<ListenAddr>,

    /// Path prefix for every route: with /mcptest, MCP is served at /mcptest/mcp. Empty serves
    /// MCP at /mcp. Behind a reverse proxy, use the proxy's prefix.
    #[arg(
        long,
        env = "LATCHKEY_BASE_PATH",
        value_name = "PATH",
        default_value = ""
    )]
    pub base_path: BasePath,
}

/// Which keys open the connector.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// API key(s), comma-separated: each a plain key of 32+ characters or sha256:<64 hex>
    /// (see `latchkey keygen --digest`). Prefer --api-key-file: a flag shows in `ps`.
    #[arg(
        long = "api-key",
        env = "LATCHKEY_API_KEY",
        value_name = "KEY",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub api_key: Vec<SecretString>,

    /// File with one key (or sha256: digest) per line, optionally followed by a space and a
    /// label the console names the key by; `#` starts a comment. Re-read on SIGHUP, so keys
    /// rotate without a restart. Fits Docker secrets (/run/secrets/…).
    #[arg(long, env = "LATCHKEY_API_KEY_FILE", value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,

    /// Where latchkey keeps the key it generates when none is configured
    /// [default: $XDG_STATE_HOME/latchkey, else ~/.local/state/latchkey].
    #[arg(long, env = "LATCHKEY_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl KeyArgs {
    /// Where these flags say the keys come from (see `KeySources::resolve`).
    pub fn sources(&self) -> anyhow::Result<KeySources> {
        KeySources::resolve(
            &self.api_key,
            self.api_key_file.as_deref(),
            self.state_dir.as_deref(),
        )
    }
}

/// The address people and clients use to reach latchkey.
#[derive(Debug, Args)]
pub struct PublicUrlArgs {
    /// The URL clients use to reach latchkey's base path, e.g. https://example.com/mcptest.
    /// Used wherever latchkey tells its own address; its host is allowed as Host and its origin
    /// as Origin.
    #[arg(long, env = "LATCHKEY_PUBLIC_URL", value_name = "URL", value_parser = PublicUrlParser)]
    pub public_url: Option<PublicUrl>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub listen: ListenArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    #[command(flatten)]
    pub public_url: PublicUrlArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub oauth: OAuthArgs,

    /// Permission bits of Unix sockets (octal). 0660 lets the socket's group connect.
    #[arg(long, env = "LATCHKEY_SOCKET_MODE", value_name = "MODE", default_value = "0660",
          value_parser = listen::parse_socket_mode)]
    pub socket_mode: u32,

    /// Group (name or gid) given to Unix sockets, e.g. the reverse proxy's group.
    #[arg(long, env = "LATCHKEY_SOCKET_GROUP", value_name = "GROUP",
          value_parser = listen::parse_group)]
    pub socket_group: Option<Gid>,

    /// Host header values accepted (DNS-rebinding guard): host or host:port, `*` for any.
    /// Replaces the default: localhost, 127.0.0.1, ::1 and the host of --public-url.
    #[arg(
        long = "allowed-host",
        env = "LATCHKEY_ALLOWED_HOST",
        value_name = "HOST",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<HostPattern>,

    /// Origin header values accepted: scheme://host[:port], port `*` for any, `*` for all.
    /// Replaces the default: ChatGPT's and Claude's origins and that of --public-url.
    /// Requests without Origin (not from a browser) always pass.
    #[arg(
        long = "allowed-origin",
        env = "LATCHKEY_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<OriginPattern>,

    /// Keep MCP sessions (rmcp stateful mode, SSE responses) instead of answering every
    /// request on its own (stateless, JSON responses: what ChatGPT works best with).
    #[arg(long, env = "LATCHKEY_SESSIONS", value_parser = BoolishValueParser::new())]
    pub sessions: bool,

    /// With --sessions: most live sessions; a new one beyond it gets 503.
    #[arg(long, env = "LATCHKEY_MAX_SESSIONS", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,

    /// With --sessions: a session idle this long is closed (e.g. 300s, 10m, 1h).
    #[arg(long, env = "LATCHKEY_SESSION_IDLE_TIMEOUT", value_name = "DURATION",
          default_value = "5m", value_parser = parse_duration)]
    pub session_idle_timeout: Duration,

    /// Log line format on stderr [default: text on a terminal, json otherwise].
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Check the configuration and exit, serving nothing: read the keys, start every upstream
    /// and list its tools, and say what is wrong (an upstream that cannot start, a tool allow
    /// or deny entry that names none of its tools). Exit 0 when nothing is, 1 otherwise.
    #[arg(long)]
    pub check_config: bool,

    /// Do not serve the activity console at {base}/console (nor the feed `latchkey watch`
    /// reads at {base}/activity). On, it costs a record of each MCP call in memory.
    #[arg(long, env = "LATCHKEY_NO_CONSOLE", value_parser = BoolishValueParser::new())]
    pub no_console: bool,

    /// How long the console's history keeps calls (in activity.sqlite3 in the state
    /// directory), e.g. 30d, 12h.
    #[arg(long, env = "LATCHKEY_HISTORY_RETENTION", value_name = "DURATION",
          default_value = "30d", value_parser = humantime::parse_duration)]
    pub history_retention: std::time::Duration,

    /// The largest the history database may grow; the oldest calls go first beyond it.
    #[arg(long, env = "LATCHKEY_HISTORY_MAX_SIZE", value_name = "SIZE", default_value = "256MiB",
          value_parser = parse_size)]
    pub history_max_size: usize,

    /// How long a console sign-in lasts (e.g. 12h, 30m); changing the key or passphrase
    /// ends it sooner.
    #[arg(long, env = "LATCHKEY_CONSOLE_SESSION_LIFETIME", value_name = "DURATION",
          default_value = "12h", value_parser = humantime::parse_duration)]
    pub console_session_lifetime: std::time::Duration,

    /// Record tool arguments and results on exported spans and show them in the console
    /// (values under sensitive-looking keys such as password or token redacted; in the
    /// console cut to 4 KiB, never kept in its history). Off: only their sizes are recorded.
    #[arg(long, env = "LATCHKEY_TRACE_TOOL_IO", value_parser = BoolishValueParser::new())]
    pub trace_tool_io: bool,

    /// Offer upstream tools only as approved: a new tool, or one whose description, schema
    /// or annotations changed, is withheld from clients until you approve it in the console
    /// (Tool changes). The first listing of an upstream is approved as it is. Approvals are
    /// kept in pinned-tools.json in the state directory.
    #[arg(long, env = "LATCHKEY_PIN_TOOLS", value_parser = BoolishValueParser::new())]
    pub pin_tools: bool,

    /// Once every listener is bound, write where latchkey listens to this file (JSON: the
    /// http, https, redirect and unix URLs), e.g. to learn the ports given for :0. Removed at
    /// shutdown.
    #[arg(long, env = "LATCHKEY_ADDRESS_FILE", value_name = "PATH")]
    pub address_file: Option<PathBuf>,

    /// On SIGTERM/SIGINT, how long requests in flight may take to finish before exit.
    #[arg(long, env = "LATCHKEY_SHUTDOWN_TIMEOUT", value_name = "DURATION",
          default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Read a key on stdin and print its sha256:<hex> form, to configure without the key.
    #[arg(long, env = "LATCHKEY_KEYGEN_DIGEST", value_parser = BoolishValueParser::new())]
    pub digest: bool,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Health URL to GET [default: /healthz on the first --listen address].
    #[arg(
        long,
        env = "LATCHKEY_HEALTHCHECK_URL",
        value_name = "URL",
        conflicts_with = "socket"
    )]
    pub url: Option<String>,

    /// Unix socket to GET /healthz on (the base path applies).
    #[arg(long, env = "LATCHKEY_HEALTHCHECK_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Give up after this long.
    #[arg(long, env = "LATCHKEY_HEALTHCHECK_TIMEOUT", value_name = "DURATION", default_value = "5s",
          value_parser = parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Debug, Args)]
pub struct UrlArgs {
    #[command(flatten)]
    pub listen: ListenArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    #[command(flatten)]
    pub public_url: PublicUrlArgs,

    #[command(flatten)]
    pub acme: AcmeDomainArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The server's base URL [default: the first --listen address, under --base-path].
    #[arg(long, env = "LATCHKEY_WATCH_URL", value_name = "URL")]
    pub url: Option<String>,

    /// One JSON object per call and line, as the server sends it.
    #[arg(long)]
    pub json: bool,

    /// Only calls of tools or prompts whose name contains this.
    #[arg(long, value_name = "TEXT")]
    pub tool: Option<String>,

    /// Only calls from clients whose name contains this.
    #[arg(long, value_name = "TEXT")]
    pub client: Option<String>,

    /// Only calls that ended so.
    #[arg(long, value_enum)]
    pub outcome: Option<crate::activity::Outcome>,

    /// Calls already made to show first (the server keeps the last 1000).
    #[arg(long, value_name = "N", default_value = "20")]
    pub recent: usize,

    /// Print the --recent calls and stop, instead of following.
    #[arg(long)]
    pub once: bool,

    #[command(flatten)]
    pub listen: ListenArgs,

    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The connector URL as you would paste it into the client: the key in the query
    /// (?api_key=…) or the path (/mcp/<key>), or none (then --key-file for the header forms,
    /// or an OAuth server). The key is never printed.
    #[arg(value_name = "URL", value_parser = parse_secret)]
    pub url: SecretString,

    /// The client to hold the URL to: what it accepts (port, key forms) and how long it waits.
    #[arg(long, value_enum, default_value = "any")]
    pub client: crate::doctor::Client,

    /// The results as one JSON document.
    #[arg(long)]
    pub json: bool,

    /// HOST:PORT:ADDR: reach HOST on PORT at ADDR instead of asking DNS (as curl's option);
    /// repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<crate::doctor::Resolve>,

    /// A CA certificate (PEM) to trust besides the platform's roots, for a server with a
    /// private CA.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// The key, for the header forms (Authorization: Bearer, X-API-Key), when the URL holds
    /// none. Prefer --key-file: a flag shows in `ps`.
    #[arg(long, env = "LATCHKEY_DOCTOR_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub key: Option<SecretString>,

    /// A file whose first plain key is used as --key is (a latchkey key file will do).
    #[arg(long, value_name = "PATH", conflicts_with = "key")]
    pub key_file: Option<PathBuf>,

    /// With OAuth: register a client with ChatGPT's and Claude's redirect URIs, as they
    /// would, to see both accepted; the registration is removed again. Without it, only the
    /// metadata is read, and nothing is written on the server.
    #[arg(long)]
    pub register: bool,
}

/// Keys are never rejected by clap, which would print the value: see `keys::parse_flag_entries`.
fn parse_secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_owned()))
}

/// Parses `--public-url` with an error that does not repeat the value: a URL pasted with its
/// `?api_key=` would otherwise land in the error message.
#[derive(Clone)]
struct PublicUrlParser;

impl clap::builder::TypedValueParser for PublicUrlParser {
    type Value = PublicUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PublicUrl, clap::Error> {
        value
            .to_str()
            .ok_or_else(|| "not valid UTF-8".to_owned())
            .and_then(str::parse)
            .map_err(|e| {
                clap::Error::raw(
                    clap::error::ErrorKind::ValueValidation,
                    format!("invalid value for '--public-url <URL>': {e}\n"),
                )
                .with_cmd(cmd)
            })
    }
}

/// What one client may ask of the server, and how many clients at once: sized for one
/// person's connector on a small VPS (SECURITY.md lists each with its reason).
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest request body (an MCP message): a larger one gets 413 and a JSON-RPC error.
    /// Bytes, or with KiB/MiB.
    #[arg(long, env = "LATCHKEY_MAX_BODY", value_name = "SIZE", default_value = "1MiB",
          value_parser = parse_size)]
    pub max_body: usize,

    /// Largest request head: request line and headers (431 beyond). At least 8KiB.
    #[arg(long, env = "LATCHKEY_MAX_HEADER_BYTES", value_name = "SIZE", default_value = "16KiB",
          value_parser = parse_header_bytes)]
    pub max_header_bytes: usize,

    /// Most header fields in a request (431 beyond).
    #[arg(long, env = "LATCHKEY_MAX_HEADERS", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(8..))]
    pub max_headers: u16,

    /// Longest request URI, path and query (414 beyond).
    #[arg(long, env = "LATCHKEY_MAX_URI_BYTES", value_name = "SIZE", default_value = "8KiB",
          value_parser = parse_size)]
    pub max_uri_bytes: usize,

    /// Time a client has to send a request's headers, from connecting or from the end of its
    /// previous response (slow clients are cut off; an idle HTTP/1.1 connection closes then).
    /// Also how long a connection that has completed no request is kept, how long the OAuth
    /// endpoints wait for a body, and how long an HTTP/2 client has to answer a PING.
    #[arg(long, env = "LATCHKEY_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// A connection with no request in flight for this long is closed (an answer still being
    /// sent, such as an open event stream, counts as one); HTTP/2 connections are pinged
    /// after this long without frames.
    #[arg(long, env = "LATCHKEY_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s",
          value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// Connections served at once on each listener. At the cap a new connection takes the
    /// place of an idle one (of the address holding the most); when every connection has a
    /// request in flight, it gets 503 and is closed.
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Requests with a valid key in flight at once; more get 503 with Retry-After.
    #[arg(long, env = "LATCHKEY_MAX_REQUESTS", value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests: u32,

    /// Wrong keys from one client (an address; an IPv6 /64) within --lockout that lock it
    /// out for --lockout (429 with Retry-After). 0 turns the lockout off.
    #[arg(
        long,
        env = "LATCHKEY_MAX_KEY_FAILURES",
        value_name = "N",
        default_value_t = 10
    )]
    pub max_key_failures: u32,

    /// The window wrong keys are counted in, and how long a client is then locked out.
    #[arg(long, env = "LATCHKEY_LOCKOUT", value_name = "DURATION", default_value = "15m",
          value_parser = parse_positive_duration)]
    pub lockout: Duration,

    /// Accept requests only from this network (CIDR, e.g. 203.0.113.0/24, or one address;
    /// repeatable, or comma-separated); others get 403. Behind the bundled proxy, on the
    /// Unix socket, the client is the address the proxy puts in X-Forwarded-For.
    #[arg(long = "allowed-client", env = "LATCHKEY_ALLOWED_CLIENT", value_name = "CIDR",
          value_delimiter = ',', value_parser = crate::clients::parse_network)]
    pub allowed_clients: Vec<ipnet::IpNet>,
}

/// Parses a size: bytes, or a number with KiB or MiB.
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1024,
        "MiB" | "M" => 1024 * 1024,
        _ => return Err("expected bytes, or a number with KiB or MiB (e.g. 1MiB)".into()),
    };
    match digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
    {
        Some(0) | None => Err("expected a size above 0, e.g. 1MiB".into()),
        Some(bytes) => Ok(bytes),
    }
}

/// hyper's read buffer, which bounds the head, cannot be smaller than 8 KiB.
fn parse_header_bytes(s: &str) -> Result<usize, String> {
    match parse_size(s)? {
        bytes if bytes < 8192 => Err("must be at least 8KiB".into()),
        bytes => Ok(bytes),
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than 0s".into()),
        d => Ok(d),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 30s, 5m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(list: &[&str]) -> Vec<String> {
        with_default_command(list.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_command() {
        assert_eq!(args(&["latchkey"]), ["latchkey", "serve"]);
        assert_eq!(
            args(&["latchkey", "--listen", "x"]),
            ["latchkey", "serve", "--listen", "x"]
        );
        assert_eq!(args(&["latchkey", "url"]), ["latchkey", "url"]);
        assert_eq!(args(&["latchkey", "--help"]), ["latchkey", "--help"]);
    }
}
