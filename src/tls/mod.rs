//! HTTPS served by latchkey itself: certificate files (`files`) or ACME (`acme`), accepted by
//! `listener`; the plain-HTTP side (redirects, HTTP-01) is `routes::redirect`. The flags are
//! `args`' (the command line flattens them in); `crypto` is what they all share.
//!
//! rustls with its defaults: TLS 1.2 and 1.3, ALPN h2 and http/1.1.

pub mod acme;
pub mod args;
pub mod crypto;
pub mod files;
pub mod listener;

use std::sync::Arc;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;
use tokio_util::sync::CancellationToken;

use self::args::{Challenge, TlsArgs};
use self::crypto::provider;

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
        .context("cannot set up TLS")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl Tls {
    /// Checks the TLS flags and loads what they name; `None` when HTTPS is not configured.
    /// ACME's work (ordering, renewing) runs in the background until `shutdown`; certificate
    /// files are re-read on each of `hangups` (SIGHUP).
    pub fn setup(
        args: &TlsArgs,
        shutdown: &CancellationToken,
        hangups: &tokio::sync::broadcast::Sender<()>,
    ) -> anyhow::Result<Option<Tls>> {
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
            resolver
                .clone()
                .watch(shutdown.clone(), hangups.subscribe());
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
