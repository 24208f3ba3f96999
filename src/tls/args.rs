//! The TLS flags (`serve`'s HTTPS group), owned here next to the code that reads them, and
//! the values they parse into.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use clap::builder::BoolishValueParser;

use crate::listen::ListenAddr;

/// The domains ACME gets certificates for; also what `latchkey url` builds the URL from.
#[derive(Debug, Args)]
pub struct AcmeDomainArgs {
    /// Domain to get a certificate for by ACME (repeatable, or comma-separated), e.g.
    /// mcp.example.com. Turns ACME on; the domains are allowed as Host, and the connector URL
    /// becomes https://<first domain>.
    #[arg(long = "acme-domain", env = "LATCHKEY_ACME_DOMAIN", value_name = "DOMAIN",
          value_delimiter = ',', value_parser = parse_domain)]
    pub acme_domains: Vec<String>,
}

/// HTTPS served by latchkey itself, with certificate files or ACME.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serve HTTPS on HOST:PORT (repeatable, or comma-separated), e.g. 0.0.0.0:443. Needs
    /// --tls-cert and --tls-key, or --acme-domain. Plain HTTP is still served on --listen
    /// (127.0.0.1:8080 unless given): set --listen to move it, e.g. to a Unix socket.
    #[arg(long = "tls-listen", env = "LATCHKEY_TLS_LISTEN", value_name = "ADDR",
          value_delimiter = ',', value_parser = parse_tcp_addr)]
    pub tls_listen: Vec<SocketAddr>,

    /// Serve plain HTTP on HOST:PORT (e.g. 0.0.0.0:80) that answers ACME HTTP-01 challenges
    /// and redirects everything else to HTTPS (301, query string dropped).
    #[arg(long = "redirect-listen", env = "LATCHKEY_REDIRECT_LISTEN", value_name = "ADDR",
          value_delimiter = ',', value_parser = parse_tcp_addr)]
    pub redirect_listen: Vec<SocketAddr>,

    /// Certificate chain (PEM, leaf first) for --tls-listen. Re-read when it changes and on
    /// SIGHUP; a broken new file keeps the certificate in use.
    #[arg(
        long,
        env = "LATCHKEY_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key",
        conflicts_with = "acme_domains"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "LATCHKEY_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    #[command(flatten)]
    pub acme: AcmeDomainArgs,

    /// Contact for the ACME account, mailto:you@example.com (repeatable): Let's Encrypt
    /// writes there about expiring certificates and policy changes.
    #[arg(long = "acme-contact", env = "LATCHKEY_ACME_CONTACT", value_name = "MAILTO",
          value_delimiter = ',', value_parser = parse_contact)]
    pub acme_contact: Vec<String>,

    /// Directory that keeps the ACME account and certificates across restarts (required
    /// with ACME; without it every start orders anew and soon hits rate limits).
    #[arg(long, env = "LATCHKEY_ACME_CACHE", value_name = "DIR")]
    pub acme_cache: Option<PathBuf>,

    /// ACME server: letsencrypt (production), letsencrypt-staging (untrusted certificates,
    /// generous rate limits: try it first), or a directory URL.
    #[arg(long, env = "LATCHKEY_ACME_DIRECTORY", value_name = "DIRECTORY",
          default_value = "letsencrypt", value_parser = parse_directory)]
    pub acme_directory: Directory,

    /// PEM file of CA certificates to trust for the ACME server (a private or test CA),
    /// instead of the public web roots.
    #[arg(long, env = "LATCHKEY_ACME_CA_ROOT", value_name = "PEM")]
    pub acme_ca_root: Option<PathBuf>,

    /// How the ACME server checks that the domain is ours: tls-alpn-01 on the HTTPS port
    /// (443), or http-01 on --redirect-listen (port 80).
    #[arg(
        long,
        env = "LATCHKEY_ACME_CHALLENGE",
        value_name = "CHALLENGE",
        default_value = "tls-alpn-01"
    )]
    pub acme_challenge: Challenge,

    /// Send Strict-Transport-Security on HTTPS responses [default: on with ACME, off with
    /// certificate files].
    #[arg(long, env = "LATCHKEY_HSTS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub hsts: Option<bool>,
}

/// The ACME server to order from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Directory {
    LetsEncrypt,
    LetsEncryptStaging,
    Url(String),
}

impl Directory {
    pub fn url(&self) -> &str {
        match self {
            Directory::LetsEncrypt => "https://acme-v02.api.letsencrypt.org/directory",
            Directory::LetsEncryptStaging => {
                "https://acme-staging-v02.api.letsencrypt.org/directory"
            }
            Directory::Url(url) => url,
        }
    }
}

/// How the ACME server validates the domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Challenge {
    /// On the HTTPS port, inside the TLS handshake (port 443 must reach latchkey).
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
    /// On plain HTTP, through --redirect-listen (port 80 must reach latchkey).
    #[value(name = "http-01")]
    Http01,
}

pub fn parse_directory(s: &str) -> Result<Directory, String> {
    match s {
        "letsencrypt" => Ok(Directory::LetsEncrypt),
        "letsencrypt-staging" => Ok(Directory::LetsEncryptStaging),
        url if url.starts_with("https://") || url.starts_with("http://") => {
            Ok(Directory::Url(url.to_owned()))
        }
        _ => Err("expected letsencrypt, letsencrypt-staging or an https:// directory URL".into()),
    }
}

/// A DNS name as ACME wants it: no scheme, port, path or wildcard.
pub fn parse_domain(s: &str) -> Result<String, String> {
    let domain = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if domain.len() > 253 || !domain.contains('.') || !domain.split('.').all(label_ok) {
        return Err("expected a DNS name such as mcp.example.com (no scheme, port or path)".into());
    }
    Ok(domain)
}

pub fn parse_contact(s: &str) -> Result<String, String> {
    match s.strip_prefix("mailto:") {
        Some(address) if address.contains('@') => Ok(s.to_owned()),
        _ => Err("expected mailto:you@example.com".into()),
    }
}

/// HOST:PORT for a TCP listener (a Unix socket cannot serve TLS here).
pub fn parse_tcp_addr(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<ListenAddr>()? {
        ListenAddr::Tcp(addr) => Ok(addr),
        ListenAddr::Unix(_) => Err("expected HOST:PORT, e.g. 0.0.0.0:443".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_contacts_and_directories() {
        assert_eq!(parse_domain("MCP.Example.com.").unwrap(), "mcp.example.com");
        for bad in [
            "https://x.com",
            "x.com:443",
            "localhost",
            "*.x.com",
            "-a.x.com",
            "",
        ] {
            assert!(parse_domain(bad).is_err(), "{bad}");
        }
        assert!(parse_contact("mailto:me@example.com").is_ok());
        assert!(parse_contact("me@example.com").is_err());
        assert_eq!(
            parse_directory("letsencrypt-staging").unwrap().url(),
            "https://acme-staging-v02.api.letsencrypt.org/directory"
        );
        assert!(parse_directory("staging").is_err());
        assert!(parse_tcp_addr("unix:/tmp/x").is_err());
    }
}
