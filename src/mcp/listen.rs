//! A 2026-07-28 client's `subscriptions/listen`: the one request whose response stream
//! carries what the upstreams announce (the protocol's replacement for the session's GET
//! stream and `resources/subscribe`), so it works with and without `--sessions`. The
//! resources it names are subscribed upstream as a session's are (counted per upstream),
//! their updates reach this stream under the URIs the client named, and when the stream
//! ends (the client cancels or goes away, latchkey shuts down) they are let go.

use std::collections::HashSet;

use futures::StreamExt as _;
use rmcp::model::SubscriptionFilter;
use rmcp::service::{SubscriptionContext, SubscriptionSendError, SubscriptionSink};
use tokio_util::sync::CancellationToken;

use super::notices;
use super::subscriptions::{MAX_PER_SESSION, Subscribed};
use crate::upstream::Upstreams;
use crate::upstream::names::Naming;
use crate::upstream::notices::Notice;

/// What latchkey can serve of `requested`: the list changes asked for (rmcp keeps only
/// those the upstreams announce), and the resources whose upstream offers subscriptions,
/// at most [`MAX_PER_SESSION`] different ones. The acknowledgment tells the client which.
pub fn accepted(upstreams: &Upstreams, requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut accepted = requested.clone();
    accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
        let mut seen = HashSet::new();
        uris.iter()
            .filter(|uri| {
                upstreams
                    .by_uri(uri)
                    .is_ok_and(|(upstream, _)| upstream.offers_subscriptions())
            })
            .filter(|uri| seen.insert(uri.as_str()))
            .take(MAX_PER_SESSION)
            .cloned()
            .collect()
    });
    accepted
}

/// Serves one acknowledged listen stream until the client ends it or `shutdown`; then the
/// final result goes out (rmcp sends it when this returns).
pub async fn listen(
    upstreams: Upstreams,
    context: SubscriptionContext,
    shutdown: CancellationToken,
) {
    let uris = context
        .accepted()
        .resource_subscriptions
        .clone()
        .unwrap_or_default();
    let ended = CancellationToken::new();
    // In a task of its own, told to end when this future ends however it ends (rmcp may
    // drop it): the subscriptions it counted upstream are let go in every case.
    let stream = tokio::spawn(pass_on(
        upstreams,
        context.sink().clone(),
        uris,
        ended.clone(),
    ));
    let _ended = ended.drop_guard();
    tokio::select! {
        _ = context.cancelled() => {}
        _ = shutdown.cancelled() => {}
        _ = stream => {}
    }
}

/// Subscribes `uris` upstream, then tells `sink` what is for it until `ended` or the
/// client is gone; then lets the subscriptions go.
async fn pass_on(
    upstreams: Upstreams,
    sink: SubscriptionSink,
    uris: Vec<String>,
    ended: CancellationToken,
) {
    // Heard from before subscribing: an update right after a subscribe is not missed.
    let mut notices = notices::every_notice(&upstreams);
    let subscribed = Subscribed::default();
    // Never cut short: the session's set and the upstream's count stay together.
    subscribe(&upstreams, &uris, &subscribed).await;
    loop {
        let notice = tokio::select! {
            notice = notices.next() => notice,
            _ = ended.cancelled() => break,
        };
        let Some((naming, notice)) = notice else {
            break;
        };
        if tell(&sink, &naming, notice, &subscribed).await.is_err() {
            break;
        }
    }
    notices::let_go(&upstreams, &subscribed).await;
}

/// Subscribes each of `uris` upstream; one that fails is said in the log and left out
/// (the acknowledgment has gone already).
async fn subscribe(upstreams: &Upstreams, uris: &[String], subscribed: &Subscribed) {
    for uri in uris {
        let Ok((upstream, own)) = upstreams.by_uri(uri) else {
            continue;
        };
        if !subscribed.add(uri, uri).unwrap_or(false) {
            continue;
        }
        if let Err(error) = upstream.subscribe(own).await {
            subscribed.remove(uri);
            tracing::warn!(
                upstream = upstream.name(),
                "subscriptions/listen: {uri:?} could not be subscribed: {}",
                error.message
            );
        }
    }
}

/// Sends `notice` to `sink`, when the client asked for it.
async fn tell(
    sink: &SubscriptionSink,
    naming: &Naming,
    notice: Notice,
    subscribed: &Subscribed,
) -> Result<(), SubscriptionSendError> {
    let asked = sink.accepted();
    match notice {
        Notice::ToolsChanged if asked.tools_list_changed == Some(true) => {
            sink.notify_tool_list_changed().await
        }
        Notice::PromptsChanged if asked.prompts_list_changed == Some(true) => {
            sink.notify_prompt_list_changed().await
        }
        Notice::ResourcesChanged if asked.resources_list_changed == Some(true) => {
            sink.notify_resource_list_changed().await
        }
        Notice::ResourceUpdated(own) => {
            let Some(uri) = subscribed.told_as(&naming.uri(&own)) else {
                return Ok(());
            };
            sink.notify_resource_updated(uri).await
        }
        _ => Ok(()),
    }
}
