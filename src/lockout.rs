//! Brute-force lockout: a client that sends `max_failures` wrong keys within `period` is
//! refused (429) for `period`, without its keys being checked, while every other client —
//! the owner from another address among them — is served as before.
//!
//! The table is bounded: it holds at most [`CAPACITY`] clients (IPv6 clients by their /64,
//! which is what one host usually gets). When a flood of addresses fills it, new addresses
//! share one overflow entry, so the flood locks itself out as one client; addresses
//! already in the table keep their own entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::clients::ClientAddr;

/// Most clients with failures remembered at once (about 100 bytes each).
pub const CAPACITY: usize = 10_000;

/// How often a full table is swept for expired entries, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Lockout {
    max_failures: u32,
    period: Duration,
    /// Entries in the table (and the overflow's failures): zero lets the common case, no
    /// failure anywhere, skip the lock.
    live: AtomicUsize,
    table: Mutex<Table>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    /// The /64 prefix.
    V6(u64),
    Local,
}

impl Key {
    fn of(client: ClientAddr) -> Self {
        match client {
            ClientAddr::Ip(IpAddr::V4(ip)) => Key::V4(ip.to_bits()),
            ClientAddr::Ip(IpAddr::V6(ip)) => Key::V6((ip.to_bits() >> 64) as u64),
            ClientAddr::Local => Key::Local,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    failures: u32,
    /// When the first counted failure happened.
    since: Option<Instant>,
    locked_until: Option<Instant>,
}

impl Entry {
    fn expired(&self, now: Instant, period: Duration) -> bool {
        let counting = self.since.is_some_and(|since| now < since + period);
        let locked = self.locked_until.is_some_and(|until| now < until);
        !counting && !locked
    }

    fn retry_after(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| now < *until)
            .map(|until| until - now)
    }
}

struct Table {
    entries: HashMap<Key, Entry>,
    overflow: Entry,
    next_sweep: Instant,
}

impl Lockout {
    /// `max_failures` 0 turns the lockout off.
    pub fn new(max_failures: u32, period: Duration) -> Self {
        Lockout {
            max_failures,
            period,
            live: AtomicUsize::new(0),
            table: Mutex::new(Table {
                entries: HashMap::new(),
                overflow: Entry::default(),
                next_sweep: Instant::now(),
            }),
        }
    }

    /// `Err(retry after)` while `client` is locked out.
    pub fn check(&self, client: ClientAddr) -> Result<(), Duration> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match table.entries.get(&Key::of(client)) {
            Some(entry) => entry,
            // Not in a full table: it is judged with the overflow.
            None if table.entries.len() >= CAPACITY => &table.overflow,
            None => return Ok(()),
        };
        entry.retry_after(now).map_or(Ok(()), Err)
    }

    /// Counts a wrong key from `client`; logs once when that locks it out.
    pub fn failed(&self, client: ClientAddr) {
        if self.max_failures == 0 {
            return;
        }
        let now = Instant::now();
        let mut guard = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let table = &mut *guard;
        let key = Key::of(client);
        if table.entries.len() >= CAPACITY
            && !table.entries.contains_key(&key)
            && now >= table.next_sweep
        {
            let period = self.period;
            table.entries.retain(|_, entry| !entry.expired(now, period));
            table.next_sweep = now + SWEEP_EVERY;
        }
        let overflow = table.entries.len() >= CAPACITY && !table.entries.contains_key(&key);
        let entry = if overflow {
            &mut table.overflow
        } else {
            table.entries.entry(key).or_default()
        };
        if entry.expired(now, self.period) {
            *entry = Entry::default();
        }
        let since = *entry.since.get_or_insert(now);
        entry.failures += 1;
        if entry.failures >= self.max_failures && entry.locked_until.is_none() {
            entry.locked_until = Some(now + self.period);
            let who = if overflow {
                "new addresses (the lockout table is full)".to_owned()
            } else {
                format!("client {client}")
            };
            tracing::warn!(
                failures = entry.failures,
                "locked out {who} for {}: {} wrong keys in {}",
                humantime::format_duration(self.period),
                entry.failures,
                humantime::format_duration(Duration::from_secs((now - since).as_secs())),
            );
        }
        let live = table.entries.len() + usize::from(table.overflow.since.is_some());
        self.live.store(live, Ordering::Relaxed);
    }

    /// A right key: `client`'s earlier failures are forgiven (unless it is locked out, in
    /// which case its key was never checked).
    pub fn succeeded(&self, client: ClientAddr) {
        if self.live.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.entries.remove(&Key::of(client)).is_some() {
            let live = table.entries.len() + usize::from(table.overflow.since.is_some());
            self.live.store(live, Ordering::Relaxed);
        }
    }

    /// Clients remembered now (for tests and the soak's memory bound).
    pub fn clients(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> ClientAddr {
        ClientAddr::Ip(s.parse().unwrap())
    }

    #[test]
    fn a_client_is_locked_after_its_failures_and_others_are_not() {
        let lockout = Lockout::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            lockout.failed(ip("192.0.2.1"));
            assert!(lockout.check(ip("192.0.2.1")).is_ok());
        }
        lockout.failed(ip("192.0.2.1"));
        let retry = lockout.check(ip("192.0.2.1")).unwrap_err();
        assert!(retry > Duration::from_secs(55) && retry <= Duration::from_secs(60));
        assert!(lockout.check(ip("192.0.2.2")).is_ok());
        assert!(lockout.check(ClientAddr::Local).is_ok());
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let lockout = Lockout::new(2, Duration::from_secs(60));
        lockout.failed(ip("2001:db8:1:2::1"));
        lockout.failed(ip("2001:db8:1:2::ffff"));
        assert!(lockout.check(ip("2001:db8:1:2:aaaa::")).is_err());
        assert!(lockout.check(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn a_right_key_forgives_earlier_failures() {
        let lockout = Lockout::new(2, Duration::from_secs(60));
        lockout.failed(ip("192.0.2.1"));
        lockout.succeeded(ip("192.0.2.1"));
        lockout.failed(ip("192.0.2.1"));
        assert!(lockout.check(ip("192.0.2.1")).is_ok());
        assert_eq!(lockout.clients(), 1);
    }

    #[test]
    fn failures_expire_with_the_period() {
        let lockout = Lockout::new(2, Duration::from_millis(1));
        lockout.failed(ip("192.0.2.1"));
        std::thread::sleep(Duration::from_millis(5));
        lockout.failed(ip("192.0.2.1"));
        assert!(lockout.check(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn a_flood_of_addresses_fills_the_table_and_then_shares_one_entry() {
        let lockout = Lockout::new(3, Duration::from_secs(60));
        let known = ip("198.51.100.1");
        lockout.failed(known);
        for i in 0..(CAPACITY as u32 + 50) {
            lockout.failed(ClientAddr::Ip(IpAddr::V4((0x0a00_0000 + i).into())));
        }
        assert_eq!(lockout.clients(), CAPACITY);
        // The overflow is locked: new addresses are refused, known ones judged on their own.
        assert!(lockout.check(ip("203.0.113.77")).is_err());
        assert!(lockout.check(known).is_ok());
    }

    #[test]
    fn off_counts_nothing() {
        let lockout = Lockout::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            lockout.failed(ip("192.0.2.1"));
        }
        assert!(lockout.check(ip("192.0.2.1")).is_ok());
        assert_eq!(lockout.clients(), 0);
    }
}
