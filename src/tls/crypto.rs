//! The crypto provider and the PEM reader every part of TLS here shares.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;

/// The PEM certificates in `path`; `what` names it in errors (never the content).
pub fn read_certificates(
    path: &std::path::Path,
    what: &str,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{what} {}", path.display()))?;
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
