//! The gate: what every request goes through before it is routed, in this order —
//! 1. the key is taken out of the request (`auth::take_credentials`);
//! 2. the access log record and HTTP span start (`telemetry::access_log`);
//! 3. Host and Origin are checked (`host_origin`), unless the path is open;
//! 4. a CORS preflight from an allowed origin is answered (`cors`), with no key asked for;
//! 5. the key is checked (`auth::check`), if the path is protected;
//! 6. the routes answer (`routes`), readable by an allowed origin's page (`cors`), and the
//!    record is finished with the status (499 if the client left before the answer was
//!    ready).
//!
//! The record shows a path whole only when latchkey serves it (`Paths::shown`): a key may
//! have been put in the path.
//!
//! One synchronous tower service rather than a stack of `axum::middleware::from_fn` layers:
//! each of those boxes a future and clones the whole route below it on every request, which
//! cost more than the checks themselves (see BENCHMARKS.md).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::extract::connect_info::Connected;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::set_header::SetResponseHeader;

use crate::auth::{self, AuthMethod};
use crate::cors;
use crate::host_origin::{self, HostOriginGuard};
use crate::keys::KeySet;
use crate::listen::Peer;
use crate::routes::{Access, Matched, Paths};
use crate::telemetry::Export;
use crate::telemetry::http::Record;

/// What the gate checks.
enum Checks {
    /// The routes behind are `paths`: guard and key as [`Paths::classify`] says.
    Routes {
        paths: Paths,
        guard: HostOriginGuard,
        keys: Arc<ArcSwap<KeySet>>,
    },
    /// Nothing is checked, only logged, with paths shown as `paths` allows (the
    /// HTTP-to-HTTPS redirect listener).
    None { paths: Paths },
}

impl Checks {
    fn paths(&self) -> &Paths {
        match self {
            Checks::Routes { paths, .. } | Checks::None { paths } => paths,
        }
    }
}

/// Builds [`Gate`]s in front of a service.
#[derive(Clone)]
pub struct GateLayer {
    checks: Arc<Checks>,
    export: Option<Export>,
}

impl GateLayer {
    /// The gate in front of `paths`' router.
    pub fn new(
        paths: Paths,
        guard: HostOriginGuard,
        keys: Arc<ArcSwap<KeySet>>,
        export: Option<Export>,
    ) -> Self {
        Self {
            checks: Arc::new(Checks::Routes { paths, guard, keys }),
            export,
        }
    }

    /// A gate that only takes keys out and logs (no route behind it needs a key); `paths`
    /// are the main listener's, to know which paths may be shown in the log.
    pub fn log_only(paths: Paths, export: Option<Export>) -> Self {
        Self {
            checks: Arc::new(Checks::None { paths }),
            export,
        }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            checks: self.checks.clone(),
            export: self.export.clone(),
            peer: None,
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    checks: Arc<Checks>,
    export: Option<Export>,
    /// The connection's other end, set by [`PerConnection`].
    peer: Option<Peer>,
}

/// A service that can be told which connection it serves.
pub trait WithPeer {
    fn with_peer(&self, peer: Peer) -> Self;
}

impl<S: Clone> WithPeer for Gate<S> {
    fn with_peer(&self, peer: Peer) -> Self {
        Gate {
            peer: Some(peer),
            ..self.clone()
        }
    }
}

impl<S: WithPeer + Clone, M: Clone> WithPeer for SetResponseHeader<S, M> {
    fn with_peer(&self, peer: Peer) -> Self {
        let mut service = self.clone();
        *service.get_mut() = self.get_ref().with_peer(peer);
        service
    }
}

/// The make-service for `axum::serve`: one copy of the service per connection, which knows
/// the peer. (axum's `ConnectInfo` would instead add an extension to every request.)
#[derive(Clone)]
pub struct PerConnection<S>(pub S);

impl<'a, L, S> Service<IncomingStream<'a, L>> for PerConnection<S>
where
    L: Listener,
    Peer: Connected<IncomingStream<'a, L>>,
    S: WithPeer,
{
    type Response = S;
    type Error = Infallible;
    type Future = std::future::Ready<Result<S, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(self.0.with_peer(Peer::connect_info(stream))))
    }
}

impl<S> Gate<S> {
    /// What to do with a request to `matched`, or what to answer instead.
    fn admit(
        &self,
        matched: Matched<'_>,
        request: &Request,
        credentials: &auth::Credentials,
    ) -> Result<Admitted, Answer> {
        let Checks::Routes { guard, keys, .. } = &*self.checks else {
            return Ok(Admitted::default());
        };
        if matched.access == Access::Open {
            return Ok(Admitted::default());
        }
        // An Origin the guard allowed: its page may read the answer.
        let origin = guard
            .check(request.headers(), request.uri())
            .map_err(Answer::HostOrigin)?
            .cloned();
        if let Some(origin) = &origin
            && matched.route.is_some()
            && cors::is_preflight(request)
        {
            return Err(Answer::Preflight(origin.clone()));
        }
        let auth = match matched.access {
            Access::Protected => Some(auth::check(&keys.load(), credentials).map_err(
                |refusal| Answer::Key {
                    refusal,
                    origin: origin.clone(),
                },
            )?),
            _ => None,
        };
        Ok(Admitted { auth, origin })
    }
}

/// A request let through to the routes.
#[derive(Default)]
struct Admitted {
    /// How the key came (`None` where none is needed).
    auth: Option<AuthMethod>,
    /// The request's `Origin`, allowed by the guard.
    origin: Option<HeaderValue>,
}

/// What the gate answers itself: a refusal, or a preflight.
enum Answer {
    HostOrigin(host_origin::Refusal),
    /// A CORS preflight from this allowed origin to a route served here: no key needed.
    Preflight(HeaderValue),
    Key {
        refusal: auth::KeyRefusal,
        /// An allowed origin, whose page may read the 401 (and find how to authenticate).
        origin: Option<HeaderValue>,
    },
}

impl Answer {
    fn response(self) -> Response {
        match self {
            Answer::HostOrigin(refusal) => host_origin::refuse(&refusal),
            Answer::Preflight(origin) => cors::preflight(origin),
            Answer::Key { refusal, origin } => {
                let mut response = refusal.response();
                if let Some(origin) = origin {
                    cors::allow(&mut response, origin);
                }
                response
            }
        }
    }
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let taken = auth::take_credentials(&mut request);
        let paths = self.checks.paths();
        let path = request.uri().path();
        let (matched, shown) = match &*self.checks {
            Checks::Routes { .. } => {
                let matched = paths.classify(path);
                // A route served exactly is its own path; only the rest can hold a key.
                let shown = match (matched.access, matched.route) {
                    (Access::Guarded, _) | (_, None) => Some(paths.shown(path).into_owned()),
                    _ => None,
                };
                (matched, shown)
            }
            Checks::None { .. } => (
                Matched {
                    access: Access::Open,
                    route: None,
                },
                Some(paths.shown(path).into_owned()),
            ),
        };
        let record = Record::start(
            &mut request,
            self.peer,
            taken.recorded_query,
            shown,
            matched.route,
            self.export.as_ref(),
        );
        // A refused request never reaches the inner service, which is ready and reserves
        // nothing (axum's Router), so it is simply not called.
        match self.admit(matched, &request, &taken.credentials) {
            Ok(admitted) => GateFuture {
                inner: Some(self.inner.call(request)),
                refused: None,
                record: Some(record),
                auth: admitted.auth,
                origin: admitted.origin,
            },
            Err(refusal) => GateFuture {
                inner: None,
                refused: Some(refusal.response()),
                record: Some(record),
                auth: None,
                origin: None,
            },
        }
    }
}

/// The status logged for a request whose client went away before its response was ready
/// (nginx's "client closed request"): hyper then drops the future instead of polling it on.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => panic!("499 is a valid status code"),
};

pin_project! {
    /// The routes' answer (or the refusal), logged when it is ready — or, with
    /// [`CLIENT_CLOSED`], when it is dropped unanswered.
    pub struct GateFuture<F> {
        #[pin]
        inner: Option<F>,
        refused: Option<Response>,
        record: Option<Record>,
        auth: Option<AuthMethod>,
        // An allowed origin, whose page may read the routes' answer.
        origin: Option<HeaderValue>,
    }

    impl<F> PinnedDrop for GateFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                record.finish(CLIENT_CLOSED, *this.auth);
            }
        }
    }
}

impl<F> Future for GateFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.as_pin_mut() {
            Some(inner) => {
                let mut response = ready!(inner.poll(cx))?;
                if let Some(origin) = this.origin.take() {
                    cors::allow(&mut response, origin);
                }
                response
            }
            None => this
                .refused
                .take()
                .expect("GateFuture polled after completion"),
        };
        if let Some(record) = this.record.take() {
            record.finish(response.status(), *this.auth);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;
    use crate::telemetry::trace::Tracer;
    use axum::body::Body;

    /// The `http.response.status_code` of every HTTP span ended while `run` ran a gate over
    /// `answer` (a service that never answers when `None`).
    fn statuses(answer: Option<StatusCode>, run: impl FnOnce(GateFuture<BoxedAnswer>)) -> Vec<i64> {
        let (tracer, exporter) = Tracer::in_memory();
        let export = Export::new(
            tracer,
            Metrics::from_meter(&opentelemetry::global::meter("test")),
        );
        let service = tower::service_fn(move |_: Request| -> BoxedAnswer {
            match answer {
                Some(status) => Box::pin(async move {
                    let mut response = Response::new(Body::empty());
                    *response.status_mut() = status;
                    Ok(response)
                }),
                None => Box::pin(std::future::pending()),
            }
        });
        let paths = Paths::new(&Default::default());
        let mut gate = GateLayer::log_only(paths, Some(export)).layer(service);
        run(gate.call(Request::new(Body::empty())));
        let spans = exporter.get_finished_spans().unwrap();
        spans
            .iter()
            .map(|span| {
                let status = span
                    .attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "http.response.status_code");
                match status.map(|kv| &kv.value) {
                    Some(opentelemetry::Value::I64(code)) => *code,
                    other => panic!("no status code on the span: {other:?}"),
                }
            })
            .collect()
    }

    type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    #[test]
    fn a_request_dropped_before_its_answer_is_finished_as_client_closed() {
        assert_eq!(statuses(None, drop), [499]);
    }

    #[test]
    fn an_answered_request_is_finished_once_with_its_status() {
        // Not `futures::executor::block_on`: the span exporter uses that itself.
        let answered = |future: GateFuture<BoxedAnswer>| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(future).unwrap();
        };
        assert_eq!(statuses(Some(StatusCode::ACCEPTED), answered), [202]);
    }
}
