//! What the OAuth endpoints and the console's sign-in read before any key is known, bounded: a body of at most
//! [`MAX_BODY`] bytes, read within a deadline (`--header-timeout`), and at most
//! [`AT_ONCE`] such bodies being read at once, [`PER_CLIENT`] of them from one client.
//!
//! axum's extractors would buffer up to 2 MB per request with no deadline, and the OAuth
//! endpoints sit outside `--max-body` and `--max-requests`: 200 slow 2 MB bodies took a
//! release build from 28 to 431 MB (SECURITY.md). With these bounds a stranger can make the
//! endpoints hold at most `AT_ONCE × MAX_BODY` = 256 KiB of bodies (and the console's
//! sign-in, which has an `Intake` of its own, as much again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clients::ClientAddr;
use crate::error_response::json_error;

/// Largest body an OAuth endpoint reads: a registration (ChatGPT's and Claude's are under
/// 1 KiB), a token request or a consent form (a CIMD `client_id` URL is the longest part).
pub const MAX_BODY: usize = 8 * 1024;
/// Bodies read at once, from everyone.
pub const AT_ONCE: usize = 32;
/// Bodies read at once from one client (an IPv6 client by its /64).
pub const PER_CLIENT: usize = 4;

/// The bounds, shared by every OAuth and sign-in request.
pub struct Intake {
    deadline: Duration,
    overall: Arc<Semaphore>,
    /// Bodies being read per client; an entry lives only while one is (at most `AT_ONCE`).
    per_client: Mutex<HashMap<ClientAddr, usize>>,
}

impl Intake {
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            overall: Arc::new(Semaphore::new(AT_ONCE)),
            per_client: Mutex::new(HashMap::new()),
        }
    }

    /// A place to read a body from `client`, or why there is none.
    fn enter(&self, client: ClientAddr) -> Result<Reading<'_>, Full> {
        let Ok(permit) = self.overall.clone().try_acquire_owned() else {
            return Err(Full::Everyone);
        };
        let mut counts = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(client).or_default();
        if *count >= PER_CLIENT {
            return Err(Full::Client);
        }
        *count += 1;
        Ok(Reading {
            intake: self,
            client,
            _permit: permit,
        })
    }
}

/// Which bound a body met.
enum Full {
    Everyone,
    Client,
}

impl Full {
    fn response(self) -> Response {
        let (status, error, description) = match self {
            Full::Everyone => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "The OAuth endpoints are reading as many requests as they may; retry shortly.",
            ),
            Full::Client => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many OAuth requests at once from this address; retry shortly.",
            ),
        };
        let mut response = json_error(status, error, description);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// One body being read; leaving frees its places.
struct Reading<'a> {
    intake: &'a Intake,
    client: ClientAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .intake
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

fn too_large() -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request",
        &format!("The request body is larger than {MAX_BODY} bytes."),
    )
}

/// The middleware in front of every OAuth route: the handler gets the body whole, read
/// within the bounds.
pub async fn bounded(State(intake): State<Arc<Intake>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let client = parts
        .extensions
        .get::<ClientAddr>()
        .copied()
        .unwrap_or(ClientAddr::Local)
        .network();
    let bytes = {
        let _reading = match intake.enter(client) {
            Ok(reading) => reading,
            Err(full) => return full.response(),
        };
        let read = Limited::new(body, MAX_BODY).collect();
        match tokio::time::timeout(intake.deadline, read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Ok(Err(_)) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The request body could not be read.",
                );
            }
            Err(_) => {
                return json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    &format!(
                        "The request body did not arrive within {} (--header-timeout).",
                        humantime::format_duration(intake.deadline)
                    ),
                );
            }
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
