//! What the two kinds of upstream share: the live connection, the watched rmcp client, and
//! what the supervisor asks of a session.

use std::ffi::OsString;
use std::sync::Arc;

use futures::future::BoxFuture;
use rmcp::Peer;
use rmcp::model::ServerPeerInfo;
use rmcp::service::{QuitReason, RoleClient, RunningService, RunningServiceCancellationToken};
use tokio::sync::oneshot;

use super::error::UpstreamError;
use super::notices::Listener;

/// A live connection: the peer to send requests to and what the server said it is.
#[derive(Clone)]
pub struct Connection {
    pub peer: Peer<RoleClient>,
    pub info: Arc<ServerPeerInfo>,
}

/// A connection the supervisor holds open until it ends, and closes at shutdown. Boxed, as
/// its futures are: one allocation each per connection, none per request.
pub(super) trait Session: Send {
    /// Resolves when the connection ends by itself, with why.
    fn ended(&mut self) -> BoxFuture<'_, String>;
    /// Closes it at shutdown (a child: stdin closed, then SIGTERM, then SIGKILL).
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A running rmcp client, watched: its connection, and a way to learn when it ends and to
/// end it.
pub(super) struct Client {
    stop: Option<RunningServiceCancellationToken>,
    ended: oneshot::Receiver<String>,
}

impl Client {
    pub(super) fn watch(
        running: RunningService<RoleClient, Listener>,
    ) -> Result<(Client, Connection), UpstreamError> {
        let info = running.peer_info().ok_or(UpstreamError::Incomplete)?;
        let connection = Connection {
            peer: running.peer().clone(),
            info,
        };
        let stop = running.cancellation_token();
        let (tx, ended) = oneshot::channel();
        tokio::spawn(async move {
            let reason = match running.waiting().await {
                Ok(QuitReason::Cancelled) => "closed".to_owned(),
                Ok(_) => "the connection closed".to_owned(),
                Err(e) => format!("the client failed: {e}"),
            };
            let _ = tx.send(reason);
        });
        Ok((
            Client {
                stop: Some(stop),
                ended,
            },
            connection,
        ))
    }

    /// Resolves when the connection ends, with why.
    pub(super) async fn ended(&mut self) -> String {
        (&mut self.ended)
            .await
            .unwrap_or_else(|_| "the client stopped".to_owned())
    }

    /// Ends the connection (rmcp closes the transport: a child's stdin) and waits for it.
    pub(super) async fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
        let _ = (&mut self.ended).await;
    }
}

/// The environment variables a child keeps from latchkey's: nothing that could hold one of
/// latchkey's secrets (`LATCHKEY_*`, `OTEL_*`).
pub const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// `(name, value)` pairs for a child's environment.
pub type Env = Vec<(OsString, OsString)>;
