//! The HTTPS listener: TCP accepted and shaken hands with off the accept path, so a slow or
//! silent client never holds up the next one. TLS-ALPN-01 validation connections are
//! answered here and closed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; a connection beyond them is closed at once, so silent
/// clients cannot hold an unbounded number of tasks and buffers.
const HANDSHAKES_AT_ONCE: usize = 128;

pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        challenge: Option<Arc<ServerConfig>>,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_AT_ONCE));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // The server stopped listening (shutdown): close the socket now.
                    _ = sender.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!("accepting a TLS connection on {local}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::debug!(
                        "{HANDSHAKES_AT_ONCE} TLS handshakes in progress: closed {peer}"
                    );
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let config = config.clone();
                let challenge = challenge.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let shake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, config, challenge));
                    let shaken = shake.await;
                    drop(permit);
                    match shaken {
                        Ok(Ok(Some(tls))) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

/// `None` for an ACME validation connection, which ends with the handshake.
async fn handshake(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    challenge: Option<Arc<ServerConfig>>,
) -> io::Result<Option<TlsStream<TcpStream>>> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
    if let Some(challenge) = challenge
        && rustls_acme::is_tls_alpn_challenge(&start.client_hello())
    {
        tracing::info!("ACME: answering a TLS-ALPN-01 validation");
        let mut tls = start.into_stream(challenge).await?;
        tls.shutdown().await?;
        return Ok(None);
    }
    start.into_stream(config).await.map(Some)
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task only ends once the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    #[tokio::test]
    async fn handshaken_connections_have_nodelay() {
        let cert = rcgen::generate_simple_self_signed(["localhost".to_owned()]).unwrap();
        let cert_der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
        let server = ServerConfig::builder_with_provider(crate::tls::crypto::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)
            .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = TlsListener::new(tcp, Arc::new(server), None).unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(crate::tls::crypto::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let local = axum::serve::Listener::local_addr(&listener).unwrap();
        let tcp = TcpStream::connect(local).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let (client, (accepted, _)) = tokio::join!(
            connector.connect(name, tcp),
            axum::serve::Listener::accept(&mut listener)
        );
        client.unwrap();
        assert!(accepted.get_ref().0.nodelay().unwrap());
    }
}
