//! The resources one client session has subscribed to, by the URIs it sees: updates the
//! upstreams announce reach a session only for these, and when the session ends they are
//! let go (`crate::upstream` unsubscribes upstream when no session holds one any more).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::ErrorData as McpError;

/// The most subscriptions one session may hold (each costs an entry here and upstream).
pub const MAX_PER_SESSION: usize = 1024;

#[derive(Debug, Default)]
pub struct Subscribed {
    held: Mutex<HashSet<String>>,
    watching: AtomicBool,
}

impl Subscribed {
    /// True the first time only: whoever gets it starts the session's watcher.
    pub fn start_watching(&self) -> bool {
        !self.watching.swap(true, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `uri`: true when it is new, an error when the session holds the most already.
    pub fn add(&self, uri: &str) -> Result<bool, McpError> {
        let mut held = self.lock();
        if held.contains(uri) {
            return Ok(false);
        }
        if held.len() >= MAX_PER_SESSION {
            return Err(McpError::invalid_request(
                format!("a session may hold {MAX_PER_SESSION} resource subscriptions at most"),
                None,
            ));
        }
        Ok(held.insert(uri.to_owned()))
    }

    /// Removes `uri`: true when it was held.
    pub fn remove(&self, uri: &str) -> bool {
        self.lock().remove(uri)
    }

    pub fn contains(&self, uri: &str) -> bool {
        self.lock().contains(uri)
    }

    /// Every URI held, letting go of them.
    pub fn take_all(&self) -> Vec<String> {
        self.lock().drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_each_uri_once_and_a_bounded_number() {
        let held = Subscribed::default();
        assert!(held.add("a").unwrap());
        assert!(!held.add("a").unwrap());
        for i in 1..MAX_PER_SESSION {
            assert!(held.add(&i.to_string()).unwrap());
        }
        assert!(held.add("one too many").is_err());
        assert!(held.remove("a") && !held.remove("a"));
        assert_eq!(held.take_all().len(), MAX_PER_SESSION - 1);
        assert!(!held.contains("1"));
    }
}
