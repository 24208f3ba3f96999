//! The gate: what every request goes through before it is routed, in this order —
//! 1. the key is taken out of the request (`auth::take_credentials`, and
//!    `auth::take_path_key` for `{base}/mcp/<key>`);
//! 2. the access log record and HTTP span start (`telemetry::access_log`);
//! 3. a URI longer than `--max-uri-bytes` is refused (414);
//! 4. on a path that is not open: a client `--allowed-client` does not allow is refused
//!    (403), and Host and Origin are checked (`host_origin`);
//! 5. a CORS preflight from an allowed origin is answered (`cors`), with no key asked for;
//! 6. on a protected path: a locked-out client is refused (429) before its key is looked at,
//!    the credentials are put to the verifiers (`verifier`: the key set, and with `--oauth`
//!    access tokens), whose verdicts decide the lockout count and the 401 (with its
//!    `WWW-Authenticate`) once, and the request takes a place among those in flight (503
//!    when `--max-requests` are);
//! 7. the routes answer (`routes`), readable by an allowed origin's page (`cors`), and the
//!    record is finished with the status (499 if the client left before the answer was
//!    ready; `future`).
//!
//! The record shows a path whole only when latchkey serves it (`Paths::shown`): a key may
//! have been put in the path. The client's address is found once, in `admit`, and handed on
//! to the consent page (which counts wrong secrets as the gate counts wrong keys).
//!
//! One synchronous tower service rather than a stack of `axum::middleware::from_fn` layers:
//! each of those boxes a future and clones the whole route below it on every request, which
//! cost more than the checks themselves (see BENCHMARKS.md).

mod future;
pub mod verifier;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};
use tower_http::set_header::SetResponseHeader;

use crate::auth::{self, AuthMethod};
use crate::clients::{AllowedClients, ClientAddr};
use crate::connections::WithPeer;
use crate::cors;
use crate::error_response::json_error;
use crate::host_origin::{self, HostOriginGuard};
use crate::keys::KeySet;
use crate::listen::Peer;
use crate::lockout::Lockout;
use crate::oauth::OAuth;
use crate::routes::{Access, Matched, Paths};
use crate::telemetry::Export;
use crate::telemetry::http::Record;
use crate::telemetry::observe::ExchangeObserver;

pub use future::GateFuture;
use verifier::{AccessTokens, Decision, Keys, Verifier};

/// What the gate checks.
enum Checks {
    /// The routes behind are `paths`: guard and key as [`Paths::classify`] says.
    Routes {
        paths: Paths,
        guard: HostOriginGuard,
        /// Who may pass: the keys, and with `--oauth` its access tokens (whose 401 says
        /// where to find the authorization server).
        verifiers: Box<[Box<dyn Verifier>]>,
        limits: Box<Limits>,
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

/// The gate's bounds on requests, from the command line.
pub struct RequestLimits {
    pub max_uri_bytes: usize,
    pub max_requests: usize,
    pub allowed_clients: AllowedClients,
    /// Shared with the OAuth consent page, where a wrong secret counts as a wrong key.
    pub lockout: Arc<Lockout>,
}

struct Limits {
    max_uri_bytes: usize,
    allowed_clients: AllowedClients,
    lockout: Arc<Lockout>,
    /// One permit per request in flight past the key check.
    in_flight: Arc<Semaphore>,
}

/// Builds [`Gate`]s in front of a service.
#[derive(Clone)]
pub struct GateLayer {
    checks: Arc<Checks>,
    export: Option<Export>,
    observer: Option<Arc<dyn ExchangeObserver>>,
}

impl GateLayer {
    /// The gate in front of `paths`' router.
    pub fn new(
        paths: Paths,
        guard: HostOriginGuard,
        keys: Arc<ArcSwap<KeySet>>,
        limits: RequestLimits,
        oauth: Option<Arc<OAuth>>,
        export: Option<Export>,
    ) -> Self {
        let limits = Box::new(Limits {
            max_uri_bytes: limits.max_uri_bytes,
            allowed_clients: limits.allowed_clients,
            lockout: limits.lockout,
            in_flight: Arc::new(Semaphore::new(limits.max_requests)),
        });
        let mut verifiers: Vec<Box<dyn Verifier>> = vec![Box::new(Keys(keys))];
        if let Some(oauth) = oauth {
            verifiers.push(Box::new(AccessTokens(oauth)));
        }
        Self {
            checks: Arc::new(Checks::Routes {
                paths,
                guard,
                verifiers: verifiers.into_boxed_slice(),
                limits,
            }),
            export,
            observer: None,
        }
    }

    /// Every finished request is told to `observer` (the console's refusals and clients).
    pub fn telling(mut self, observer: Option<Arc<dyn ExchangeObserver>>) -> Self {
        self.observer = observer;
        self
    }

    /// A gate that only takes keys out and logs (no route behind it needs a key); `paths`
    /// are the main listener's, to know which paths may be shown in the log.
    pub fn log_only(paths: Paths, export: Option<Export>) -> Self {
        Self {
            checks: Arc::new(Checks::None { paths }),
            export,
            observer: None,
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
            observer: self.observer.clone(),
            peer: None,
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    checks: Arc<Checks>,
    export: Option<Export>,
    observer: Option<Arc<dyn ExchangeObserver>>,
    /// The connection's other end, set by `connections::serve`.
    peer: Option<Peer>,
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

impl<S> Gate<S> {
    /// What to do with a request to `matched`, or what to answer instead.
    fn admit(
        &self,
        matched: Matched<'_>,
        client: ClientAddr,
        request: &Request,
        credentials: &auth::Credentials,
    ) -> Result<Admitted, Answer> {
        let Checks::Routes {
            guard,
            verifiers,
            limits,
            ..
        } = &*self.checks
        else {
            return Ok(Admitted::default());
        };
        let uri_bytes = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if uri_bytes > limits.max_uri_bytes {
            return Err(Answer::UriTooLong(limits.max_uri_bytes));
        }
        if matched.access == Access::Open {
            return Ok(Admitted::default());
        }
        if !limits.allowed_clients.allows(client) {
            return Err(Answer::ClientNotAllowed);
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
        if matched.access != Access::Protected {
            return Ok(Admitted {
                origin,
                client: Some(client),
                ..Admitted::default()
            });
        }
        // A locked-out client's keys are not even checked.
        limits
            .lockout
            .check(client)
            .map_err(|retry_after| Answer::LockedOut {
                retry_after,
                origin: origin.clone(),
            })?;
        let (auth, key_label) = verified(verifiers, &limits.lockout, client, credentials, &origin)?;
        let permit = limits
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Answer::Busy)?;
        Ok(Admitted {
            auth: Some(auth),
            key_label,
            origin,
            permit: Some(permit),
            client: Some(client),
        })
    }
}

/// How `credentials` authenticate, by the verifiers' decision; a refusal that is a guess
/// counts against `client`, and its 401 says where to authenticate.
fn verified(
    verifiers: &[Box<dyn Verifier>],
    lockout: &Lockout,
    client: ClientAddr,
    credentials: &auth::Credentials,
    origin: &Option<HeaderValue>,
) -> Result<(AuthMethod, Option<Arc<str>>), Answer> {
    match verifier::decide(verifiers, credentials) {
        Decision::Admit(method, label) => {
            lockout.succeeded(client);
            Ok((method, label))
        }
        Decision::Refuse { refusal, guess } => {
            if guess {
                lockout.failed(client);
            }
            let challenge = verifiers
                .iter()
                .find_map(|v| v.challenge(refusal.presented()));
            Err(Answer::Key {
                refusal,
                origin: origin.clone(),
                challenge,
            })
        }
    }
}

/// A request let through to the routes.
#[derive(Default)]
struct Admitted {
    /// How the key came (`None` where none is needed).
    auth: Option<AuthMethod>,
    /// The key's label (`--api-key-file`), for a labelled key.
    key_label: Option<Arc<str>>,
    /// The request's `Origin`, allowed by the guard.
    origin: Option<HeaderValue>,
    /// Its place among the requests in flight, held until its answer is ready.
    permit: Option<OwnedSemaphorePermit>,
    /// Who sent it, where the path is not open.
    client: Option<ClientAddr>,
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
        /// With `--oauth`, the `WWW-Authenticate` that points to the resource metadata.
        challenge: Option<HeaderValue>,
    },
    LockedOut {
        retry_after: Duration,
        origin: Option<HeaderValue>,
    },
    UriTooLong(usize),
    ClientNotAllowed,
    /// As many requests in flight as `--max-requests` allows.
    Busy,
}

impl Answer {
    fn response(self) -> Response {
        match self {
            Answer::HostOrigin(refusal) => host_origin::refuse(&refusal),
            Answer::Preflight(origin) => cors::preflight(origin),
            Answer::Key {
                refusal,
                origin,
                challenge,
            } => {
                let mut response = refusal.response();
                if let Some(challenge) = challenge {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, challenge);
                }
                if let Some(origin) = origin {
                    cors::allow(&mut response, origin);
                }
                response
            }
            Answer::LockedOut {
                retry_after,
                origin,
            } => {
                let mut response = json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_failures",
                    "Too many wrong API keys from this address; retry after the time in \
                     Retry-After.",
                );
                // Whole seconds, rounded up: retrying a moment early would still be refused.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                if let Some(origin) = origin {
                    cors::allow(&mut response, origin);
                }
                response
            }
            Answer::UriTooLong(max) => json_error(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                &format!("The request URI is longer than --max-uri-bytes ({max} bytes)."),
            ),
            Answer::ClientNotAllowed => json_error(
                StatusCode::FORBIDDEN,
                "client_not_allowed",
                "Requests from this address are not allowed (--allowed-client).",
            ),
            Answer::Busy => {
                let mut response = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "The server has as many requests in flight as --max-requests allows; \
                     retry shortly.",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
        let mut taken = auth::take_credentials(&mut request);
        let paths = self.checks.paths();
        auth::take_path_key(&mut request, paths.mcp(), &mut taken);
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
        // Found once: the bounds count it, the access record and span show it.
        let client = ClientAddr::of(self.peer, request.headers());
        let mut record = Record::start(
            &mut request,
            self.peer,
            client,
            taken.recorded_query,
            shown,
            matched.route,
            self.export.as_ref(),
        );
        if matched.route.is_some_and(|route| paths.is_mcp(route)) {
            record.await_mcp_note(&mut request);
        }
        if let Some(observer) = &self.observer {
            record.tell(observer);
        }
        // A refused request never reaches the inner service, which is ready and reserves
        // nothing (axum's Router), so it is simply not called.
        match self.admit(matched, client, &request, &taken.credentials) {
            Ok(admitted) => {
                record.key_label(admitted.key_label);
                // The OAuth consent page counts wrong secrets per client, as the gate does.
                if let (Access::Guarded, Some(client)) = (matched.access, admitted.client) {
                    request.extensions_mut().insert(client);
                }
                // A registration is deleted with its token as Bearer (RFC 7592), which the
                // OAuth routes see only as the digest taken here.
                if matched.access == Access::Guarded && !taken.credentials.is_empty() {
                    request.extensions_mut().insert(taken.credentials.clone());
                }
                // The activity feed says which credential came (it takes keys only).
                if let Some(auth) = admitted.auth
                    && matched.route.is_some_and(|route| paths.is_activity(route))
                {
                    request.extensions_mut().insert(auth);
                }
                GateFuture::routes(
                    self.inner.call(request),
                    record,
                    admitted.auth,
                    admitted.origin,
                    admitted.permit,
                )
            }
            Err(refusal) => {
                // A refused key is recorded by how it came (with its 401, 400 or 429), not
                // as no key at all.
                let auth = match refusal {
                    Answer::Key { .. } | Answer::LockedOut { .. } => {
                        taken.credentials.first_method()
                    }
                    _ => None,
                };
                GateFuture::refused(refusal.response(), record, auth)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;

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
        let paths = Paths::new(&Default::default(), false, false);
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
