//! Serving one listener: hyper's HTTP/1.1 and HTTP/2 with latchkey's bounds on a connection —
//! how many at once, how long a client may take to send a request's head, how large that
//! head may be, how long a connection may sit idle — and a stop that lets every request in
//! flight finish.
//!
//! Instead of `axum::serve`, which has none of these bounds and no way to set them.

mod places;
mod unread_body;

use places::{Activity, Place, Places};
use unread_body::Unread;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use crate::error_response::json_error;
use crate::listen::Peer;

/// The bounds on every connection of a listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time to send a request's head (HTTP/1.1), counted from the connection's start or the
    /// end of its previous response; also how long a connection that has not completed a
    /// request is kept, and how long an HTTP/2 client has to answer a PING.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head: request line and headers (HTTP/1.1), header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Most headers in a request (HTTP/1.1).
    pub max_headers: usize,
}

/// Connections over the cap are answered 503 (so a client learns why) while no more than
/// this many such answers are being written; beyond that they are closed at once.
const REFUSALS_AT_ONCE: usize = 32;

/// Serves `service` on `listener` until `shutdown`, then waits for every connection's
/// requests in flight to finish. `peer` says who a connection's other end is.
pub async fn serve<L, S>(
    mut listener: L,
    peer: impl Fn(&L::Addr) -> Peer,
    service: S,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) where
    L: Listener,
    S: WithPeer
        + Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let builder = Arc::new(builder(&limits));
    let places = Places::new(limits.max_connections);
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let tracker = TaskTracker::new();
    // Set while connections are being refused, so the log says so once per episode.
    let refusing = Arc::new(AtomicBool::new(false));
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let peer = peer(&addr);
        let io = TokioIo::new(io);
        let activity = Arc::new(Activity::new());
        let evict = CancellationToken::new();
        let Some(place) = places.take(peer, &activity, &evict) else {
            if !refusing.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max = limits.max_connections,
                    "at --max-connections with a request in flight on each: new connections \
                     get 503 until some close"
                );
            }
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tracker.spawn(refuse(builder.clone(), io, limits.header_timeout, permit));
            }
            continue;
        };
        refusing.store(false, Ordering::Relaxed);
        let connection = Connection {
            builder: builder.clone(),
            service: service.with_peer(peer),
            limits,
            shutdown: shutdown.clone(),
            activity,
            evict,
        };
        tracker.spawn(connection.serve(io, place));
    }
    // Stop listening at once; connections finish what they started.
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// hyper's own limit on header fields. Any other limit makes hyper initialise two arrays
/// of that many entries for every request: about 700 instructions (BENCHMARKS.md).
const HYPER_MAX_HEADERS: usize = 100;

fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper answers 431 when the head does not fit in its read buffer.
        .max_buf_size(limits.max_header_bytes);
    if limits.max_headers != HYPER_MAX_HEADERS {
        builder.http1().max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // A client that stops answering PINGs (gone, or holding a stream open on purpose)
        // is closed: pinged after an idle timeout without frames, given a head's time.
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(limits.header_timeout);
    builder
}

/// One accepted connection, with what serving it needs.
struct Connection<S> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: S,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    activity: Arc<Activity>,
    /// Cancelled when a newcomer at the cap takes this (idle) connection's place.
    evict: CancellationToken,
}

/// How long a connection closing gracefully, with nothing in flight, has to finish: an
/// HTTP/2 client that never answers the closing PING would otherwise hold it for ever.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl<S> Connection<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    /// Serves the connection until it ends, closing it gracefully at shutdown or when idle,
    /// and at once when evicted.
    async fn serve<I>(self, io: TokioIo<I>, _place: Place)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let counted = Counted {
            inner: self.service,
            activity: self.activity.clone(),
            drain_for: self.limits.header_timeout,
        };
        let conn = self.builder.serve_connection(io, counted);
        let mut conn = std::pin::pin!(conn);
        // The idle timer runs in a task of its own: polled beside the connection, it would
        // be polled (and its timer looked at) on every wake-up of the connection, twice a
        // request.
        let idle = CancellationToken::new();
        let watcher = tokio::spawn({
            let (idle, activity, limits) = (idle.clone(), self.activity.clone(), self.limits);
            async move {
                activity
                    .idle_for(limits.header_timeout, limits.idle_timeout)
                    .await;
                idle.cancel();
            }
        });
        let closed = closed_after_drain(&self.activity);
        let mut closed = std::pin::pin!(closed);
        let mut closing = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!("connection ended: {e}");
                    }
                    break;
                }
                // Graceful: an HTTP/1.1 response or HTTP/2 streams in progress finish first.
                _ = self.shutdown.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = idle.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = closed.as_mut(), if closing => break,
                _ = self.evict.cancelled() => break,
            }
        }
        watcher.abort();
    }
}

/// Resolves [`CLOSE_GRACE`] after nothing is in flight (polled only once closing).
async fn closed_after_drain(activity: &Activity) {
    activity.drained(CLOSE_GRACE).await;
    tokio::time::sleep(CLOSE_GRACE).await;
}

/// Answers every request on a connection over the cap 503, then closes it.
async fn refuse<I>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: TokioIo<I>,
    header_timeout: Duration,
    _permit: OwnedSemaphorePermit,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(|_: hyper::Request<Incoming>| async {
        let mut response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "The server holds as many connections as --max-connections allows; retry later.",
        );
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, Infallible>(response)
    });
    let conn = builder.serve_connection(io, service);
    // The one request this connection gets must come in time, like any other.
    let _ = tokio::time::timeout(header_timeout * 2, conn).await;
}

/// A service that can be told which connection it serves.
pub trait WithPeer {
    fn with_peer(&self, peer: Peer) -> Self;
}

/// The connection's service, as hyper calls it: counts the requests in flight.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
    /// How long a body its handler left unread is read on (`unread_body`).
    drain_for: Duration,
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for Counted<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody>;
    type Error = Infallible;
    type Future = CountedFuture<tower::util::Oneshot<S, Request>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.activity.begin();
        let (request, unread) = unread_body::watch(request, self.drain_for);
        CountedFuture {
            inner: self.inner.clone().oneshot(request),
            guard: Some(InFlight(self.activity.clone())),
            unread,
        }
    }
}

/// Ends a request's count when its answer has been sent whole, or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

pin_project! {
    pub struct CountedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
        unread: Option<Unread>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for CountedFuture<F> {
    type Output = Result<http::Response<CountedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(unread) = this.unread.take() {
            unread.mark(&mut response);
        }
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| CountedBody { inner, guard })))
    }
}

pin_project! {
    /// An answer's body, counted in flight until it ends: an open event stream is a
    /// request in progress, which neither the idle timer nor an eviction may cut.
    pub struct CountedBody {
        #[pin]
        inner: Body,
        guard: Option<InFlight>,
    }
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
