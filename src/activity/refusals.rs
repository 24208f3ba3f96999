//! The requests refused lately, for the console's refusals view. A kind of refusal (the
//! same client, status, error, method and path) is one row, counted, with when it was first
//! and last seen: a flood of one client's wrong keys is one row, and whatever is sent, at
//! most [`KEPT`] rows of at most [`MAX_TEXT`] bytes a field are held.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::telemetry::observe::{RefusalObserver, Refused};

/// Rows kept, the newest kind last seen first to stay.
pub const KEPT: usize = 200;
/// The most of any field a row keeps (a Host, a path and a User-Agent are the client's).
pub const MAX_TEXT: usize = 256;

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

impl RefusalRow {
    fn is_kind_of(&self, refused: &Refused<'_>) -> bool {
        self.status == refused.status
            && self.error == cut(refused.error)
            && self.client.as_deref() == refused.client.as_deref().map(cut)
            && self.method == cut(refused.method)
            && self.path == cut(refused.path)
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

/// `text` cut to [`MAX_TEXT`] bytes, at a character.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RefusalObserver for Refusals {
    /// Counted on its kind's row (moved to the newest), or a new row in place of the
    /// oldest: a scan of at most [`KEPT`] rows under the lock.
    fn refused(&self, refused: &Refused<'_>) {
        let now = now_ms();
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = rows.iter().rposition(|row| row.is_kind_of(refused)) {
            let mut row = rows.remove(at).expect("found above");
            row.count += 1;
            row.last_ms = now;
            row.description = cut(refused.description).to_owned();
            row.user_agent = refused.user_agent.map(|ua| cut(ua).to_owned());
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
            status: refused.status,
            error: cut(refused.error).to_owned(),
            description: cut(refused.description).to_owned(),
            client: refused.client.as_deref().map(|c| cut(c).to_owned()),
            method: cut(refused.method).to_owned(),
            path: cut(refused.path).to_owned(),
            user_agent: refused.user_agent.map(|ua| cut(ua).to_owned()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused<'a>(client: &str, path: &'a str) -> Refused<'a> {
        Refused {
            status: 401,
            error: "invalid_token",
            description: "wrong key",
            client: Some(client.to_owned()),
            method: "POST",
            path,
            user_agent: Some("curl/8"),
        }
    }

    #[test]
    fn a_kind_of_refusal_is_one_row_and_the_rows_are_bounded() {
        let refusals = Refusals::default();
        for _ in 0..1000 {
            refusals.refused(&refused("192.0.2.1", "/mcp"));
        }
        refusals.refused(&refused("192.0.2.2", "/mcp"));
        let rows = refusals.recent();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].client.as_deref(), rows[0].count),
            (Some("192.0.2.2"), 1)
        );
        assert_eq!(rows[1].count, 1000);
        let long = "/x".repeat(10_000);
        for i in 0..KEPT + 50 {
            refusals.refused(&refused(&format!("198.51.100.{i}"), &long));
        }
        let rows = refusals.recent();
        assert_eq!(rows.len(), KEPT);
        assert!(rows.iter().all(|r| r.path.len() <= MAX_TEXT));
        // The flood of new kinds pushed the oldest out, not the newest.
        assert_eq!(rows[0].client.as_deref(), Some("198.51.100.249"));
    }
}
