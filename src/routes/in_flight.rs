//! With `--sessions`, the answers to POSTs on the MCP endpoint still being sent. At shutdown
//! rmcp's sessions end only once every one of them has been sent, so a call in flight gets
//! its answer and a `subscriptions/listen` stream its final result; ending the sessions at
//! the same moment as the listeners cut both (a listen stream at SIGTERM ended without its
//! result, seen). The wait is bounded by `--shutdown-timeout`, after which latchkey exits
//! whatever is still being sent. The session's own GET streams are not tracked: they end
//! only when the sessions do.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// The answers in flight.
#[derive(Clone, Default)]
pub struct InFlight {
    tracker: TaskTracker,
}

impl InFlight {
    /// The answer `answer` makes, counted in flight from now until its body has been sent
    /// (or dropped): from before rmcp has the request, so none falls between the two.
    pub async fn track(&self, answer: impl Future<Output = Response>) -> Response {
        let token = self.tracker.token();
        answer.await.map(|inner| {
            Body::new(Tracked {
                inner,
                _token: token,
            })
        })
    }

    /// Once `shutdown` is cancelled and every answer in flight is sent, cancels `sessions`
    /// (what ends rmcp's sessions and their streams).
    pub fn end_sessions_after(&self, shutdown: CancellationToken, sessions: CancellationToken) {
        let tracker = self.tracker.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracker.close();
            tracker.wait().await;
            sessions.cancel();
        });
    }
}

pin_project! {
    /// A response body that holds its place in [`InFlight`] until it is dropped.
    struct Tracked {
        #[pin]
        inner: Body,
        _token: TaskTrackerToken,
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
