//! ACME with rustls-acme: the certificate is ordered at start (or taken from the cache),
//! renewed when a third of its lifetime is left, and kept in service while renewal fails.
//! Every event is logged; a failure says what to check, and is retried with backoff.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeConfig, EventOk, ResolvesServerCertAcme, UseChallenge};
use tokio_util::sync::CancellationToken;

use super::args::{Challenge, TlsArgs};
use super::crypto::{provider, read_certificates};

pub struct Started {
    /// Serves the certificate, and the challenge answers while an order runs.
    pub resolver: Arc<ResolvesServerCertAcme>,
    /// The TLS config for TLS-ALPN-01 validation connections.
    pub challenge: Arc<ServerConfig>,
}

/// The trust for talking to the ACME server: `--acme-ca-root`, else the public web roots.
fn client_config(ca_root: Option<&Path>) -> anyhow::Result<Option<Arc<ClientConfig>>> {
    let Some(path) = ca_root else {
        return Ok(None);
    };
    let certs = read_certificates(path, "--acme-ca-root")?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        anyhow::bail!(
            "--acme-ca-root {}: none of its certificates is a usable CA certificate",
            path.display()
        );
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// The cache must be writable now, not at the first renewal months later.
fn prepare_cache(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the ACME cache {}", dir.display()))?;
    let probe = dir.join(".latchkey-write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("cannot write to the ACME cache {}", dir.display()))
}

/// What to tell someone whose ACME just failed.
struct Hints {
    directory: String,
    cache: String,
    reach: &'static str,
    domains: String,
}

impl Hints {
    fn for_error(&self, error: &str) -> String {
        let Hints {
            directory,
            cache,
            reach,
            domains,
        } = self;
        if error.starts_with("cert cache") || error.starts_with("account cache") {
            format!("check that the ACME cache {cache} is writable and intact")
        } else if error.contains("InvalidCertificate") || error.contains("UnknownIssuer") {
            format!(
                "the TLS certificate of {directory} is not trusted: for a private or test CA, \
                 give its root with --acme-ca-root"
            )
        } else if error.contains("ConnectError") || error.contains("dns error") {
            format!(
                "cannot reach the ACME directory {directory}: check the URL and that this \
                 machine can make outbound HTTPS connections"
            )
        } else {
            format!(
                "check that the DNS A/AAAA records of {domains} point to this machine, that \
                 {reach}, and Let's Encrypt's rate limits (try --acme-directory \
                 letsencrypt-staging first)"
            )
        }
    }
}

/// Starts ACME in the background; errors here are bad configuration.
pub fn start(args: &TlsArgs, shutdown: CancellationToken) -> anyhow::Result<Started> {
    let domains = &args.acme.acme_domains;
    let cache = args.acme_cache.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "ACME needs --acme-cache DIR, to keep the account and certificates across \
             restarts (a volume in a container)"
        )
    })?;
    prepare_cache(cache)?;
    let directory = args.acme_directory.url().to_owned();
    let config = match client_config(args.acme_ca_root.as_deref())? {
        Some(client) => AcmeConfig::new_with_client_config(domains, client),
        None => AcmeConfig::new(domains),
    };
    let mut state = config
        .contact(&args.acme_contact)
        .directory(&directory)
        .challenge_type(match args.acme_challenge {
            Challenge::TlsAlpn01 => UseChallenge::TlsAlpn01,
            Challenge::Http01 => UseChallenge::Http01,
        })
        .cache(DirCache::new(cache.to_owned()))
        .state();
    let resolver = state.resolver();
    let challenge = state.challenge_rustls_config_with_provider(provider());
    tracing::info!(
        "ACME: certificate for {} from {directory} ({} challenge), cached in {}",
        domains.join(", "),
        match args.acme_challenge {
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Http01 => "http-01",
        },
        cache.display()
    );
    let reach = match args.acme_challenge {
        Challenge::TlsAlpn01 => "port 443 reaches latchkey's --tls-listen from the internet",
        Challenge::Http01 => "port 80 reaches latchkey's --redirect-listen from the internet",
    };
    let hints = Hints {
        directory: directory.clone(),
        cache: cache.display().to_string(),
        reach,
        domains: domains.join(", "),
    };
    let domains = domains.join(", ");
    tokio::spawn(async move {
        // rustls-acme waits 2^n seconds after the n-th failure in a row (at most 2^16).
        let mut failures: u32 = 0;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = state.next() => event,
            };
            match event {
                None => return,
                Some(Ok(ok)) => {
                    failures = 0;
                    match ok {
                        EventOk::DeployedCachedCert => tracing::info!(
                            "ACME: serving the cached certificate for {domains} (no new order)"
                        ),
                        EventOk::DeployedNewCert => {
                            tracing::info!("ACME: new certificate for {domains} in service")
                        }
                        EventOk::CertCacheStore => {
                            tracing::info!("ACME: certificate stored in the cache")
                        }
                        EventOk::AccountCacheStore => {
                            tracing::info!("ACME: account stored in the cache")
                        }
                    }
                }
                Some(Err(e)) => {
                    let wait = 1u64 << failures.min(16);
                    failures += 1;
                    let e = e.to_string();
                    tracing::error!(
                        "ACME: {e} — {}; retrying in {wait}s, any certificate in service stays",
                        hints.for_error(&e)
                    );
                }
            }
        }
    });
    Ok(Started {
        resolver,
        challenge,
    })
}
