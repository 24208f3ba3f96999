//! What lies between the consent page and the token endpoint: authorization requests the
//! person is looking at (by CSRF token), codes handed out, and codes already spent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::secret::Hash;

/// How long a consent page may stay open.
pub const PENDING_FOR: Duration = Duration::from_secs(600);
pub const MAX_PENDING: usize = 100;
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
    pub pending: Mutex<HashMap<String, Pending>>,
    pub codes: Mutex<HashMap<Hash, Code>>,
    /// Codes already exchanged, with the grant each made: one presented again revokes it
    /// (RFC 6749 §4.1.2).
    used: Mutex<HashMap<Hash, (String, Instant)>>,
}

impl Authorizations {
    /// Takes a code out (it is good once); `Err(grant id)` when it was already used.
    pub fn take_code(&self, hash: &Hash) -> Option<Result<Code, String>> {
        if let Some(code) = self.codes.lock().expect("not poisoned").remove(hash) {
            return (code.since.elapsed() < CODE_FOR).then_some(Ok(code));
        }
        self.used
            .lock()
            .expect("not poisoned")
            .get(hash)
            .map(|(grant, _)| Err(grant.clone()))
    }

    pub fn code_used(&self, hash: Hash, grant_id: String) {
        let mut used = self.used.lock().expect("not poisoned");
        used.retain(|_, (_, at)| at.elapsed() < PENDING_FOR);
        if used.len() < MAX_CODES * 10 {
            used.insert(hash, (grant_id, Instant::now()));
        }
    }
}
