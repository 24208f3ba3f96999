//! What lies between the consent page and the token endpoint: authorization requests the
//! person is looking at (by CSRF token), codes handed out, and codes already spent.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::secret::Hash;
use crate::clients::ClientAddr;

/// What a presented code is.
pub enum CodeLookup {
    /// Issued, not yet exchanged, not expired: taken out now.
    Fresh(Code),
    /// Exchanged before, into `grant`: presented again, its tokens are revoked.
    Replayed { grant: String },
    /// Never issued, or expired.
    Unknown,
}
/// How long a consent page may stay open.
pub const PENDING_FOR: Duration = Duration::from_secs(600);
pub const MAX_PENDING: usize = 100;
/// Consent pages open at once from one address: beyond, its own oldest goes. 100 opened by
/// one address used to evict the person's own page.
pub const PENDING_PER_CLIENT: usize = 10;
/// How long a code is good for.
pub const CODE_FOR: Duration = Duration::from_secs(60);
pub const MAX_CODES: usize = 100;

/// An authorization request the person is looking at.
#[derive(Clone)]
pub struct Pending {
    pub request: Checked,
    pub client_name: String,
    pub verified_by: Option<String>,
    pub since: Instant,
    /// Who opened it (an IPv6 client by its /64).
    pub opened_by: ClientAddr,
}

/// What a request asked for, once checked.
#[derive(Clone)]
pub struct Checked {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request named it (else the client's only one was taken): the token
    /// request must then name it too (RFC 6749 §4.1.3).
    pub redirect_named: bool,
    pub state: String,
    pub challenge: String,
    pub resource: String,
    pub scope: String,
}

/// A code handed out, by its hash.
#[derive(Clone)]
pub struct Code {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub redirect_named: bool,
    pub challenge: String,
    pub resource: String,
    pub scope: String,
    pub secret_id: String,
    pub since: Instant,
}

#[derive(Default)]
pub struct Authorizations {
    pending: Mutex<HashMap<String, Pending>>,
    codes: Mutex<HashMap<Hash, Code>>,
    /// Codes already exchanged, with the grant each made: one presented again revokes it
    /// (RFC 6749 §4.1.2).
    used: Mutex<HashMap<Hash, (String, Instant)>>,
}

/// As many codes waiting to be exchanged as [`MAX_CODES`] allows.
#[derive(Debug)]
pub struct TooManyCodes;

impl Authorizations {
    /// The request awaiting consent on the page of `csrf`, while the page is good.
    pub fn awaiting(&self, csrf: &str) -> Option<Pending> {
        self.pending
            .lock()
            .expect("not poisoned")
            .get(csrf)
            .filter(|p| p.since.elapsed() < PENDING_FOR)
            .cloned()
    }

    /// Takes the request of `csrf` out: whichever answer does so first is the one answer it
    /// gets (`false` for the others).
    pub fn answer(&self, csrf: &str) -> bool {
        self.pending
            .lock()
            .expect("not poisoned")
            .remove(csrf)
            .is_some()
    }

    /// Keeps `code` under its hash until it is exchanged, within [`MAX_CODES`] (expired
    /// codes go first).
    pub fn issue_code(&self, hash: Hash, code: Code) -> Result<(), TooManyCodes> {
        let mut codes = self.codes.lock().expect("not poisoned");
        codes.retain(|_, c| c.since.elapsed() < CODE_FOR);
        if codes.len() >= MAX_CODES {
            return Err(TooManyCodes);
        }
        codes.insert(hash, code);
        Ok(())
    }

    /// Keeps `pending` under `csrf` until it is answered, within the bounds: expired pages
    /// go, then the opener's oldest beyond [`PENDING_PER_CLIENT`], then — when
    /// [`MAX_PENDING`] are open — the oldest of whoever holds the most.
    pub fn await_consent(&self, csrf: String, pending: Pending) {
        let mut all = self.pending.lock().expect("not poisoned");
        all.retain(|_, p| p.since.elapsed() < PENDING_FOR);
        let mut counts: HashMap<ClientAddr, usize> = HashMap::new();
        for p in all.values() {
            *counts.entry(p.opened_by).or_default() += 1;
        }
        let own = counts.get(&pending.opened_by).copied().unwrap_or(0);
        let evict_from = if own >= PENDING_PER_CLIENT {
            Some(pending.opened_by)
        } else if all.len() >= MAX_PENDING {
            counts.iter().max_by_key(|(_, n)| **n).map(|(c, _)| *c)
        } else {
            None
        };
        if let Some(holder) = evict_from
            && let Some(oldest) = all
                .iter()
                .filter(|(_, p)| p.opened_by == holder)
                .min_by_key(|(_, p)| p.since)
                .map(|(k, _)| k.clone())
        {
            all.remove(&oldest);
        }
        all.insert(csrf, pending);
    }

    /// The clients with a consent page open or a code not yet exchanged.
    pub fn clients_signing_in(&self) -> HashSet<String> {
        let mut ids: HashSet<String> = self
            .pending
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|p| p.since.elapsed() < PENDING_FOR)
            .map(|p| p.request.client_id.clone())
            .collect();
        let codes = self.codes.lock().expect("not poisoned");
        ids.extend(
            codes
                .values()
                .filter(|c| c.since.elapsed() < CODE_FOR)
                .map(|c| c.client_id.clone()),
        );
        ids
    }

    /// Takes a code out: it is good once, within [`CODE_FOR`].
    pub fn take_code(&self, hash: &Hash) -> CodeLookup {
        if let Some(code) = self.codes.lock().expect("not poisoned").remove(hash) {
            return if code.since.elapsed() < CODE_FOR {
                CodeLookup::Fresh(code)
            } else {
                CodeLookup::Unknown
            };
        }
        match self.used.lock().expect("not poisoned").get(hash) {
            Some((grant, _)) => CodeLookup::Replayed {
                grant: grant.clone(),
            },
            None => CodeLookup::Unknown,
        }
    }

    pub fn code_used(&self, hash: Hash, grant_id: String) {
        let mut used = self.used.lock().expect("not poisoned");
        used.retain(|_, (_, at)| at.elapsed() < PENDING_FOR);
        if used.len() < MAX_CODES * 10 {
            used.insert(hash, (grant_id, Instant::now()));
        }
    }
}
