//! The TLS handshake as a client makes it — the chain, the name, the version, the expiry —
//! and, when the chain is refused, which of the two usual faults it is: a server that sends
//! its certificate without the intermediate that signed it, or a chain that ends at a CA the
//! platform does not trust. rustls says only "unknown issuer" for both, so the verifier is
//! wrapped to keep what the server sent.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use super::network::PATIENCE;
use super::report::Check;
use super::target::Target;

/// The TLS handshake over `stream`, as a client that trusts `trusted` makes it.
pub async fn handshake(
    target: &Target,
    stream: TcpStream,
    trusted: &[CertificateDer<'static>],
) -> Vec<Check> {
    let host = target
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let Ok(name) = ServerName::try_from(host.clone()) else {
        return vec![Check::fail(
            "tls",
            format!("{host} is not a name TLS can check"),
            "use a DNS name",
        )];
    };
    let Some((config, sent)) = config(trusted) else {
        return vec![Check::fail(
            "tls",
            "no TLS configuration could be made",
            "report this",
        )];
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let started = Instant::now();
    let shaken = tokio::time::timeout(PATIENCE, connector.connect(name, stream)).await;
    match shaken {
        Err(_) => vec![Check::fail(
            "tls",
            format!(
                "the TLS handshake did not finish in {} s",
                PATIENCE.as_secs()
            ),
            "check that the port serves TLS",
        )],
        Ok(Err(error)) => vec![refused(&host, &error, &sent.chain(), trusted.is_empty())],
        Ok(Ok(tls)) => {
            let (_, session) = tls.get_ref();
            let version = session
                .protocol_version()
                .map_or("TLS".to_owned(), |v| format!("{v:?}").replace('_', "."));
            let chain = Check::pass(
                "tls.chain",
                format!("{version}, chain trusted, certificate for {host}"),
            )
            .took(super::report::ms_since(started));
            let leaf = session.peer_certificates().and_then(|c| c.first());
            vec![chain, expiry(leaf)]
        }
    }
}

/// A client's configuration trusting `trusted` (TLS 1.2 and 1.3), and what its verifier
/// will keep of the server's chain.
fn config(trusted: &[CertificateDer<'static>]) -> Option<(rustls::ClientConfig, Arc<Recording>)> {
    let provider = crate::tls::crypto::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(trusted.iter().cloned());
    // An empty store cannot make a verifier; one that trusts nothing is what it means.
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .ok();
    let recording = Arc::new(Recording {
        inner: verifier,
        provider: provider.clone(),
        sent: Mutex::default(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recording.clone())
        .with_no_client_auth();
    Some((config, recording))
}

/// The platform's verifier, keeping the chain the server sent.
#[derive(Debug)]
struct Recording {
    /// `None` when nothing is trusted at all.
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    sent: Mutex<Vec<CertificateDer<'static>>>,
}

impl Recording {
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut sent) = self.sent.lock() {
            *sent = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        let Some(inner) = &self.inner else {
            return Err(rustls::CertificateError::UnknownIssuer.into());
        };
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A failed handshake, in what it means for a person.
fn refused(
    host: &str,
    error: &std::io::Error,
    sent: &[CertificateDer<'static>],
    nothing_trusted: bool,
) -> Check {
    use rustls::{CertificateError, Error};
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<Error>());
    match inner {
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            untrusted(sent, nothing_trusted)
        }
        Some(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => Check::fail(
            "tls.chain",
            "the certificate has expired",
            "renew it (with --acme-domain latchkey renews its own)",
        ),
        Some(Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => Check::fail(
            "tls.chain",
            format!("the certificate is not for {host}"),
            format!("serve a certificate whose names include {host}"),
        ),
        Some(other) => Check::fail(
            "tls.chain",
            format!("the handshake failed: {other}"),
            "serve TLS 1.2 or newer with a certificate from a public CA",
        ),
        None => Check::fail(
            "tls",
            format!("the handshake failed: {error}"),
            "check that the port serves TLS",
        ),
    }
}

/// A chain that leads to no trusted root: which certificate it ends at says why.
fn untrusted(sent: &[CertificateDer<'static>], nothing_trusted: bool) -> Check {
    if nothing_trusted {
        return Check::fail(
            "tls.chain",
            "this machine trusts no CA at all, so no certificate could be checked",
            "install the platform's CA certificates (Debian: ca-certificates), or give --ca-file",
        );
    }
    let last = sent
        .last()
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok());
    let Some((_, last)) = last else {
        return Check::fail(
            "tls.chain",
            "the server sent no certificate that could be read",
            "serve the certificate and its intermediates (fullchain.pem)",
        );
    };
    let issuer = common_name(last.issuer());
    if last.issuer() == last.subject() {
        return Check::fail(
            "tls.chain",
            format!(
                "the chain ends at {issuer:?}, a CA no client trusts (self-signed, or private)"
            ),
            "use a certificate from a public CA (latchkey: --acme-domain gets one); to check a private CA, give it with --ca-file",
        );
    }
    if sent.len() == 1 {
        return Check::fail(
            "tls.chain",
            format!(
                "the server sends its certificate alone, without the intermediate {issuer:?} that signed it"
            ),
            "serve the whole chain — the certificate and its intermediates (fullchain.pem, not cert.pem)",
        );
    }
    Check::fail(
        "tls.chain",
        format!("the chain ends at a certificate issued by {issuer:?}, which is not trusted"),
        "serve the intermediates up to a public CA's root (fullchain.pem), or, for a private CA, give it with --ca-file",
    )
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| name.to_string(), str::to_owned)
}

/// How long the certificate has left: a warning under 14 days.
fn expiry(leaf: Option<&CertificateDer<'_>>) -> Check {
    let parsed = leaf.and_then(|der| x509_parser::parse_x509_certificate(der).ok());
    let Some((_, cert)) = parsed else {
        return Check::skip("tls.expiry", "the certificate could not be read");
    };
    let left = cert.validity().time_to_expiration();
    let days = left.map_or(0, |d| d.whole_days());
    if days < 14 {
        return Check::warn(
            "tls.expiry",
            format!("the certificate expires in {days} day(s)"),
            "renew it now: a client refuses it once it expires",
        );
    }
    Check::pass(
        "tls.expiry",
        format!("the certificate is valid for {days} more days"),
    )
}
