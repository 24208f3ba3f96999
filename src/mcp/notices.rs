//! What the upstreams announce unasked, passed on to one client session (with `--sessions`)
//! until it ends: list changes to every session, a resource's update to the sessions
//! subscribed to it (`super::subscriptions`), under the URI the session knows. When the
//! session ends, its subscriptions are let go.

use std::sync::Arc;

use futures::StreamExt as _;
use rmcp::Peer;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::RoleServer;

use super::subscriptions::Subscribed;
use crate::upstream::Upstreams;
use crate::upstream::names::Naming;
use crate::upstream::notices::Notice;

/// How often a session that hears nothing is checked for having ended.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Tells `peer` what any upstream announces, until its session ends; then lets go of its
/// subscriptions.
pub async fn pass_on(upstreams: Upstreams, peer: Peer<RoleServer>, subscribed: Arc<Subscribed>) {
    let mut notices = every_notice(&upstreams);
    let mut check = tokio::time::interval(SESSION_CHECK);
    loop {
        let notice = tokio::select! {
            notice = notices.next() => notice,
            _ = check.tick() => {
                if peer.is_transport_closed() {
                    break;
                }
                continue;
            }
        };
        let Some((naming, notice)) = notice else {
            break;
        };
        if tell(&peer, &naming, notice, &subscribed).await.is_err() {
            break;
        }
    }
    let_go(&upstreams, &subscribed).await;
}

/// What every upstream announces from now on, each with the naming of the upstream that
/// said it.
pub(super) fn every_notice(
    upstreams: &Upstreams,
) -> impl futures::Stream<Item = (Naming, Notice)> + use<> {
    futures::stream::select_all(upstreams.iter().map(|upstream| {
        let naming = upstream.naming.clone();
        Box::pin(stream_of(upstream.notices()).map(move |notice| (naming.clone(), notice)))
    }))
}

/// Sends `notice` to `peer`, when it is for it.
async fn tell(
    peer: &Peer<RoleServer>,
    naming: &Naming,
    notice: Notice,
    subscribed: &Subscribed,
) -> Result<(), rmcp::service::ServiceError> {
    match notice {
        Notice::ToolsChanged => peer.notify_tool_list_changed().await,
        Notice::PromptsChanged => peer.notify_prompt_list_changed().await,
        Notice::ResourcesChanged => peer.notify_resource_list_changed().await,
        Notice::ResourceUpdated(own) => {
            let Some(uri) = subscribed.told_as(&naming.uri(&own)) else {
                return Ok(());
            };
            peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
        }
    }
}

/// Lets go of every subscription of a session (or listen stream) that ended: an upstream no
/// session holds it for any more is unsubscribed.
pub(super) async fn let_go(upstreams: &Upstreams, subscribed: &Subscribed) {
    for uri in subscribed.take_all() {
        if let Ok((upstream, own)) = upstreams.by_uri(&uri) {
            upstream.unsubscribe(own).await;
        }
    }
}

/// A broadcast receiver as a stream of what it receives (a receiver that lagged just
/// goes on: a list change is the same however many were missed).
fn stream_of(
    receiver: tokio::sync::broadcast::Receiver<Notice>,
) -> impl futures::Stream<Item = Notice> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(notice) => return Some((notice, receiver)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
