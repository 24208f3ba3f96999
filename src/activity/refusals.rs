//! The requests refused lately, for the console's refusals view. A kind of refusal (the
//! same client, status, error, method and path) is one row, counted, with when it was first
//! and last seen: a flood of one client's wrong keys is one row, and whatever is sent, at
//! most [`KEPT`] rows of at most [`MAX_TEXT`] bytes a field are held.

use std::collections::VecDeque;
use std::sync::Mutex;

pub use super::bounded::MAX_TEXT;
use super::bounded::{cut, now_ms};
use crate::telemetry::observe::Exchange;

/// The statuses that are refusals.
pub const REFUSED: [u16; 6] = [401, 403, 413, 414, 429, 503];
/// Rows kept, the newest kind last seen first to stay.
pub const KEPT: usize = 200;

/// One kind of refusal.
#[derive(Clone, Debug)]
pub struct RefusalRow {
    pub first_ms: u64,
    pub last_ms: u64,
    pub count: u64,
    pub status: u16,
    pub error: String,
    pub description: String,
    pub client: Option<String>,
    pub method: String,
    pub path: String,
    pub user_agent: Option<String>,
}

/// What a refusal is, as its row keeps it.
struct Kind<'a> {
    status: u16,
    error: &'a str,
    description: &'a str,
    client: Option<String>,
    method: &'a str,
    path: &'a str,
    user_agent: Option<&'a str>,
}

impl<'a> Kind<'a> {
    fn of(exchange: &Exchange<'a>) -> Self {
        let (error, description) = exchange.error.unwrap_or_else(|| {
            let reason = axum::http::StatusCode::from_u16(exchange.status)
                .ok()
                .and_then(|s| s.canonical_reason());
            (reason.unwrap_or(""), "")
        });
        Kind {
            status: exchange.status,
            error: cut(error),
            description: cut(description),
            client: exchange.client.map(|c| cut(&c.to_string()).to_owned()),
            method: cut(exchange.method),
            path: cut(exchange.path),
            user_agent: exchange.user_agent.map(cut),
        }
    }
}

impl RefusalRow {
    fn is(&self, kind: &Kind<'_>) -> bool {
        self.status == kind.status
            && self.error == kind.error
            && self.client == kind.client
            && self.method == kind.method
            && self.path == kind.path
    }
}

#[derive(Debug, Default)]
pub struct Refusals {
    rows: Mutex<VecDeque<RefusalRow>>,
}

impl Refusals {
    /// The rows, the one last seen first.
    pub fn recent(&self) -> Vec<RefusalRow> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.iter().rev().cloned().collect()
    }
}

impl Refusals {
    /// Counted on its kind's row (moved to the newest), or a new row in place of the
    /// oldest: a scan of at most [`KEPT`] rows under the lock. Not a refusal: nothing.
    pub fn finished(&self, exchange: &Exchange<'_>) {
        if !REFUSED.contains(&exchange.status) {
            return;
        }
        let kind = Kind::of(exchange);
        let now = now_ms();
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = rows.iter().rposition(|row| row.is(&kind)) {
            let mut row = rows.remove(at).expect("found above");
            row.count += 1;
            row.last_ms = now;
            row.description = kind.description.to_owned();
            row.user_agent = kind.user_agent.map(str::to_owned);
            rows.push_back(row);
            return;
        }
        if rows.len() == KEPT {
            rows.pop_front();
        }
        rows.push_back(RefusalRow {
            first_ms: now,
            last_ms: now,
            count: 1,
            status: kind.status,
            error: kind.error.to_owned(),
            description: kind.description.to_owned(),
            client: kind.client,
            method: kind.method.to_owned(),
            path: kind.path.to_owned(),
            user_agent: kind.user_agent.map(str::to_owned),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::Client;

    fn refused<'a>(client: &'a Client, path: &'a str) -> Exchange<'a> {
        Exchange {
            status: 401,
            error: Some(("invalid_token", "wrong key")),
            client: Some(client),
            method: "POST",
            path,
            user_agent: Some("curl/8"),
            auth: None,
            key_label: None,
            mcp_method: None,
            mcp_client: None,
            duration: std::time::Duration::from_millis(1),
        }
    }

    fn ip(text: &str) -> Client {
        Client::Ip(text.parse().unwrap())
    }

    #[test]
    fn a_kind_of_refusal_is_one_row_and_the_rows_are_bounded() {
        let refusals = Refusals::default();
        for _ in 0..1000 {
            refusals.finished(&refused(&ip("192.0.2.1"), "/mcp"));
        }
        refusals.finished(&refused(&ip("192.0.2.2"), "/mcp"));
        let third = ip("192.0.2.3");
        let mut served = refused(&third, "/mcp");
        served.status = 200;
        refusals.finished(&served);
        let rows = refusals.recent();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].client.as_deref(), rows[0].count),
            (Some("192.0.2.2"), 1)
        );
        assert_eq!(rows[1].count, 1000);
        let long = "/x".repeat(10_000);
        for i in 0..KEPT + 50 {
            refusals.finished(&refused(&ip(&format!("198.51.100.{i}")), &long));
        }
        let rows = refusals.recent();
        assert_eq!(rows.len(), KEPT);
        assert!(rows.iter().all(|r| r.path.len() <= MAX_TEXT));
        // The flood of new kinds pushed the oldest out, not the newest.
        assert_eq!(rows[0].client.as_deref(), Some("198.51.100.249"));
    }
}
