//! Console sign-ins: a random id in a cookie, kept here only as its SHA-256, with the id of
//! the secret it was opened with (so changing the key or passphrase ends it), a CSRF token
//! for the forms, and an expiry.
//!
//! Only someone who knows a key or the passphrase opens one, so the bound ([`MAX_SESSIONS`])
//! is for the owner's own browsers: the oldest makes room.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Browsers signed in at once.
pub const MAX_SESSIONS: usize = 32;

/// A signed-in browser, as the handlers see it.
#[derive(Clone)]
pub struct Session {
    /// The grant id of the key or passphrase it was opened with.
    pub secret_id: String,
    csrf: String,
    expires: Instant,
}

impl Session {
    /// The token the session's forms carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether a form's token is this session's (in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// A new session's cookie value: shown once, to the browser.
pub struct Opened {
    pub cookie: SecretString,
}

#[derive(Debug, thiserror::Error)]
#[error("no randomness: {0}")]
pub struct NoRandomness(String);

pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
    lifetime: Duration,
}

fn random() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What a session is kept by: its cookie's SHA-256 (the cookie itself is kept nowhere).
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn of(cookie: &str) -> Self {
        SessionKey(hash(cookie))
    }
}

fn hash(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Self {
        Sessions {
            by_hash: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A session for the secret `secret_id`.
    pub fn open(&self, secret_id: String) -> Result<Opened, NoRandomness> {
        let cookie = random()?;
        let session = Session {
            secret_id,
            csrf: random()?,
            expires: Instant::now() + self.lifetime,
        };
        let mut sessions = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(h, _)| *h)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(hash(&cookie), session);
        Ok(Opened {
            cookie: cookie.into(),
        })
    }

    /// The live session `cookie` names, if `live` says its secret is still configured;
    /// an expired or orphaned one is ended here.
    pub fn find(&self, cookie: &str, live: impl Fn(&str) -> bool) -> Option<Session> {
        self.find_by_key(&SessionKey::of(cookie), live)
    }

    /// [`Self::find`] by the cookie's key, which a page's feed keeps to look its session up
    /// before every send (hashing the cookie each time cost 3,500 instructions a send
    /// without SHA-NI).
    pub fn find_by_key(&self, key: &SessionKey, live: impl Fn(&str) -> bool) -> Option<Session> {
        let key = key.0;
        let mut sessions = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions.get(&key)?;
        if session.expires > Instant::now() && live(&session.secret_id) {
            return Some(session.clone());
        }
        sessions.remove(&key);
        None
    }

    pub fn close(&self, cookie: &SecretString) {
        let key = hash(cookie.expose_secret());
        self.by_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_its_secret_goes() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let opened = sessions.open("key-1".into()).unwrap();
        let cookie = opened.cookie.expose_secret();
        let found = sessions.find(cookie, |id| id == "key-1").unwrap();
        assert!(found.csrf_matches(found.csrf()));
        assert!(!found.csrf_matches("forged"));
        assert!(sessions.find("another", |_| true).is_none());
        // The key left the key set: the session ends, and stays ended.
        assert!(sessions.find(cookie, |_| false).is_none());
        assert!(sessions.find(cookie, |_| true).is_none());
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let expired = Sessions::new(Duration::ZERO);
        let opened = expired.open("k".into()).unwrap();
        assert!(
            expired
                .find(opened.cookie.expose_secret(), |_| true)
                .is_none()
        );

        let sessions = Sessions::new(Duration::from_secs(60));
        let first = sessions.open("k".into()).unwrap();
        for _ in 0..MAX_SESSIONS {
            sessions.open("k".into()).unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(
            sessions
                .find(first.cookie.expose_secret(), |_| true)
                .is_none(),
            "the oldest made room"
        );
    }
}
