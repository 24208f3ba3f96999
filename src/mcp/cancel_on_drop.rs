//! Telling an upstream that a request's answer is no longer awaited: the client cancelled,
//! went away, or the upstream's timeout passed.

use rmcp::Peer;
use rmcp::model::ServerResult;
use rmcp::model::{CancelledNotificationParam, ClientRequest, ProgressToken, RequestId};
use rmcp::service::{PeerRequestOptions, RoleClient, ServiceError};

/// `request` to the upstream and its answer; `on_sent` gets the progress token rmcp put in
/// it, and what it returns (a progress route) is kept until the answer. Dropped before the
/// answer, it sends the upstream `notifications/cancelled` for the request.
pub async fn send<Kept>(
    peer: &Peer<RoleClient>,
    request: ClientRequest,
    on_sent: impl FnOnce(ProgressToken) -> Kept,
) -> Result<ServerResult, ServiceError> {
    let handle = peer
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await?;
    let _kept = on_sent(handle.progress_token.clone());
    let mut abandoned = CancelOnDrop(Some((peer.clone(), handle.id.clone())));
    let answer = handle.await_response().await;
    abandoned.0 = None;
    answer
}

/// Sends the upstream `notifications/cancelled` for a request when dropped armed.
struct CancelOnDrop(Option<(Peer<RoleClient>, RequestId)>);

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
