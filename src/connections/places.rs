//! The places of a listener's connections (`--max-connections`), and who gives one up when
//! they are all taken.
//!
//! A full listener used to answer every new connection 503: 515 HTTP/2 connections that
//! sent only the preface kept the owner out for as long as they stayed open. Now a new
//! connection at the cap takes the place of an idle one (no request in flight) of the
//! address that holds the most connections, one that never completed a request first: a
//! flood from a few addresses evicts itself, and the owner's connection, busy with a
//! request or one of few from its address, keeps its place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::clients::ClientAddr;
use crate::listen::Peer;

/// How a connection is doing, as its idle timer and eviction need to know.
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to the end of the last request; [`NEVER`] until one ends.
    last: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl Activity {
    pub fn new() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(NEVER),
        }
    }

    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.last.store(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Release);
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether a request has ever been completed on it.
    fn served(&self) -> bool {
        self.last.load(Ordering::Relaxed) != NEVER
    }

    /// Resolves once no request has been in flight for `idle` — or, before any request
    /// was completed, for `first` from the connection's start: a connection that never
    /// sends a request (or an HTTP/2 one that sends only its preface) is held no longer
    /// than a slow head would be.
    pub async fn idle_for(&self, first: Duration, idle: Duration) {
        // Nothing wakes this task when a request begins or ends (that would cost every
        // request): it never sleeps longer than the shorter timeout, so a deadline that a
        // finished request brought forward (idle shorter than first) is missed by at most that.
        let longest_sleep = idle.min(first);
        loop {
            let deadline = match self.last.load(Ordering::Relaxed) {
                NEVER => self.start + first,
                last => self.start + Duration::from_millis(last) + idle,
            };
            let now = Instant::now();
            let busy = self.busy();
            if !busy && now >= deadline {
                return;
            }
            let wait = if busy {
                longest_sleep
            } else {
                (deadline - now).min(longest_sleep)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Resolves once nothing is in flight, looking every `every`.
    pub async fn drained(&self, every: Duration) {
        while self.busy() {
            tokio::time::sleep(every).await;
        }
    }
}

/// Who a connection counts as: its address as every per-client bound counts it (an IPv6
/// one by its /64), or the local proxy on the Unix socket.
fn holder(peer: Peer) -> ClientAddr {
    match peer {
        Peer::Tcp(addr) => ClientAddr::Ip(addr.ip().to_canonical()).network(),
        Peer::Unix => ClientAddr::Local,
    }
}

struct Held {
    holder: ClientAddr,
    activity: Arc<Activity>,
    evict: CancellationToken,
    /// The place itself: handed from an evicted connection to the newcomer, so the two are
    /// never counted at once and nobody else can take it in between.
    permit: OwnedSemaphorePermit,
}

/// A listener's places.
pub struct Places {
    permits: Arc<Semaphore>,
    held: Mutex<HashMap<u64, Held>>,
    next_id: AtomicU64,
}

/// A connection's place: freed when dropped (unless it was handed on).
pub struct Place {
    places: Arc<Places>,
    id: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.places.lock().remove(&self.id);
    }
}

impl Places {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Places {
            permits: Arc::new(Semaphore::new(max)),
            held: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection from `peer`, whose `activity` and `evict` token it keeps:
    /// a free one, or an idle connection's, which is then closed. `None` when every
    /// connection has a request in flight.
    pub fn take(
        self: &Arc<Self>,
        peer: Peer,
        activity: &Arc<Activity>,
        evict: &CancellationToken,
    ) -> Option<Place> {
        let mut held = self.lock();
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let victim = Self::victim(&held)?;
                let victim = held.remove(&victim).expect("the victim was just found");
                victim.evict.cancel();
                victim.permit
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Held {
            holder: holder(peer),
            activity: activity.clone(),
            evict: evict.clone(),
            permit,
        };
        held.insert(id, entry);
        Some(Place {
            places: self.clone(),
            id,
        })
    }

    /// An idle connection of the holder with the most connections (the newcomer's own,
    /// when that is its address): one that never completed a request first. Walks every
    /// place, which happens only at the cap.
    fn victim(held: &HashMap<u64, Held>) -> Option<u64> {
        let mut counts: HashMap<ClientAddr, usize> = HashMap::new();
        for h in held.values() {
            *counts.entry(h.holder).or_default() += 1;
        }
        held.iter()
            .filter(|(_, h)| !h.activity.busy())
            .max_by_key(|(_, h)| (counts[&h.holder], !h.activity.served()))
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request that ends while the idle timer sleeps towards a later deadline (the
    /// first-request one) brings the close forward: the timer sleeps no longer than the
    /// shorter timeout. It slept to the far deadline, and under load a kept-alive connection
    /// outlived --idle-timeout by the whole --header-timeout.
    #[tokio::test(flavor = "current_thread")]
    async fn a_finished_request_brings_the_idle_close_forward() {
        let activity = Arc::new(Activity::new());
        let timer = tokio::spawn({
            let activity = activity.clone();
            async move {
                activity
                    .idle_for(Duration::from_secs(30), Duration::from_millis(50))
                    .await
            }
        });
        // On this one thread, the timer now runs until it sleeps.
        tokio::task::yield_now().await;
        activity.begin();
        activity.end();
        let closed = tokio::time::timeout(Duration::from_secs(10), timer).await;
        assert!(
            closed.is_ok(),
            "the idle timer kept sleeping to the first deadline"
        );
    }
}
