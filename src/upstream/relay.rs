//! An upstream's requests to the client in the middle of a call (elicitation, sampling,
//! roots), relayed to the client session whose request is in flight, and its answer back.
//!
//! The wire does not say which of latchkey's requests an upstream's request belongs to (on
//! stdio there is one stream), so it goes to the newest request in flight to that upstream
//! whose client declared what is asked: with one person behind the key, all of them are
//! that person's sessions. A client that cannot answer (none in flight, a stateless
//! client: without `--sessions` nothing can reach it mid-call, or one that did not declare
//! the capability) gets the upstream's request refused at once with `-32601`, never left
//! waiting; an answer not given within the upstream's request timeout is refused as well.
//!
//! What the upstream logs meanwhile goes to the same newest caller's session, or after the
//! call to the session that called last ([`Callers::tell_log`]); rmcp sends it on the
//! session's GET stream (its server routes only progress and requests to a request's own
//! stream).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::Peer;
#[allow(deprecated)]
use rmcp::model::LoggingMessageNotificationParam;
use rmcp::model::{
    ClientCapabilities, ClientResult, ErrorCode, GetExtensions as _, RequestId, ServerRequest,
};
use rmcp::service::{OriginatingRequestId, RoleServer, ServiceError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// What an upstream may ask a client, and the capability that says the client can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    FormElicitation,
    UrlElicitation,
    Sampling,
    Roots,
}

impl Ask {
    fn method(self) -> &'static str {
        match self {
            Ask::FormElicitation | Ask::UrlElicitation => "elicitation/create",
            Ask::Sampling => "sampling/createMessage",
            Ask::Roots => "roots/list",
        }
    }

    #[allow(deprecated)]
    fn declared(self, capabilities: &ClientCapabilities) -> bool {
        match self {
            // An empty `elicitation` object declares the form mode (2025-11-25).
            Ask::FormElicitation => capabilities
                .elicitation
                .as_ref()
                .is_some_and(|e| e.form.is_some() || e.url.is_none()),
            Ask::UrlElicitation => capabilities
                .elicitation
                .as_ref()
                .is_some_and(|e| e.url.is_some()),
            Ask::Sampling => capabilities.sampling.is_some(),
            Ask::Roots => capabilities.roots.is_some(),
        }
    }
}

/// One request in flight to the upstream, from a client session that can be asked.
struct Caller {
    id: u64,
    peer: Peer<RoleServer>,
    /// The client's request: what is relayed rides on its stream (SEP-2260), not on the
    /// session's GET stream, which a client need not open.
    request: RequestId,
    capabilities: ClientCapabilities,
}

/// The client sessions with a request in flight to one upstream, oldest first.
#[derive(Default)]
pub struct Callers {
    next: AtomicU64,
    calls: Mutex<Vec<Caller>>,
    /// The session that called last, kept after its call: rmcp may hand latchkey an
    /// upstream's answer before the log message the upstream sent just ahead of it (seen
    /// under load: a call's last message lost in two runs of three), and that message is still
    /// the caller's.
    latest: Mutex<Option<Peer<RoleServer>>>,
}

/// Keeps a caller listed while its request is in flight; dropping it removes it.
pub struct Calling {
    callers: Arc<Callers>,
    id: u64,
}

impl Drop for Calling {
    fn drop(&mut self) {
        self.callers.lock().retain(|caller| caller.id != self.id);
    }
}

impl Callers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Caller>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists `peer` (a client session that declared `capabilities`) as a caller until the
    /// returned guard is dropped.
    pub fn enter(
        self: &Arc<Self>,
        peer: Peer<RoleServer>,
        request: RequestId,
        capabilities: ClientCapabilities,
    ) -> Calling {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer.clone());
        self.lock().push(Caller {
            id,
            peer,
            request,
            capabilities,
        });
        Calling {
            callers: self.clone(),
            id,
        }
    }

    /// The newest caller that can answer `ask`, or why there is none.
    fn answerer(&self, ask: Ask) -> Result<(Peer<RoleServer>, RequestId), &'static str> {
        let calls = self.lock();
        if calls.is_empty() {
            return Err(
                "no client session has a request in flight to it that can be asked (without \
                 --sessions, or on protocol 2026-07-28, a client cannot be asked in the \
                 middle of a request)",
            );
        }
        calls
            .iter()
            .rev()
            .find(|caller| ask.declared(&caller.capabilities))
            .map(|caller| (caller.peer.clone(), caller.request.clone()))
            .ok_or("the calling client did not declare that it can answer it")
    }

    /// Tells the newest caller's session what the upstream logged (`notifications/message`),
    /// as it is: with no call in flight, the session that called last; with none ever, it
    /// stays in latchkey's log only. A session that is gone is no error: the message was for
    /// a request that is over.
    #[allow(deprecated)]
    pub async fn tell_log(&self, message: LoggingMessageNotificationParam) {
        let in_flight = self.lock().last().map(|caller| caller.peer.clone());
        let peer = in_flight.or_else(|| {
            let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            latest.clone()
        });
        if let Some(peer) = peer {
            let _ = peer.notify_logging_message(message).await;
        }
    }

    /// Sends `request` (what `ask` is) to the client that can answer it and returns its
    /// answer: the client's own error as it is, a refusal when no client can answer or the
    /// answer takes longer than `timeout`, or the upstream cancels (`cancelled`).
    pub async fn relay(
        &self,
        upstream: &str,
        ask: Ask,
        request: ServerRequest,
        timeout: Duration,
        cancelled: CancellationToken,
    ) -> Result<ClientResult, McpError> {
        let method = ask.method();
        let (peer, originating) = self.answerer(ask).map_err(|why| {
            tracing::info!(upstream, "upstream asked {method}; refused: {why}");
            refused(method, why)
        })?;
        tracing::info!(upstream, "upstream asked {method}; relayed to the client");
        let mut request = request;
        request
            .extensions_mut()
            .insert(OriginatingRequestId(originating));
        // In a task of its own: rmcp would mark it as belonging to the request this task
        // serves, which is the upstream's (its id means nothing on the client's session).
        // Aborted when dropped: the upstream gave up on its request.
        let sent = AbortOnDropHandle::new(tokio::spawn(async move {
            tokio::time::timeout(timeout, peer.send_request(request)).await
        }));
        let answer = tokio::select! {
            // An error: the task did not finish (it panicked).
            answer = sent => answer.ok(),
            _ = cancelled.cancelled() => return Err(refused(method, "the upstream cancelled it")),
        };
        match answer {
            Some(Ok(Ok(result))) => Ok(result),
            Some(Ok(Err(ServiceError::McpError(error)))) => Err(error),
            Some(Ok(Err(error))) => Err(refused(
                method,
                &format!("the client could not answer: {error}"),
            )),
            Some(Err(_)) => Err(refused(
                method,
                &format!("the client did not answer within {timeout:?}"),
            )),
            None => Err(refused(method, "the relay ended without an answer")),
        }
    }
}

fn refused(method: &str, why: &str) -> McpError {
    McpError::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("latchkey cannot relay {method}: {why}"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_as_the_protocol_says() {
        let declared: ClientCapabilities =
            serde_json::from_value(serde_json::json!({"elicitation": {}, "roots": {}})).unwrap();
        assert!(Ask::FormElicitation.declared(&declared));
        assert!(!Ask::UrlElicitation.declared(&declared));
        assert!(Ask::Roots.declared(&declared));
        assert!(!Ask::Sampling.declared(&declared));
        let url_only: ClientCapabilities =
            serde_json::from_value(serde_json::json!({"elicitation": {"url": {}}})).unwrap();
        assert!(!Ask::FormElicitation.declared(&url_only));
        assert!(Ask::UrlElicitation.declared(&url_only));
    }
}
