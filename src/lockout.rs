//! Brute-force lockout: a client that sends `max_failures` wrong keys within `period` is
//! refused (429) for `period`, without its keys being checked, while every other client —
//! the owner from another address among them — is served as before.
//!
//! The table is bounded: it holds at most [`CAPACITY`] clients (IPv6 clients by their /64,
//! which is what one host usually gets). When a flood of addresses fills it, the addresses
//! already in it stay locked until their period ends, and a new address's failures go
//! uncounted until expired entries make room: a shared overflow entry would lock out
//! everyone not yet in the table — the owner, whose success deletes its entry, always
//! arrives as such an address. A guess from an uncounted address is still one guess at a
//! 256-bit key, and passphrase checks are bounded overall (`oauth::passphrase`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::clients::ClientAddr;

/// Most clients with failures remembered at once (about 100 bytes each: 1 MB in all).
pub const CAPACITY: usize = 10_000;

/// How often a full table is swept for expired entries, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Lockout {
    max_failures: u32,
    period: Duration,
    /// Entries in the table: zero lets the common case, no failure anywhere, skip the lock.
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

impl std::fmt::Display for Key {
    /// As the console shows it, and as its unlock button names it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::V4(bits) => write!(f, "{}", std::net::Ipv4Addr::from_bits(*bits)),
            Key::V6(prefix) => write!(
                f,
                "{}/64",
                std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64)
            ),
            Key::Local => f.write_str("local"),
        }
    }
}

/// A client locked out now, as the console lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// Its address (an IPv6 /64, or `local` for the Unix socket's own clients).
    pub who: String,
    pub failures: u32,
    pub retry_after: Duration,
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
    next_sweep: Instant,
    /// Set while the table is full and failures go uncounted, so that is logged once.
    full: bool,
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
                next_sweep: Instant::now(),
                full: false,
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
        match table.entries.get(&Key::of(client)) {
            Some(entry) => entry.retry_after(now).map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    /// Counts a wrong key from `client`; logs once when that locks it out.
    pub fn failed(&self, client: ClientAddr) {
        if self.max_failures > 0 {
            let _ = self.count(client, false);
        }
    }

    /// Counts an attempt before it is checked, for checks too costly to run first and count
    /// after (argon2: concurrent attempts would all pass [`Lockout::check`] and then all be
    /// checked). `Err(retry after)` when `client` is locked out already: the attempt must
    /// not be checked. A right answer is then [`Lockout::succeeded`], which forgives it.
    pub fn attempt(&self, client: ClientAddr) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        self.count(client, true)
    }

    fn count(&self, client: ClientAddr, refuse_locked: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let mut guard = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let table = &mut *guard;
        let key = Key::of(client);
        if !table.entries.contains_key(&key) && !table.make_room(now, self.period) {
            return Ok(());
        }
        let entry = table.entries.entry(key).or_default();
        if let Some(retry_after) = entry.retry_after(now).filter(|_| refuse_locked) {
            return Err(retry_after);
        }
        if entry.expired(now, self.period) {
            *entry = Entry::default();
        }
        let since = *entry.since.get_or_insert(now);
        entry.failures += 1;
        if entry.failures >= self.max_failures && entry.locked_until.is_none() {
            entry.locked_until = Some(now + self.period);
            tracing::warn!(
                failures = entry.failures,
                "locked out client {client} for {}: {} wrong keys in {}",
                humantime::format_duration(self.period),
                entry.failures,
                humantime::format_duration(Duration::from_secs((now - since).as_secs())),
            );
        }
        self.live.store(table.entries.len(), Ordering::Relaxed);
        Ok(())
    }

    /// A right key: `client`'s earlier failures are forgiven (unless it is locked out, in
    /// which case its key was never checked).
    pub fn succeeded(&self, client: ClientAddr) {
        if self.live.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.entries.remove(&Key::of(client)).is_some() {
            self.live.store(table.entries.len(), Ordering::Relaxed);
        }
    }

    /// At most `limit` of the clients locked out now, the longest locked first.
    pub fn locked(&self, limit: usize) -> Vec<Locked> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let now = Instant::now();
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut locked: Vec<Locked> = table
            .entries
            .iter()
            .filter_map(|(key, entry)| Some((key, entry, entry.retry_after(now)?)))
            .map(|(key, entry, retry_after)| Locked {
                who: key.to_string(),
                failures: entry.failures,
                retry_after,
            })
            .collect();
        locked.sort_by_key(|l| std::cmp::Reverse(l.retry_after));
        locked.truncate(limit);
        locked
    }

    /// Forgets the client that [`Locked::who`] names: it may try again at once. Whether
    /// one was there.
    pub fn unlock(&self, who: &str) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let found = table.entries.keys().find(|k| k.to_string() == who).copied();
        if let Some(key) = found {
            table.entries.remove(&key);
            self.live.store(table.entries.len(), Ordering::Relaxed);
        }
        found.is_some()
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

impl Table {
    /// Whether a new entry fits: a full table is swept of expired entries (at most once a
    /// second, so a flood does not make every failure walk the table).
    fn make_room(&mut self, now: Instant, period: Duration) -> bool {
        if self.entries.len() < CAPACITY {
            return true;
        }
        if now >= self.next_sweep {
            self.entries.retain(|_, entry| !entry.expired(now, period));
            self.next_sweep = now + SWEEP_EVERY;
        }
        let room = self.entries.len() < CAPACITY;
        if !room && !self.full {
            tracing::warn!(
                "the lockout table is full ({CAPACITY} addresses): wrong keys from new addresses \
                 go uncounted until entries expire; addresses in it stay locked"
            );
        }
        self.full = !room;
        room
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
    fn the_locked_are_listed_and_an_unlocked_one_may_try_again() {
        let lockout = Lockout::new(1, Duration::from_secs(60));
        lockout.failed(ip("192.0.2.1"));
        lockout.failed(ip("2001:db8:1:2::1"));
        lockout.failed(ClientAddr::Local);
        let mut who: Vec<_> = lockout.locked(10).into_iter().map(|l| l.who).collect();
        who.sort();
        assert_eq!(who, ["192.0.2.1", "2001:db8:1:2::/64", "local"]);
        assert_eq!(lockout.locked(1).len(), 1, "bounded");
        assert!(lockout.unlock("2001:db8:1:2::/64"));
        assert!(!lockout.unlock("2001:db8:1:2::/64"), "once");
        assert!(lockout.check(ip("2001:db8:1:2::ffff")).is_ok());
        assert!(
            lockout.check(ip("192.0.2.1")).is_err(),
            "the others stay locked"
        );
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
    fn a_flood_that_fills_the_table_locks_out_only_itself() {
        let lockout = Lockout::new(3, Duration::from_secs(60));
        let known = ip("198.51.100.1");
        lockout.failed(known);
        let flood = |i: u32| ClientAddr::Ip(IpAddr::V4((0x0a00_0000 + i).into()));
        for _ in 0..3 {
            for i in 0..(CAPACITY as u32 + 50) {
                lockout.failed(flood(i));
            }
        }
        assert_eq!(lockout.clients(), CAPACITY);
        // The flood's addresses in the table are locked; a new address (the owner's) is not,
        // nor is one that failed once before the flood.
        assert!(lockout.check(flood(0)).is_err());
        assert!(lockout.check(flood(CAPACITY as u32 - 2)).is_err());
        assert!(lockout.check(ip("203.0.113.77")).is_ok());
        assert!(lockout.check(known).is_ok());
    }

    #[test]
    fn attempts_are_counted_before_they_are_checked() {
        let lockout = Lockout::new(3, Duration::from_secs(60));
        let client = ip("192.0.2.9");
        let admitted = (0..64).filter(|_| lockout.attempt(client).is_ok()).count();
        assert_eq!(admitted, 3);
        assert!(lockout.check(client).is_err());
        // A right answer after attempts forgives them.
        let other = ip("192.0.2.10");
        lockout.attempt(other).unwrap();
        lockout.succeeded(other);
        assert_eq!(lockout.clients(), 1);
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
