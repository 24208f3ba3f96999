//! Telling an upstream that a request's answer is no longer awaited: the client cancelled,
//! went away, or the upstream's timeout passed.

use rmcp::Peer;
use rmcp::model::{CancelledNotificationParam, RequestId};
use rmcp::service::RoleClient;

/// Sends the upstream `notifications/cancelled` for a request when dropped armed.
pub struct CancelOnDrop(Option<(Peer<RoleClient>, RequestId)>);

impl CancelOnDrop {
    pub fn new(peer: &Peer<RoleClient>, id: RequestId) -> Self {
        Self(Some((peer.clone(), id)))
    }

    /// The request was answered: nothing to cancel.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some((peer, id)) = self.0.take() {
            tokio::spawn(async move {
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(
                        Some(id),
                        Some("the client's request ended".to_owned()),
                    ))
                    .await;
            });
        }
    }
}
