//! The OAuth flags (`serve`'s OAuth group), owned here next to the code that reads them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use ipnet::IpNet;

use crate::clients::parse_network;

#[derive(Debug, Args)]
#[command(next_help_heading = "OAuth")]
pub struct OAuthArgs {
    /// Be an OAuth 2.1 authorization server for one person, so ChatGPT and Claude connect
    /// with "OAuth" and no secret in the URL: a consent page asks for an API key (or
    /// --oauth-passphrase-file's passphrase) once. Needs --public-url. The keys keep working.
    // Not clap's `requires`: it would demand --public-url for LATCHKEY_OAUTH=false too.
    #[arg(long, env = "LATCHKEY_OAUTH", value_parser = BoolishValueParser::new())]
    pub oauth: bool,

    /// File holding the argon2 hash of a passphrase the consent page accepts besides the API
    /// keys (make it with `latchkey oauth passphrase`). Re-read on SIGHUP.
    #[arg(long, env = "LATCHKEY_OAUTH_PASSPHRASE_FILE", value_name = "PATH")]
    pub oauth_passphrase_file: Option<PathBuf>,

    /// How long an access token is good for. Claude never refreshes, so long by default.
    #[arg(long, env = "LATCHKEY_OAUTH_TOKEN_LIFETIME", value_name = "DURATION",
          default_value = "30d", value_parser = parse_lifetime)]
    pub oauth_token_lifetime: Duration,

    /// How long a refresh token is good for when unused (each refresh makes a new one).
    #[arg(long, env = "LATCHKEY_OAUTH_REFRESH_LIFETIME", value_name = "DURATION",
          default_value = "365d", value_parser = parse_lifetime)]
    pub oauth_refresh_lifetime: Duration,

    /// A redirect URI clients may use besides ChatGPT's, Claude's and loopback http ones
    /// (repeatable); one ending in `*` allows every URI it starts.
    #[arg(
        long = "oauth-redirect-uri",
        env = "LATCHKEY_OAUTH_REDIRECT_URI",
        value_name = "URI",
        value_delimiter = ','
    )]
    pub oauth_redirect_uris: Vec<String>,

    /// A network (CIDR) client metadata documents may be fetched from although it is
    /// private, loopback or link-local (repeatable): only for a client on your own network.
    #[arg(long = "oauth-cimd-allow", env = "LATCHKEY_OAUTH_CIMD_ALLOW", value_name = "CIDR",
          value_delimiter = ',', value_parser = parse_network)]
    pub oauth_cimd_allow: Vec<IpNet>,
}

/// A lifetime: a duration of at least a second.
fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 30d, 12h, 3600s)"))?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}
