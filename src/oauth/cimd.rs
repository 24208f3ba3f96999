//! Client ID Metadata Documents: a client whose `client_id` is an `https` URL is described
//! by the JSON document at that URL (the MCP authorization spec's preferred way; ChatGPT's
//! and the SDKs' clients use it when `client_id_metadata_document_supported` is advertised).
//!
//! Fetching a URL a stranger chose is a server-side request forgery risk, so: `https` only,
//! no user info; the host must resolve only to public addresses (loopback, private,
//! link-local, CGNAT, ULA and the like refused unless `--oauth-cimd-allow` names them), and
//! the connection goes to the address that was checked (no second lookup to rebind);
//! no redirects; 5 s; at most 16 KiB; answers cached for 5 minutes, refusals for 30 s.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Deserialize;

pub const MAX_BYTES: usize = 16 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_OK: Duration = Duration::from_secs(300);
const CACHE_REFUSED: Duration = Duration::from_secs(30);
const CACHE_ENTRIES: usize = 64;

/// A client as its document describes it.
#[derive(Clone, Debug)]
pub struct Document {
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    client_secret: Option<serde_json::Value>,
}

/// A document fetched (or refused) at a time, by its URL.
type Cache = HashMap<String, (Instant, Result<Document, String>)>;

pub struct Cimd {
    allowed: Vec<IpNet>,
    cache: Mutex<Cache>,
}

/// Whether `client_id` names a metadata document (rather than a registered client).
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

impl Cimd {
    pub fn new(allowed: &[IpNet]) -> Self {
        Self {
            allowed: allowed.to_vec(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The document at `url`, or why it cannot be used (one line, safe to show).
    pub async fn get(&self, url: &str) -> Result<Document, String> {
        if let Some((at, answer)) = self.cache.lock().expect("not poisoned").get(url) {
            let ttl = if answer.is_ok() {
                CACHE_OK
            } else {
                CACHE_REFUSED
            };
            if at.elapsed() < ttl {
                return answer.clone();
            }
        }
        let answer = self.fetch(url).await;
        if let Err(e) = &answer {
            tracing::warn!("client metadata document refused: {e}");
        }
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_REFUSED);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(url.to_owned(), (Instant::now(), answer.clone()));
        answer
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|n| n.contains(&ip))
    }

    async fn fetch(&self, url: &str) -> Result<Document, String> {
        let parsed: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let Some(authority) = parsed.authority() else {
            return Err("the client_id URL has no host".into());
        };
        if parsed.scheme_str() != Some("https")
            || authority.as_str().contains('@')
            || url.contains('#')
            || parsed.path() == "/"
            || parsed.path().split('/').any(|s| s == "." || s == "..")
        {
            return Err(format!(
                "client_id {url:?} must be an https URL with a path, no user info, fragment or dot segments"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(443);
        // Every way of not reaching a public address says the same, so a stranger's
        // client_id URLs cannot map what lies behind latchkey (what was refused is logged).
        let unreachable = |why: String| {
            tracing::debug!("client metadata document at {host}: {why}");
            format!(
                "cannot fetch it from {host}: not a public address that answered in time (see --oauth-cimd-allow)"
            )
        };
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| unreachable(format!("the lookup took over {TIMEOUT:?}")))?
                .map_err(|e| unreachable(format!("cannot look it up: {e}")))?
                .collect(),
        };
        // Every address must be allowed: a name that also points inside is refused outright.
        if addrs.is_empty() {
            return Err(unreachable("no address".into()));
        }
        if let Some(bad) = addrs.iter().find(|a| !self.allowed(a.ip())) {
            return Err(unreachable(format!("resolves to {}", bad.ip())));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .resolve_to_addrs(host, &addrs)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let mut response = client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot read {url}: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(format!("{url} is larger than {MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let raw: Raw = serde_json::from_slice(&body)
            .map_err(|e| format!("{url} is not a client metadata document: {e}"))?;
        validate(url, raw)
    }
}

fn validate(url: &str, raw: Raw) -> Result<Document, String> {
    if raw.client_id != url {
        return Err(format!("the document's client_id is not its own URL {url}"));
    }
    if raw.client_secret.is_some() {
        return Err("a client metadata document must not hold a client_secret".into());
    }
    // `private_key_jwt` is not advertised, so such a client (ChatGPT's) authenticates with
    // PKCE alone, as `none`.
    match raw.token_endpoint_auth_method.as_deref() {
        None | Some("none" | "private_key_jwt") => {}
        Some(other) => {
            return Err(format!(
                "token_endpoint_auth_method {other:?} needs a shared secret, which a document cannot hold"
            ));
        }
    }
    if raw.redirect_uris.is_empty() {
        return Err("the document lists no redirect_uris".into());
    }
    Ok(Document {
        name: raw.client_name.map(|n| n.chars().take(100).collect()),
        redirect_uris: raw.redirect_uris,
    })
}

/// Addresses anyone on the Internet could also reach.
fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(embedded) = embedded_v4(v6) {
                return embedded.iter().all(|v4| is_public(IpAddr::V4(*v4)));
            }
            let [first, second, ..] = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && second == 0xdb8
                // Local-use NAT64 (RFC 8215): whatever the operator maps it to.
                || first == 0x64 && second == 0xff9b)
        }
    }
}

/// The IPv4 addresses an IPv6 address stands for, by each form that embeds one:
/// IPv4-compatible `::a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`, and Teredo `2001::/32` (its server and its client, the latter
/// inverted). `[::7f00:1]`, `[2002:7f00:1::]` and `[::ffff:0:7f00:1]` reached loopback.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<Vec<std::net::Ipv4Addr>> {
    use std::net::Ipv4Addr;
    let s = v6.segments();
    let low = Ipv4Addr::from(v6.to_bits() as u32);
    let word = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0, _, _] if !v6.is_loopback() && !v6.is_unspecified() => Some(vec![low]),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(vec![low]),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(vec![low]),
        [0x2002, hi, lo, ..] => Some(vec![word(hi, lo)]),
        [0x2001, 0, hi, lo, ..] => Some(vec![word(hi, lo), Ipv4Addr::from(!u32::from(low))]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::5db8:d822",
            "224.0.0.1",
            // IPv6 forms that embed a private IPv4 address.
            "::7f00:1",
            "::a00:1",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:7f00:1::1",
            "2001:0:5db8:d822:0:0:80ff:fffe",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "2606:4700::1111",
            "160.79.104.10",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "::ffff:0:5db8:d822",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn private_and_malformed_urls_are_refused_before_any_fetch() {
        let cimd = Cimd::new(&[]);
        for (url, says) in [
            ("http://example.com/client.json", "https"),
            ("https://example.com/", "with a path"),
            ("https://u:p@example.com/c.json", "user info"),
            ("https://127.0.0.1/c.json", "not a public address"),
            ("https://[::1]:8443/c.json", "not a public address"),
            (
                "https://169.254.169.254/latest/meta-data",
                "not a public address",
            ),
            ("https://localhost/c.json", "not a public address"),
        ] {
            let err = cimd.get(url).await.unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn documents_are_validated() {
        let url = "https://chatgpt.com/oauth/abc/client.json";
        let raw = |v: serde_json::Value| serde_json::from_value::<Raw>(v).unwrap();
        let chatgpt = raw(serde_json::json!({
            "client_id": url, "client_name": "ChatGPT",
            "redirect_uris": ["https://chatgpt.com/connector/oauth/x"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "https://chatgpt.com/oauth/jwks.json"
        }));
        assert_eq!(
            validate(url, chatgpt).unwrap().name.as_deref(),
            Some("ChatGPT")
        );
        let other_id =
            raw(serde_json::json!({"client_id": "https://evil/x", "redirect_uris": ["x"]}));
        assert!(validate(url, other_id).is_err());
        let secret = raw(serde_json::json!({"client_id": url, "redirect_uris": ["x"],
            "token_endpoint_auth_method": "client_secret_post"}));
        assert!(validate(url, secret).is_err());
        let none = raw(serde_json::json!({"client_id": url}));
        assert!(validate(url, none).is_err());
    }
}
