//! How many client sessions hold a subscription to each of an upstream's resources: the
//! upstream has one connection for all of them, so it is subscribed when the first session
//! subscribes and unsubscribed when the last one lets go. Counting and telling the
//! upstream take turns, so what the upstream hears is in the order counted.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(super) struct Holders {
    counts: Mutex<HashMap<String, usize>>,
    turn: tokio::sync::Mutex<()>,
}

impl Holders {
    /// Waits for the turn to count and tell the upstream.
    pub(super) async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Every URI held (to subscribe a new connection to).
    pub(super) fn held(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more session holds `uri`; true when it is the first (subscribe upstream).
    pub(super) fn hold(&self, uri: &str) -> bool {
        let mut holders = self.lock();
        let count = holders.entry(uri.to_owned()).or_default();
        *count += 1;
        *count == 1
    }

    /// One session fewer holds `uri`; true when it was the last (unsubscribe upstream).
    pub(super) fn release(&self, uri: &str) -> bool {
        let mut holders = self.lock();
        match holders.get_mut(uri) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                holders.remove(uri);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_hold_and_the_last_release_are_told() {
        let holders = Holders::default();
        assert!(holders.hold("a"));
        assert!(!holders.hold("a"));
        assert!(!holders.release("a"));
        assert!(holders.release("a"));
        assert!(!holders.release("a"), "nothing held");
        assert!(holders.hold("a"), "first again");
    }
}
