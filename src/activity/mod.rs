//! What the console and `latchkey watch` show: every MCP operation a client sent, as it
//! finished. An [`Observer`] of `telemetry::mcp`: the last [`LIVE_ROWS`] are kept in memory,
//! and whoever is watching takes the newest of them when told that calls came.
//!
//! A watcher is never sent a call: it takes what is kept after the last one it has, so a
//! call costs a push, whoever watches and however fast they read (a channel with a message
//! for every call and reader cost a fifth of the requests a second at 16 connections). A
//! reader more than [`LIVE_ROWS`] calls behind passes over the oldest; the ids say how many.
//!
//! A [`Call`] holds names (cut to [`MAX_NAME`]) and numbers, never a header; a tool call's
//! arguments and result only with `--trace-tool-io` (redacted and cut by `mcp::span`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod bounded;
pub mod call;
pub mod clients;
pub mod refusals;

pub use call::{Call, MAX_NAME, Outcome};
pub use clients::{ClientRow, Clients, Step};
pub use refusals::{RefusalRow, Refusals};

use crate::history::History;
use crate::telemetry::observe::{Exchange, ExchangeObserver, Finished, Observer, Side};

/// Calls kept for a page opened now and for the watchers to take (each at most about
/// 1 KiB, 9 KiB with tool I/O).
pub const LIVE_ROWS: usize = 1000;
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
    count: Arc<AtomicUsize>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The recent calls, and who is waiting for the next.
#[derive(Debug)]
pub struct Activity {
    recent: Mutex<VecDeque<Arc<Call>>>,
    next_id: AtomicU64,
    /// Where every call is kept beyond `LIVE_ROWS` (and across restarts).
    history: Option<Arc<History>>,
    /// Watchers of each kind ([`Watcher`]).
    watchers: [Arc<AtomicUsize>; 2],
    /// Set by a watcher about to wait; the call that finds it set tells [`Self::arrived`].
    waiting: AtomicBool,
    arrived: tokio::sync::Notify,
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
            next_id: AtomicU64::new(last_id + 1),
            history,
            watchers: Default::default(),
            waiting: AtomicBool::new(false),
            arrived: tokio::sync::Notify::new(),
        }
    }

    /// The newest id given out (0 before any).
    pub fn last_id(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst) - 1
    }

    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// The calls kept, oldest first, after `after` (an id).
    pub fn recent(&self, after: u64) -> Vec<Arc<Call>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // Kept in order of their ids, which have no gaps within a run; kept from an
        // earlier run, they may: the rows are searched, not counted.
        let first = recent.partition_point(|c| c.id <= after);
        recent.range(first..).cloned().collect()
    }

    /// Resolves once a call newer than `after` is kept.
    pub async fn newer_than(&self, after: u64) {
        loop {
            let arrived = self.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            // Registered before the flag is set and the id looked at: a call that comes
            // in between finds the flag and wakes this.
            arrived.as_mut().enable();
            self.waiting.store(true, Ordering::SeqCst);
            if self.last_id() > after {
                return;
            }
            arrived.await;
        }
    }

    /// A place among the watchers: at most [`MAX_WATCHERS`] of each kind at once.
    pub fn watch(&self, kind: Watcher) -> Result<Watching, TooManyWatchers> {
        let count = self.watchers[kind as usize].clone();
        if count.fetch_add(1, Ordering::Relaxed) >= MAX_WATCHERS {
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(TooManyWatchers);
        }
        Ok(Watching { count })
    }
}

impl Observer for Activity {
    /// Kept: a lock held for a push; watchers waiting are told, which a call costs once
    /// per wait, not once per watcher or call.
    fn finished(&self, operation: &Finished<'_>) {
        if operation.side != Side::Server {
            return;
        }
        // Numbered, kept and recorded under one lock, so that the rows and the history
        // stay in the order of their ids.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let call = Arc::new(Call::of(id, operation));
        if recent.len() == LIVE_ROWS {
            recent.pop_front();
        }
        recent.push_back(call.clone());
        if let Some(history) = &self.history {
            history.record(call);
        }
        drop(recent);
        // Sequentially consistent with the id's increment and a watcher's own two steps
        // (set the flag, look at the id): one of the two sees the other (a plain load on x86).
        if self.waiting.load(Ordering::SeqCst) && self.waiting.swap(false, Ordering::SeqCst) {
            self.arrived.notify_waiters();
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
    fn calls_are_kept_within_the_bound() {
        let activity = Activity::default();
        let method = Cow::Borrowed("tools/call");
        let tool: Arc<str> = "hello".into();
        for _ in 0..LIVE_ROWS + 5 {
            activity.finished(&finished(&method, Some(&tool), None));
        }
        let kept = activity.recent(0);
        assert_eq!(kept.len(), LIVE_ROWS);
        assert_eq!(kept[0].id, 6, "the oldest go first");
        let after: Vec<_> = activity
            .recent(LIVE_ROWS as u64)
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(after, [1001, 1002, 1003, 1004, 1005]);
        assert!(activity.recent(1005).is_empty());
    }

    /// A watcher waiting is woken by the next call, however many wait; one that asks for
    /// what it already missed is not kept waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watchers_waiting_are_told_of_the_next_call() {
        let activity = Arc::new(Activity::default());
        let method = Cow::Borrowed("tools/call");
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let activity = activity.clone();
                tokio::spawn(async move { activity.newer_than(0).await })
            })
            .collect();
        // At least one is waiting (polled, not slept for).
        while !activity.waiting.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        activity.finished(&finished(&method, None, None));
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .expect("woken by the call")
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), activity.newer_than(0))
            .await
            .expect("a call newer than 0 is kept already");
        // And one that has the newest waits for the next.
        let waiting = tokio::time::timeout(Duration::from_millis(50), activity.newer_than(1));
        assert!(waiting.await.is_err());
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
