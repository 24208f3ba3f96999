//! What the console and `latchkey watch` show: every MCP operation a client sent, as it
//! finished. An [`Observer`] of `telemetry::mcp`: the last [`LIVE_ROWS`] are kept in memory,
//! and each is pushed to whoever is watching, through a bounded channel; a reader that falls
//! [`BACKLOG`] behind is dropped, never buffered for.
//!
//! A [`Call`] holds names (cut to [`MAX_NAME`]) and numbers, never a header; a tool call's
//! arguments and result only with `--trace-tool-io` (redacted and cut by `mcp::span`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

mod bounded;
pub mod call;
pub mod clients;
pub mod refusals;

pub use call::{Call, MAX_NAME, Outcome};
pub use clients::{ClientRow, Clients, Step};
pub use refusals::{RefusalRow, Refusals};

use crate::history::History;
use crate::telemetry::observe::{Exchange, ExchangeObserver, Finished, Observer, Side};

/// Calls kept for a page opened now (each at most about 1 KiB, 9 KiB with tool I/O).
pub const LIVE_ROWS: usize = 1000;
/// Calls a watcher may fall behind before it is dropped.
pub const BACKLOG: usize = 256;
/// Every this many calls, the watchers gathering are told to send what they have (so that
/// at any rate what they gather fits in [`BACKLOG`]).
pub const PILE: u64 = 64;
/// Pages and `latchkey watch`es watching at once, each kind at most this many (so that one
/// kind, the feed any key reads, cannot keep the owner's pages out).
pub const MAX_WATCHERS: usize = 8;

/// The requests the console shows beside the calls: the refusals and the clients, told of
/// every finished request by the gate.
#[derive(Debug, Default)]
pub struct Requests {
    pub refusals: Refusals,
    pub clients: Clients,
}

impl ExchangeObserver for Requests {
    fn finished(&self, exchange: &Exchange<'_>) {
        self.refusals.finished(exchange);
        self.clients.finished(exchange);
    }
}

/// Which kind of reader watches: a signed-in page, or the key's feed (`latchkey watch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watcher {
    Page,
    Feed,
}

/// A place among the watchers, given back when dropped.
pub struct Watching {
    receiver: broadcast::Receiver<Arc<Call>>,
    count: Arc<AtomicUsize>,
}

impl Watching {
    pub async fn recv(&mut self) -> Result<Arc<Call>, broadcast::error::RecvError> {
        self.receiver.recv().await
    }

    /// The next call already sent, without waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Call>, broadcast::error::TryRecvError> {
        self.receiver.try_recv()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The recent calls, and the channel new ones go out on.
#[derive(Debug)]
pub struct Activity {
    recent: Mutex<VecDeque<Arc<Call>>>,
    live: broadcast::Sender<Arc<Call>>,
    next_id: AtomicU64,
    /// Where every call is kept beyond `LIVE_ROWS` (and across restarts).
    history: Option<Arc<History>>,
    /// Watchers of each kind ([`Watcher`]).
    watchers: [Arc<AtomicUsize>; 2],
    /// Told every [`PILE`] calls.
    piled: tokio::sync::Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new(None, Vec::new(), 0)
    }
}

/// Why no watch could start.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_WATCHERS} pages or watches are open already: close one and try again")]
pub struct TooManyWatchers;

impl Activity {
    /// The activity, starting with `kept` (the last calls of an earlier run, oldest first)
    /// and counting on from `last_id`; each call also goes to `history`.
    pub fn new(history: Option<Arc<History>>, kept: Vec<Call>, last_id: u64) -> Self {
        let mut recent = VecDeque::with_capacity(LIVE_ROWS);
        let skip = kept.len().saturating_sub(LIVE_ROWS);
        recent.extend(kept.into_iter().skip(skip).map(Arc::new));
        Activity {
            recent: Mutex::new(recent),
            live: broadcast::channel(BACKLOG).0,
            next_id: AtomicU64::new(last_id + 1),
            history,
            watchers: Default::default(),
            piled: tokio::sync::Notify::new(),
        }
    }

    /// Told every [`PILE`] calls: a watcher gathering calls sends them now.
    pub fn piled(&self) -> tokio::sync::futures::Notified<'_> {
        self.piled.notified()
    }

    /// The newest id given out (0 before any).
    pub fn last_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// The calls kept, oldest first, after `after` (an id).
    pub fn recent(&self, after: u64) -> Vec<Arc<Call>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().filter(|c| c.id > after).cloned().collect()
    }

    /// Every call from now on, until the watcher falls [`BACKLOG`] behind; at most
    /// [`MAX_WATCHERS`] of each kind at once.
    pub fn watch(&self, kind: Watcher) -> Result<Watching, TooManyWatchers> {
        let count = self.watchers[kind as usize].clone();
        if count.fetch_add(1, Ordering::Relaxed) >= MAX_WATCHERS {
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(TooManyWatchers);
        }
        Ok(Watching {
            receiver: self.live.subscribe(),
            count,
        })
    }
}

impl Observer for Activity {
    /// Kept and sent on: a lock held for a push, and a send that never waits.
    fn finished(&self, operation: &Finished<'_>) {
        if operation.side != Side::Server {
            return;
        }
        // Numbered, kept and sent under one lock, so that every reader sees the ids in
        // order (a reader skips what is not newer than what it has).
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let call = Arc::new(Call::of(id, operation));
        if recent.len() == LIVE_ROWS {
            recent.pop_front();
        }
        recent.push_back(call.clone());
        if let Some(history) = &self.history {
            history.record(call.clone());
        }
        // No receiver is no error: nobody is watching. The send never waits.
        let _ = self.live.send(call);
        if id.is_multiple_of(PILE) {
            self.piled.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use super::*;

    #[allow(clippy::ptr_arg, reason = "the record holds a Cow")]
    fn finished<'a>(
        method: &'a Cow<'static, str>,
        tool: Option<&'a Arc<str>>,
        error: Option<&'a str>,
    ) -> Finished<'a> {
        Finished {
            side: Side::Server,
            method,
            tool,
            prompt: None,
            client: None,
            upstream: None,
            error_type: error,
            dropped: false,
            duration: Duration::from_millis(3),
            arguments_bytes: Some(2),
            answer_bytes: Some(40),
            trace_id: None,
            arguments: None,
            result: None,
        }
    }

    #[test]
    fn calls_are_kept_within_the_bound_and_sent_to_watchers() {
        let activity = Activity::default();
        let mut watcher = activity.watch(Watcher::Page).unwrap();
        let method = Cow::Borrowed("tools/call");
        let tool: Arc<str> = "hello".into();
        for _ in 0..LIVE_ROWS + 5 {
            activity.finished(&finished(&method, Some(&tool), None));
        }
        let kept = activity.recent(0);
        assert_eq!(kept.len(), LIVE_ROWS);
        assert_eq!(kept[0].id, 6, "the oldest go first");
        assert_eq!(activity.recent(LIVE_ROWS as u64).len(), 5);
        // The watcher fell behind: it hears so, and is not buffered for.
        assert!(matches!(
            watcher.receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn outcomes_say_how_each_ended() {
        let activity = Activity::default();
        let method = Cow::Borrowed("tools/call");
        activity.finished(&finished(&method, None, Some("tool_error")));
        activity.finished(&finished(&method, None, Some("-32602")));
        let mut dropped = finished(&method, None, None);
        dropped.dropped = true;
        activity.finished(&dropped);
        let mut client = finished(&method, None, None);
        client.side = Side::Client;
        activity.finished(&client);
        let outcomes: Vec<_> = activity
            .recent(0)
            .iter()
            .map(|c| (c.outcome, c.error.clone()))
            .collect();
        assert_eq!(
            outcomes,
            [
                (Outcome::ToolError, None),
                (Outcome::Error, Some("-32602".into())),
                (Outcome::Cancelled, None),
            ]
        );
    }

    #[test]
    fn watchers_are_bounded() {
        let activity = Activity::default();
        let feeds: Vec<_> = (0..MAX_WATCHERS)
            .map(|_| activity.watch(Watcher::Feed).unwrap())
            .collect();
        assert!(activity.watch(Watcher::Feed).is_err());
        // The feeds any key opens leave the owner's pages their places.
        assert!(activity.watch(Watcher::Page).is_ok());
        drop(feeds);
        assert!(activity.watch(Watcher::Feed).is_ok());
    }
}
