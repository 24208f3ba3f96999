//! What becomes of a request body that its handler did not read to the end.
//!
//! hyper cannot keep an HTTP/1.1 connection whose request body is partly unread: it takes
//! what has already arrived, then closes the connection after the answer without saying
//! so, and a client that reuses it for its next request gets no answer. The first request
//! of every OAuth client is such a one — a POST refused 401 before its body is read — and
//! this is the likely cause of the Python SDK's "Server disconnected without sending a
//! response" on a request of its OAuth flow (tests/oauth.rs, once in CI, not reproduced;
//! tests/hostile.rs shows the lost request).
//!
//! So, as Go's `net/http` does: a body of a known length up to [`DRAIN_MAX`] left unread is
//! read and thrown away after its handler lets go of it, for at most `--header-timeout`
//! (the time a client has for a head), and the connection is kept; any other body left
//! unread makes the answer say `Connection: close`. What a client without a key can make
//! latchkey do here is bounded: one such body per connection, [`DRAIN_MAX`] bytes, kept
//! nowhere.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::response::Response;
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// The longest body read and thrown away to keep its connection (an MCP request is
/// usually under a few KiB; Go's server reads up to 256 KiB).
pub const DRAIN_MAX: u64 = 64 * 1024;

/// A request body whose end its answer must know of; see [`Unread::mark`].
pub struct Unread(Arc<AtomicBool>);

/// The request as the service takes it, and — for an HTTP/1 request with a body of no
/// known length, or a longer one than [`DRAIN_MAX`] — what tells its answer whether that
/// body was read whole. A request without a body (most GETs) or over HTTP/2, where each
/// stream ends on its own, is passed as it is.
pub fn watch(request: hyper::Request<Incoming>, drain_for: Duration) -> (Request, Option<Unread>) {
    let (parts, body) = request.into_parts();
    let http1 = matches!(parts.version, Version::HTTP_10 | Version::HTTP_11);
    if !http1 || body.is_end_stream() {
        return (Request::from_parts(parts, Body::new(body)), None);
    }
    let drainable = body.size_hint().exact().is_some_and(|n| n <= DRAIN_MAX);
    let (end, unread) = if drainable {
        (End::Drain(drain_for), None)
    } else {
        let read_whole = Arc::new(AtomicBool::new(false));
        (End::Tell(read_whole.clone()), Some(Unread(read_whole)))
    };
    let body = Watched {
        inner: Some(body),
        ended: false,
        end,
    };
    (Request::from_parts(parts, Body::new(body)), unread)
}

impl Unread {
    /// Says `Connection: close` on `response` when the body was not read whole, so the
    /// client opens a new connection for its next request instead of losing it.
    pub fn mark(self, response: &mut Response) {
        if !self.0.load(Ordering::Acquire) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// What is done when the body was not read to its end.
enum End {
    /// Read the rest and throw it away, for at most this long.
    Drain(Duration),
    /// Tell the answer (which then closes the connection).
    Tell(Arc<AtomicBool>),
}

/// hyper's body, noting when it has been read to its end.
struct Watched {
    /// Taken only when dropped, to be drained.
    inner: Option<Incoming>,
    ended: bool,
    end: End,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
        // A reader that stops at the last byte (a length it was told) has read it whole too.
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => inner.is_end_stream(),
            Some(Err(_)) => false,
        };
        if ended && !this.ended {
            this.ended = true;
            if let End::Tell(read_whole) = &this.end {
                read_whole.store(true, Ordering::Release);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            |inner| inner.size_hint(),
        )
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let End::Drain(within) = self.end else {
            return;
        };
        let (Some(mut body), false) = (self.inner.take(), self.ended) else {
            return;
        };
        // Outside a runtime (nothing of latchkey's drops a body there) hyper closes it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drained = async { while let Some(Ok(_)) = body.frame().await {} };
            // Not in time: dropped, and hyper closes the connection.
            let _ = tokio::time::timeout(within, drained).await;
        });
    }
}
