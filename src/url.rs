//! The connector URL: the one place that puts a key into text, and only when asked.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};

use crate::auth::QUERY_PARAM;
use crate::configuration::{BasePath, KeySources, MCP_PATH, PublicUrl};
use crate::keys::KeyEntry;
use crate::listen::ListenAddr;

/// Everything but RFC 3986's unreserved characters is percent-encoded in the key.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where clients reach latchkey, as far as the configuration says.
#[derive(Clone, Copy, Debug)]
pub struct Reach<'a> {
    pub public_url: Option<&'a PublicUrl>,
    /// The first ACME domain: latchkey answers HTTPS for it on 443.
    pub domain: Option<&'a str>,
    pub first_tcp: Option<SocketAddr>,
}

/// The address of latchkey's base path: `--public-url`, else `https://` and the first ACME
/// domain, else the first TCP listener.
pub fn base_url(reach: Reach<'_>, base_path: &BasePath) -> anyhow::Result<String> {
    match (reach.public_url, reach.domain, reach.first_tcp) {
        (Some(url), _, _) => Ok(url.as_str().to_owned()),
        (None, Some(domain), _) => Ok(format!("https://{domain}{base_path}")),
        (None, None, Some(addr)) => Ok(format!("{}{base_path}", ListenAddr::local_http_base(addr))),
        (None, None, None) => anyhow::bail!(
            "latchkey listens on Unix sockets only: set --public-url to the address clients use"
        ),
    }
}

/// `<base>/mcp?api_key=<key>` with the first plain key configured.
pub fn connector_url(
    reach: Reach<'_>,
    base_path: &BasePath,
    sources: &KeySources,
) -> anyhow::Result<SecretString> {
    let base = base_url(reach, base_path)?;
    let key = sources
        .load()?
        .into_iter()
        .find_map(|configured| match configured.entry {
            KeyEntry::Plain(key) => Some(key),
            KeyEntry::Digest(_) => None,
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "only sha256: digests are configured, so the key itself is not known here: \
                 build the URL yourself as {base}{MCP_PATH}?{QUERY_PARAM}=<key>"
            )
        })?;
    let encoded = percent_encoding::utf8_percent_encode(key.expose_secret(), QUERY_VALUE);
    Ok(SecretString::from(format!(
        "{base}{MCP_PATH}?{QUERY_PARAM}={encoded}"
    )))
}
