//! HTTPS served by latchkey itself: certificate files (`files`) or ACME (`acme`), accepted by
//! `listener`; the plain-HTTP side (redirects, HTTP-01) is `routes::redirect`.
//!
//! rustls with its defaults: TLS 1.2 and 1.3, ALPN h2 and http/1.1.

pub mod acme;
pub mod files;
pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use tokio_util::sync::CancellationToken;

use crate::cli::TlsArgs;
use crate::listen::ListenAddr;

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

/// The PEM certificates in `path`; `what` names it in errors (never the content).
pub fn read_certificates(
    path: &std::path::Path,
    what: &str,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{what} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        );
    }
    Ok(certs)
}

/// The crypto everything TLS here uses (explicit: several providers are linked in).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What the HTTPS listeners serve with.
pub struct Tls {
    /// For ordinary connections.
    pub config: Arc<ServerConfig>,
    /// For TLS-ALPN-01 validation connections (ACME with tls-alpn-01 only).
    pub challenge: Option<Arc<ServerConfig>>,
    /// Answers HTTP-01 challenges on the redirect listener (ACME only).
    pub http01: Option<Arc<rustls_acme::ResolvesServerCertAcme>>,
    /// `Strict-Transport-Security` on HTTPS responses.
    pub hsts: bool,
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl Tls {
    /// Checks the TLS flags and loads what they name; `None` when HTTPS is not configured.
    /// ACME's work (ordering, renewing) runs in the background until `shutdown`.
    pub fn setup(args: &TlsArgs, shutdown: &CancellationToken) -> anyhow::Result<Option<Tls>> {
        let acme = !args.acme.acme_domains.is_empty();
        let files = args.tls_cert.is_some();
        if !acme && !files {
            if !args.tls_listen.is_empty() {
                anyhow::bail!(
                    "--tls-listen needs a certificate: --tls-cert and --tls-key, or --acme-domain"
                );
            }
            if !args.redirect_listen.is_empty() {
                anyhow::bail!("--redirect-listen needs HTTPS: --tls-listen with a certificate");
            }
            return Ok(None);
        }
        if args.tls_listen.is_empty() {
            anyhow::bail!("a certificate is configured but no --tls-listen address to serve it on");
        }
        let hsts = args.hsts.unwrap_or(acme);
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            let resolver = files::CertFiles::load(cert, key)?;
            resolver.clone().watch(shutdown.clone())?;
            return Ok(Some(Tls {
                config: Arc::new(server_config(resolver)?),
                challenge: None,
                http01: None,
                hsts,
            }));
        }
        if args.acme_challenge == Challenge::Http01 && args.redirect_listen.is_empty() {
            anyhow::bail!(
                "--acme-challenge http-01 is answered on plain HTTP: add --redirect-listen \
                 0.0.0.0:80 (port 80 must reach latchkey)"
            );
        }
        let started = acme::start(args, shutdown.clone())?;
        let challenge = (args.acme_challenge == Challenge::TlsAlpn01).then_some(started.challenge);
        Ok(Some(Tls {
            config: Arc::new(server_config(started.resolver.clone())?),
            challenge,
            http01: Some(started.resolver),
            hsts,
        }))
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
