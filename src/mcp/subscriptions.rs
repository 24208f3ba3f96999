//! The resources one client session has subscribed to, by the URIs it sees (prefixed, with
//! several upstreams): updates the upstreams announce reach a session only for these, under
//! the URI the session subscribed with (a resource subscribed by its upstream's own URI is
//! told of as such), and when the session ends they are let go (`crate::upstream`
//! unsubscribes upstream when no session holds one any more).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::ErrorData as McpError;

/// The most subscriptions one session may hold (each costs an entry here and upstream).
pub const MAX_PER_SESSION: usize = 1024;

#[derive(Debug, Default)]
pub struct Subscribed {
    /// Each URI as latchkey names it, and the URI the session subscribed with.
    held: Mutex<HashMap<String, String>>,
    watching: AtomicBool,
}

impl Subscribed {
    /// True the first time only: whoever gets it starts the session's watcher.
    pub fn start_watching(&self) -> bool {
        !self.watching.swap(true, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `uri`, subscribed as `told_as` (its updates are told under the URI it was first
    /// subscribed with): true when it is new, an error when the session holds the most
    /// already.
    pub fn add(&self, uri: &str, told_as: &str) -> Result<bool, McpError> {
        let mut held = self.lock();
        if held.contains_key(uri) {
            return Ok(false);
        }
        if held.len() >= MAX_PER_SESSION {
            return Err(McpError::invalid_request(
                format!("a session may hold {MAX_PER_SESSION} resource subscriptions at most"),
                None,
            ));
        }
        held.insert(uri.to_owned(), told_as.to_owned());
        Ok(true)
    }

    /// Removes `uri`: true when it was held.
    pub fn remove(&self, uri: &str) -> bool {
        self.lock().remove(uri).is_some()
    }

    /// The URI `uri`'s updates are told under, when it is held.
    pub fn told_as(&self, uri: &str) -> Option<String> {
        self.lock().get(uri).cloned()
    }

    /// The URI held that was subscribed as `told_as`.
    pub fn subscribed_as(&self, told_as: &str) -> Option<String> {
        let held = self.lock();
        held.iter()
            .find(|(_, told)| *told == told_as)
            .map(|(uri, _)| uri.clone())
    }

    /// Every URI held, letting go of them.
    pub fn take_all(&self) -> Vec<String> {
        self.lock().drain().map(|(uri, _)| uri).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_each_uri_once_and_a_bounded_number() {
        let held = Subscribed::default();
        assert!(held.add("a", "a").unwrap());
        assert!(!held.add("a", "a").unwrap());
        for i in 1..MAX_PER_SESSION {
            assert!(held.add(&i.to_string(), &i.to_string()).unwrap());
        }
        assert!(held.add("one too many", "").is_err());
        assert!(held.remove("a") && !held.remove("a"));
        assert_eq!(held.take_all().len(), MAX_PER_SESSION - 1);
        assert_eq!(held.told_as("1"), None);
    }

    #[test]
    fn updates_are_told_under_the_uri_subscribed_with() {
        let held = Subscribed::default();
        assert!(held.add("files:file:///a", "file:///a").unwrap());
        assert_eq!(
            held.told_as("files:file:///a").as_deref(),
            Some("file:///a")
        );
        assert_eq!(
            held.subscribed_as("file:///a").as_deref(),
            Some("files:file:///a")
        );
        assert_eq!(held.subscribed_as("files:file:///a"), None);
    }
}
