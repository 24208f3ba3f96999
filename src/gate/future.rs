//! The gate's response future: the routes' answer or the gate's own refusal, an enum so that
//! a refused request cannot also hold a route's future. Either way the access record is
//! finished once, with the status — or, dropped unanswered, with [`CLIENT_CLOSED`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

use crate::auth::AuthMethod;
use crate::cors;
use crate::error_response::Refusal;
use crate::telemetry::http::Record;

/// The status logged for a request whose client went away before its response was ready
/// (nginx's "client closed request"): hyper then drops the future instead of polling it on.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => panic!("499 is a valid status code"),
};

pin_project! {
    /// What the request is waiting for.
    #[project = Waiting]
    enum State<F> {
        /// The routes' answer.
        Routes {
            #[pin]
            future: F,
            // An allowed origin, whose page may read the routes' answer.
            origin: Option<HeaderValue>,
            // Its place among the requests in flight, held until the answer is ready.
            permit: Option<OwnedSemaphorePermit>,
        },
        /// The gate's own answer, ready at once (taken when it is given).
        Refused { response: Option<Response> },
    }
}

pin_project! {
    /// The routes' answer (or the refusal), logged when it is ready — or, with
    /// [`CLIENT_CLOSED`], when it is dropped unanswered.
    pub struct GateFuture<F> {
        #[pin]
        state: State<F>,
        record: Option<Record>,
        auth: Option<AuthMethod>,
    }

    impl<F> PinnedDrop for GateFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                record.finish(CLIENT_CLOSED, *this.auth, None);
            }
        }
    }
}

impl<F> GateFuture<F> {
    /// The routes answer, through `future`.
    pub fn routes(
        future: F,
        record: Record,
        auth: Option<AuthMethod>,
        origin: Option<HeaderValue>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        GateFuture {
            state: State::Routes {
                future,
                origin,
                permit,
            },
            record: Some(record),
            auth,
        }
    }

    /// The gate answers `response` itself; `auth` is how a refused key came.
    pub fn refused(response: Response, record: Record, auth: Option<AuthMethod>) -> Self {
        GateFuture {
            state: State::Refused {
                response: Some(response),
            },
            record: Some(record),
            auth,
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
        let response = match this.state.project() {
            Waiting::Routes {
                future,
                origin,
                permit,
            } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(origin) = origin.take() {
                    cors::allow(&mut response, origin);
                }
                permit.take();
                response
            }
            Waiting::Refused { response } => {
                response.take().expect("GateFuture polled after completion")
            }
        };
        if let Some(record) = this.record.take() {
            let refusal = response.extensions().get::<Refusal>();
            record.finish(response.status(), *this.auth, refusal);
        }
        Poll::Ready(Ok(response))
    }
}
