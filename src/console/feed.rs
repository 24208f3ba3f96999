//! The live feed: what was kept after the id the reader has, then, as calls finish, what is
//! kept after the newest it was sent. It ends at shutdown and — for a page — when its
//! session ends. A reader is never buffered for: each send is taken when it reads, so a
//! slow one passes over the calls that were no longer kept (`activity::LIVE_ROWS`), and
//! the ids say how many.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::Stream;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::sessions::SessionKey;
use super::state::Console;
use crate::activity::{Call, TooManyWatchers, Watcher, Watching};
use crate::auth::AuthMethod;
use crate::error_response::json_error;

/// How often a page's session is checked while nothing happens, and a page sent a comment
/// that keeps its stream alive (as MCP's event streams are, `routes::mcp::SSE_KEEP_ALIVE`).
const RECHECK: Duration = Duration::from_secs(15);
/// How long a feed gathers calls after the first before it sends them, together: a reader
/// asleep is one a call need not wake (woken and written to on every call, a reader cost
/// the server a fifth of its requests a second at 16 connections, and 5,100 instructions a
/// call in bench/instructions). At most `activity::LIVE_ROWS` calls are kept, so a feed
/// loses none below 10,000 calls a second.
const GATHER: Duration = Duration::from_millis(100);

#[derive(Clone, Deserialize)]
pub struct After {
    /// The last call the reader has; none: only what comes next (and `recent`).
    after: Option<u64>,
    /// Without `after`: this many of the last calls kept, first.
    recent: Option<usize>,
    /// `false`: end after what is kept.
    follow: Option<bool>,
}

impl After {
    /// The calls kept that the reader asks for first.
    fn backlog(&self, activity: &crate::activity::Activity) -> Vec<Arc<Call>> {
        match (self.after, self.recent) {
            (Some(after), _) => activity.recent(after),
            (None, Some(n)) => {
                let mut kept = activity.recent(0);
                kept.drain(..kept.len().saturating_sub(n));
                kept
            }
            (None, None) => Vec::new(),
        }
    }
}

/// Where a feed is.
struct Reading {
    console: Arc<Console>,
    /// The reader's place among the watchers.
    _place: Watching,
    /// The kept calls asked for first, not sent yet.
    backlog: Vec<Arc<Call>>,
    follow: bool,
    /// The newest call sent (or that the reader had).
    last: u64,
    /// The key of a page's session cookie (the one that named a live session), its session
    /// looked up again before each send and every `RECHECK`.
    session: Option<SessionKey>,
}

impl Reading {
    fn start(
        console: Arc<Console>,
        asked: &After,
        cookie: Option<SecretString>,
    ) -> Result<Self, TooManyWatchers> {
        let session = cookie.map(|cookie| SessionKey::of(cookie.expose_secret()));
        let kind = if session.is_some() {
            Watcher::Page
        } else {
            Watcher::Feed
        };
        let place = console.activity().watch(kind)?;
        let mut asked = asked.clone();
        // An id this run never gave (the last run stopped before writing its newest calls):
        // the reader has nothing of this run's, so it gets what is kept.
        if asked
            .after
            .is_some_and(|after| after > console.activity().last_id())
        {
            asked.after = Some(0);
        }
        let backlog = asked.backlog(console.activity());
        // What comes next is what is newer than the newest kept now: nothing falls between
        // the backlog and the live calls, and nothing is sent twice.
        let last = backlog
            .last()
            .map_or_else(|| console.activity().last_id(), |newest| newest.id)
            .max(asked.after.unwrap_or(0));
        Ok(Reading {
            console,
            _place: place,
            backlog,
            follow: asked.follow != Some(false),
            last,
            session,
        })
    }

    fn still_signed_in(&self) -> bool {
        self.session.as_ref().is_none_or(|session| {
            let console = &self.console;
            let found = console
                .sessions()
                .find_by_key(session, |id| console.is_live(id));
            found.is_some()
        })
    }

    /// The next calls to send, oldest first (none when `RECHECK` passed quietly), or
    /// `None` when the feed ends.
    async fn next(&mut self) -> Option<Vec<Arc<Call>>> {
        if !self.backlog.is_empty() {
            return Some(std::mem::take(&mut self.backlog));
        }
        loop {
            if !self.follow || !self.still_signed_in() {
                return None;
            }
            let activity = self.console.activity();
            tokio::select! {
                () = activity.newer_than(self.last) => {}
                () = self.console.shutdown().cancelled() => return None,
                () = tokio::time::sleep(RECHECK) => return Some(Vec::new()),
            }
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                () = self.console.shutdown().cancelled() => return None,
            }
            let calls = activity.recent(self.last);
            if let Some(newest) = calls.last() {
                self.last = newest.id;
                return Some(calls);
            }
        }
    }

    fn stream(self) -> impl Stream<Item = Vec<Arc<Call>>> + Send {
        futures::stream::unfold(self, |mut reading| async move {
            reading.next().await.map(|calls| (calls, reading))
        })
    }
}

fn busy(full: &TooManyWatchers) -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_watchers",
        &full.to_string(),
    )
}

/// The id an `EventSource` reconnecting says it has (`Last-Event-ID`) over the query's.
fn after(headers: &HeaderMap, mut query: After) -> After {
    if let Some(id) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        query.after = Some(id);
    }
    query
}

/// `{base}/console/events`: Server-Sent Events `calls`, each a JSON array of [`Call`]s, for
/// a page signed in.
pub async fn events(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<After>,
) -> Response {
    let Some((cookie, _)) = console.cookie_and_session(&headers) else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
            "Sign in to the console first.",
        );
    };
    let after = after(&headers, query);
    let reading = match Reading::start(console, &after, Some(cookie)) {
        Ok(reading) => reading,
        Err(full) => return busy(&full),
    };
    let frames = futures::StreamExt::map(reading.stream(), |calls| {
        Ok::<_, std::convert::Infallible>(Bytes::from(events_of(&calls)))
    });
    streamed(frames, "text/event-stream")
}

/// A feed's answer: `sends` as its body, never cached.
fn streamed(
    sends: impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
    content_type: &'static str,
) -> Response {
    let mut response = Response::new(Body::from_stream(sends));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `calls` as one Server-Sent Event `calls`: the id of the newest (what a reconnecting
/// `EventSource` says it has) and a JSON array of them as its data, written at once into one
/// buffer (JSON escapes every line break, so the data is one line). One event a send, not
/// one a call: an event's own lines cost a reader about 110 instructions a call
/// (bench/instructions, profiled), and a page parses one array. No calls (a quiet
/// `RECHECK`): a comment, which keeps the stream and any proxy's connection alive.
fn events_of(calls: &[Arc<Call>]) -> Vec<u8> {
    let Some(newest) = calls.last() else {
        return b":\n\n".to_vec();
    };
    let mut out = Vec::with_capacity(64 + calls.len() * 320);
    out.extend_from_slice(b"event: calls\nid: ");
    out.extend_from_slice(itoa::Buffer::new().format(newest.id).as_bytes());
    out.extend_from_slice(b"\ndata: [");
    for (i, call) in calls.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        call.write_json(&mut out);
    }
    out.extend_from_slice(b"]\n\n");
    out
}

/// `{base}/activity`: one JSON [`Call`] per line, behind the key (for `latchkey watch`).
/// An API key only: an OAuth token is an AI client's, which has no business reading what
/// the other clients call.
pub async fn lines(
    State(console): State<Arc<Console>>,
    auth: Option<axum::Extension<AuthMethod>>,
    Query(query): Query<After>,
) -> Response {
    if auth.is_none_or(|a| a.0 == AuthMethod::OAuth) {
        return json_error(
            StatusCode::FORBIDDEN,
            "key_required",
            "The activity feed takes an API key, not an OAuth client's token.",
        );
    }
    let reading = match Reading::start(console, &query, None) {
        Ok(reading) => reading,
        Err(full) => return busy(&full),
    };
    // A quiet `RECHECK` sends nothing here: JSON lines have no comment.
    let calls = futures::StreamExt::filter(reading.stream(), |calls| {
        std::future::ready(!calls.is_empty())
    });
    let lines = futures::StreamExt::map(calls, |calls| {
        let mut lines = Vec::with_capacity(calls.len() * 256);
        for call in calls {
            call.write_json(&mut lines);
            lines.push(b'\n');
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(lines))
    });
    streamed(lines, "application/x-ndjson")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::Outcome;

    /// A send is one event of three fields, however its calls' names break lines (JSON
    /// escapes them: an event's data must be one line, or a page would read another field
    /// out of it), its id the newest call's.
    #[test]
    fn a_send_is_one_event_whatever_its_names_hold() {
        let call = |id| {
            Arc::new(Call {
                id,
                at_ms: 5,
                method: "tools/call".into(),
                tool: Some("a\nevent: x\r\rdata: y".into()),
                prompt: None,
                client: Some("\r\n".into()),
                outcome: Outcome::Ok,
                error: None,
                duration_ms: 1.5,
                arguments_bytes: Some(2),
                answer_bytes: None,
                trace_id: None,
                arguments: None,
                result: None,
            })
        };
        let sent = String::from_utf8(events_of(&[call(7), call(8)])).unwrap();
        assert!(!sent.contains('\r'), "{sent:?}");
        let event = sent.strip_suffix("\n\n").expect("one event");
        let fields: Vec<_> = event.split('\n').collect();
        assert_eq!(fields[..2], ["event: calls", "id: 8"], "{sent:?}");
        assert_eq!(fields.len(), 3, "{sent:?}");
        let data = fields[2].strip_prefix("data: ").unwrap();
        let parsed: Vec<serde_json::Value> = serde_json::from_str(data).unwrap();
        let ids: Vec<_> = parsed.iter().map(|c| c["id"].as_u64()).collect();
        assert_eq!(ids, [Some(7), Some(8)]);
        for call in &parsed {
            assert_eq!(call["tool"], "a\nevent: x\r\rdata: y");
        }
        assert_eq!(
            events_of(&[]),
            b":\n\n",
            "a quiet while keeps the stream alive"
        );
    }
}
