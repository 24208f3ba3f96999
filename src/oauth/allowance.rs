//! How much of something each client may do per window (registrations), in a bounded table.
//!
//! Without it one address registered 575 clients in about 2 s, each a rewrite of
//! `oauth.json`, and evicted the registration of a person halfway through signing in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clients::ClientAddr;

/// Most clients remembered at once. A full table (after its expired entries go) counts no
/// new client: the owner must not be refused because strangers filled it; what they can do
/// then is bounded elsewhere (the store's cap, which keeps clients being signed in).
const CAPACITY: usize = 1024;

pub struct Allowance {
    per_window: u32,
    window: Duration,
    table: Mutex<HashMap<ClientAddr, (u32, Instant)>>,
}

impl Allowance {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one from `client`'s allowance; `false` when it has none left this window.
    pub fn take(&self, client: ClientAddr) -> bool {
        let now = Instant::now();
        let client = client.network();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= CAPACITY && !table.contains_key(&client) {
            table.retain(|_, (_, since)| now < *since + self.window);
            if table.len() >= CAPACITY {
                return true;
            }
        }
        let (used, since) = table.entry(client).or_insert((0, now));
        if now >= *since + self.window {
            *used = 0;
            *since = now;
        }
        if *used >= self.per_window {
            return false;
        }
        *used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_allowance() {
        let allowance = Allowance::new(3, Duration::from_secs(60));
        let a = ClientAddr::Ip("192.0.2.1".parse().unwrap());
        let b = ClientAddr::Ip("192.0.2.2".parse().unwrap());
        assert_eq!((0..10).filter(|_| allowance.take(a)).count(), 3);
        assert!(allowance.take(b));
        // One IPv6 /64 is one client.
        let v6 = |s: &str| ClientAddr::Ip(s.parse().unwrap());
        assert_eq!(
            (0..10)
                .filter(|i| allowance.take(v6(&format!("2001:db8::{i}"))))
                .count(),
            3
        );
    }

    #[test]
    fn a_full_table_refuses_no_newcomer() {
        let allowance = Allowance::new(1, Duration::from_secs(60));
        for i in 0..CAPACITY as u32 {
            assert!(allowance.take(ClientAddr::Ip(std::net::IpAddr::V4(i.into()))));
        }
        let owner = ClientAddr::Ip("203.0.113.5".parse().unwrap());
        assert!(allowance.take(owner));
    }
}
