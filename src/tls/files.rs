//! `--tls-cert` / `--tls-key`: a certificate from files, swapped in place when they change or
//! on SIGHUP. Connections already open keep the certificate they shook hands with; a broken
//! new pair is logged and the current one kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// How often the files are checked for a change (an edit, a `mv` over them, a renewed
/// certificate from another tool).
const POLL: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

/// What a change to either file looks like from its metadata.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Reads and checks a certificate chain and its key. Errors name the file, never its content.
pub fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = super::crypto::read_certificates(cert, "the certificate")?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow::anyhow!(
            "cannot read a private key from {}: {e} (expected PEM: PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    CertifiedKey::from_der(chain, private, &super::crypto::provider()).map_err(|e| {
        anyhow::anyhow!(
            "{} and {} do not make a usable pair: {e}",
            cert.display(),
            key.display()
        )
    })
}

impl CertFiles {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let pair = read_pair(cert, key)?;
        tracing::info!("TLS certificate loaded from {}", cert.display());
        Ok(Arc::new(CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: ArcSwap::from_pointee(pair),
        }))
    }

    /// Loads the files again; on failure the certificate in use stays.
    fn reload(&self, why: &str) {
        match read_pair(&self.cert, &self.key) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                tracing::info!(
                    "{why}: TLS certificate reloaded from {}",
                    self.cert.display()
                );
            }
            Err(e) => tracing::error!("{why}: keeping the current TLS certificate: {e:#}"),
        }
    }

    /// Reloads on each of `hangups` (SIGHUP) and whenever either file changes, until
    /// `shutdown`.
    pub fn watch(self: Arc<Self>, shutdown: CancellationToken, mut hangups: Receiver<()>) {
        tokio::spawn(async move {
            let mut seen = (stamp(&self.cert), stamp(&self.key));
            let mut ticks = tokio::time::interval(POLL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let why = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = hangups.recv() => match received {
                        Ok(()) | Err(RecvError::Lagged(_)) => "SIGHUP",
                        Err(RecvError::Closed) => return,
                    },
                    _ = ticks.tick() => "file change",
                };
                let now = (stamp(&self.cert), stamp(&self.key));
                if why == "SIGHUP" || now != seen {
                    seen = now;
                    self.reload(why);
                }
            }
        });
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
