//! The URL a person would paste into a client, taken apart: where it points, where its key
//! is (query, path, or given apart for the header forms), and what each client can do with it.
//! The key is held as a secret and never part of what is shown: [`Target::shown`] puts
//! `<key>` in its place.

use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret as _, SecretString};

use crate::auth::QUERY_PARAM;

/// The client whose needs the checks hold the URL to (`--client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// ChatGPT's connectors (web): https, the key in the URL or OAuth.
    Chatgpt,
    /// Claude (claude.ai and the desktop app's connectors): https on port 443 only, the key in
    /// the path or OAuth.
    Claude,
    /// Claude Code: any port, headers allowed.
    ClaudeCode,
    /// Every one of them: what all of them need.
    Any,
}

/// Where the key travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyForm {
    /// `?api_key=` in the URL.
    Query,
    /// `/mcp/<key>`.
    Path,
    /// `Authorization: Bearer` and `X-API-Key` (the key given with `--key`/`--key-file`).
    Header,
}

impl KeyForm {
    pub fn words(self) -> &'static str {
        match self {
            KeyForm::Query => "?api_key= in the URL",
            KeyForm::Path => "the key in the path (/mcp/<key>)",
            KeyForm::Header => "a header (Authorization: Bearer or X-API-Key)",
        }
    }
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Chatgpt => "chatgpt",
            Client::Claude => "claude",
            Client::ClaudeCode => "claude-code",
            Client::Any => "any client",
        }
    }

    /// The User-Agents it sends its MCP requests with (../shared/notes: `openai-mcp/1.0.0`,
    /// `Claude-User`), each checked for a CDN or WAF rule that refuses it.
    pub fn user_agents(self) -> &'static [&'static str] {
        match self {
            Client::Chatgpt => &["openai-mcp/1.0.0"],
            Client::Claude => &["Claude-User"],
            Client::ClaudeCode => &["claude-code/2.0"],
            Client::Any => &["openai-mcp/1.0.0", "Claude-User", "claude-code/2.0"],
        }
    }

    /// Where it has the authorization server send the person back (../shared/notes); Claude
    /// Code listens on loopback, which any server must take (RFC 8252), so it is not tried.
    pub fn redirect_uris(self) -> &'static [&'static str] {
        const CHATGPT: &str = "https://chatgpt.com/connector_platform_oauth_redirect";
        const CLAUDE: &str = "https://claude.ai/api/mcp/auth_callback";
        match self {
            Client::Chatgpt => &[CHATGPT],
            Client::Claude => &[CLAUDE],
            Client::ClaudeCode => &[],
            Client::Any => &[CHATGPT, CLAUDE],
        }
    }

    /// Whether it reaches a server on `port` (Claude: 443 only, claude-ai-mcp#125).
    pub fn accepts_port(self, port: u16, https: bool) -> bool {
        match self {
            Client::Claude | Client::Any => https && port == 443,
            Client::Chatgpt | Client::ClaudeCode => true,
        }
    }

    /// Whether it connects to plain http at all (Claude Code does, to a server of its own).
    pub fn accepts_http(self) -> bool {
        self == Client::ClaudeCode
    }

    /// Whether it can send the key so: ChatGPT's web UI takes a URL only; Claude refuses keys
    /// in the query ("Tokens or API keys passed in the connector URL are not supported") and
    /// takes a static `X-API-Key` header on some plans; Claude Code any form.
    pub fn can_send(self, form: KeyForm) -> bool {
        matches!(
            (self, form),
            (Client::ClaudeCode, _)
                | (Client::Chatgpt, KeyForm::Query | KeyForm::Path)
                | (Client::Claude, KeyForm::Path | KeyForm::Header)
                | (Client::Any, KeyForm::Path)
        )
    }

    /// How long it waits for discovery, a token and the first `initialize`: about 10 s for
    /// Claude (claude-ai-mcp #473, #115); ChatGPT's is not published, and held to the same.
    pub fn connect_budget(self) -> Duration {
        Duration::from_secs(10)
    }
}

/// Why a URL cannot be examined.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the URL cannot be read: {0}")]
    Unreadable(url::ParseError),
    #[error("the URL's scheme is {0}: give an https:// (or http://) URL")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
}

/// The URL examined.
pub struct Target {
    /// As given (the key in it, where it is).
    url: Url,
    key: Option<(KeyForm, SecretString)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.shown())
            .finish()
    }
}

impl Target {
    /// `given` as pasted; `header_key`: the key for the header forms, when the URL holds none.
    pub fn parse(given: &str, header_key: Option<SecretString>) -> Result<Self, TargetError> {
        let url = Url::parse(given.trim()).map_err(TargetError::Unreadable)?;
        match url.scheme() {
            "https" | "http" => {}
            other => return Err(TargetError::Scheme(other.to_owned())),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(TargetError::NoHost);
        }
        let key = query_key(&url)
            .map(|k| (KeyForm::Query, k))
            .or_else(|| path_key(&url).map(|k| (KeyForm::Path, k)))
            .or_else(|| header_key.map(|k| (KeyForm::Header, k)));
        Ok(Target { url, key })
    }

    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(443)
    }

    pub fn https(&self) -> bool {
        self.url.scheme() == "https"
    }

    pub fn key_form(&self) -> Option<KeyForm> {
        self.key.as_ref().map(|(form, _)| *form)
    }

    /// The key, for a request's header (the header forms only).
    pub fn header_key(&self) -> Option<&SecretString> {
        self.key
            .as_ref()
            .filter(|(form, _)| *form == KeyForm::Header)
            .map(|(_, key)| key)
    }

    /// The key, wherever it was given.
    pub fn key(&self) -> Option<&SecretString> {
        self.key.as_ref().map(|(_, key)| key)
    }

    /// The URL and header key of a request with the key in `form` rather than where it was
    /// given: whether another form gets through tells a key latchkey does not know from a form
    /// that something in front drops.
    pub fn keyed_as(&self, form: KeyForm) -> (Url, Option<&SecretString>) {
        let mut url = self.bare();
        let Some(key) = self.key() else {
            return (url, None);
        };
        match form {
            KeyForm::Query => {
                url.query_pairs_mut()
                    .append_pair(QUERY_PARAM, key.expose_secret());
                (url, None)
            }
            KeyForm::Path => {
                if let Ok(mut segments) = url.path_segments_mut() {
                    segments.pop_if_empty().push(key.expose_secret());
                }
                (url, None)
            }
            KeyForm::Header => (url, Some(key)),
        }
    }

    /// The URL to send MCP requests to, the key in it where it was.
    pub fn keyed(&self) -> &Url {
        &self.url
    }

    /// The URL without its key: the resource OAuth metadata must name, and where a request
    /// without the key goes.
    pub fn bare(&self) -> Url {
        let mut bare = self.url.clone();
        if self.key_form() == Some(KeyForm::Query) {
            let rest: Vec<(String, String)> = bare
                .query_pairs()
                .filter(|(name, _)| name != QUERY_PARAM)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            bare.set_query(None);
            if !rest.is_empty() {
                bare.query_pairs_mut().extend_pairs(rest);
            }
        }
        if self.key_form() == Some(KeyForm::Path) {
            let path = bare.path().to_owned();
            let cut = path.trim_end_matches('/').rfind('/').unwrap_or(0);
            bare.set_path(&path[..cut]);
        }
        bare
    }

    /// The URL as it may be shown: every `api_key` value in the query and the path's key
    /// segment as `<key>`, replaced where they are (not searched for: a key's `+` or `%2f`
    /// is written otherwise than it decodes), and no password.
    pub fn shown(&self) -> String {
        let mut shown = self.url.clone();
        let _ = shown.set_password(None);
        if let Some(query) = self.url.query() {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| {
                    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                    let decoded = url::form_urlencoded::parse(name.as_bytes()).next();
                    match decoded {
                        Some((n, _)) if n == QUERY_PARAM => format!("{name}=<key>"),
                        _ => pair.to_owned(),
                    }
                })
                .collect();
            shown.set_query(Some(&pairs.join("&")));
        }
        if self.key_form() == Some(KeyForm::Path) {
            let path = self.url.path().trim_end_matches('/');
            let cut = path.rfind('/').unwrap_or(0);
            shown.set_path(&format!("{}/<key>", &path[..cut]));
        }
        shown.to_string().replace("%3Ckey%3E", "<key>")
    }

    /// `text` with every form the key may take in it (as given, decoded, encoded) as
    /// `<key>`: the last guard on what is printed, should a server echo the key back.
    pub fn scrub(&self, text: &str) -> String {
        let Some((_, key)) = &self.key else {
            return text.to_owned();
        };
        let key = key.expose_secret();
        let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        let escaped =
            percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let mut text = text.to_owned();
        for form in [key, encoded.as_str(), escaped.as_str()] {
            if form.len() >= 8 {
                text = text.replace(form, "<key>");
            }
        }
        text
    }

    /// The origin (`https://host[:port]`) and the path of the resource without its key, for
    /// the well-known URLs built from them.
    pub fn origin_and_path(&self) -> (String, String) {
        let bare = self.bare();
        let origin = bare.origin().ascii_serialization();
        let path = bare.path().trim_end_matches('/').to_owned();
        (origin, path)
    }
}

/// The `api_key` in the query, when there is one.
fn query_key(url: &Url) -> Option<SecretString> {
    url.query_pairs()
        .find(|(name, value)| name == QUERY_PARAM && !value.is_empty())
        .map(|(_, value)| SecretString::from(value.into_owned()))
}

/// A key as the path's last segment after `mcp` (`…/mcp/<key>`): 32 characters or more, as
/// latchkey's keys are.
fn path_key(url: &Url) -> Option<SecretString> {
    let mut segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let last = segments.pop()?;
    (segments.last() == Some(&"mcp") && last.len() >= 32).then(|| {
        let decoded = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
        SecretString::from(decoded.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k3y-0123456789abcdefghijklmnopqrstuvwxyz";

    #[test]
    fn the_key_is_found_where_it_is_and_never_shown() {
        let query =
            Target::parse(&format!("https://h.example/mcp?a=1&api_key={KEY}"), None).unwrap();
        assert_eq!(query.key_form(), Some(KeyForm::Query));
        assert_eq!(query.shown(), "https://h.example/mcp?a=1&api_key=<key>");
        assert_eq!(query.bare().as_str(), "https://h.example/mcp?a=1");
        let path = Target::parse(&format!("https://h.example:8443/base/mcp/{KEY}"), None).unwrap();
        assert_eq!(path.key_form(), Some(KeyForm::Path));
        assert_eq!(path.shown(), "https://h.example:8443/base/mcp/<key>");
        assert_eq!(path.bare().as_str(), "https://h.example:8443/base/mcp");
        assert_eq!(
            path.origin_and_path(),
            ("https://h.example:8443".into(), "/base/mcp".into())
        );
        assert_eq!(path.port(), 8443);
        let header = Target::parse("https://h.example/mcp", Some(KEY.to_owned().into())).unwrap();
        assert_eq!(header.key_form(), Some(KeyForm::Header));
        assert!(!format!("{header:?}{query:?}{path:?}").contains(KEY));
        // However the key is written: `+`, escapes in either case, twice, a password.
        for (given, key) in [
            (
                "https://u:pw@h.example/mcp?api_key=ab+cd/ef%2fgh%41ijklmnopqrstuvwxyz0123",
                "ab cd/ef/ghAijklmnopqrstuvwxyz0123",
            ),
            (
                "https://h.example/mcp?API_KEY=x&api_key=first-0123456789abcdefghijklmnopq&api%5Fkey=second",
                "first-0123456789abcdefghijklmnopq",
            ),
        ] {
            let target = Target::parse(given, None).unwrap();
            let shown = target.shown();
            assert!(
                !shown.contains("pw") && !shown.contains("cd/ef") && !shown.contains("second"),
                "{shown}"
            );
            assert!(!shown.contains("0123"), "{shown}");
            assert_eq!(target.scrub(&format!("echoed {key}")), "echoed <key>");
        }
        let empty = Target::parse("https://h.example/mcp?api_key=", None).unwrap();
        assert_eq!(empty.key_form(), None);
        assert_eq!(empty.shown(), "https://h.example/mcp?api_key=<key>");
        let none = Target::parse("https://h.example/mcp/short", None).unwrap();
        assert_eq!(none.key_form(), None);
    }

    #[test]
    fn a_url_that_cannot_be_examined_says_why() {
        for (url, error) in [
            ("not a url", "cannot be read"),
            ("ftp://h.example/mcp", "scheme is ftp"),
        ] {
            let err = Target::parse(url, None).unwrap_err().to_string();
            assert!(err.contains(error), "{url}: {err}");
        }
    }

    #[test]
    fn each_client_takes_what_it_is_known_to() {
        assert!(!Client::Claude.accepts_port(8443, true));
        assert!(Client::Claude.accepts_port(443, true));
        assert!(Client::Chatgpt.accepts_port(8443, true));
        assert!(!Client::Claude.can_send(KeyForm::Query));
        assert!(Client::Chatgpt.can_send(KeyForm::Query));
        assert!(!Client::Chatgpt.can_send(KeyForm::Header));
        assert!(Client::ClaudeCode.can_send(KeyForm::Header));
        assert!(Client::Any.can_send(KeyForm::Path));
    }
}
