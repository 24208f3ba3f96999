//! What the console's handlers share: the activity, the key set and OAuth (to check a
//! sign-in), the lockout, the sessions, and where the pages are.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, HeaderValue, header};
use secrecy::{ExposeSecret as _, SecretString};
use tokio_util::sync::CancellationToken;

use super::paths::CONSOLE;
use super::sessions::{Session, Sessions};
use crate::activity::Activity;
use crate::intake::Intake;
use crate::keys::{KeyDigest, KeySet};
use crate::lockout::Lockout;
use crate::oauth::{OAuth, Typed};

/// The cookie naming a session, scoped to `{base}/console`.
const COOKIE: &str = "latchkey_console";

/// What the console needs from the rest of the server.
pub struct ConsoleParts {
    pub activity: Arc<Activity>,
    pub keys: Arc<ArcSwap<KeySet>>,
    pub lockout: Arc<Lockout>,
    pub oauth: Option<Arc<OAuth>>,
    pub intake: Arc<Intake>,
    /// The base path, without a trailing `/`.
    pub base: String,
    /// Whether browsers reach it over https (the cookie is `Secure` then).
    pub secure: bool,
    pub session_lifetime: Duration,
    pub shutdown: CancellationToken,
}

pub struct Console {
    activity: Arc<Activity>,
    keys: Arc<ArcSwap<KeySet>>,
    lockout: Arc<Lockout>,
    oauth: Option<Arc<OAuth>>,
    sessions: Sessions,
    base: String,
    secure: bool,
    shutdown: CancellationToken,
}

impl Console {
    pub(super) fn new(parts: ConsoleParts) -> Self {
        Console {
            activity: parts.activity,
            keys: parts.keys,
            lockout: parts.lockout,
            oauth: parts.oauth,
            sessions: Sessions::new(parts.session_lifetime),
            base: parts.base,
            secure: parts.secure,
            shutdown: parts.shutdown,
        }
    }

    pub(super) fn activity(&self) -> &Activity {
        &self.activity
    }

    pub(super) fn lockout(&self) -> &Lockout {
        &self.lockout
    }

    pub(super) fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Cancelled at shutdown: every feed ends then.
    pub(super) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Whether a passphrase is accepted besides the keys.
    pub(super) fn takes_passphrase(&self) -> bool {
        self.oauth.is_some()
    }

    /// Whether the secret a session was opened with is still configured.
    pub(super) fn is_live(&self, secret_id: &str) -> bool {
        match &self.oauth {
            Some(oauth) => oauth.secret_is_live(secret_id),
            None => self.keys.load().has_grant_id(secret_id),
        }
    }

    /// The session the request's cookie names, if it is live.
    pub(super) fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let cookie = cookie_of(headers)?;
        self.sessions
            .find(cookie.expose_secret(), |id| self.is_live(id))
    }

    /// The grant id of a typed key (or, with `--oauth`, the passphrase).
    pub(super) async fn secret_id(&self, typed: &str) -> Typed {
        if let Some(oauth) = &self.oauth {
            return oauth.secret_id(typed).await;
        }
        let digest = KeyDigest::of(typed.trim().as_bytes());
        if !typed.trim().is_empty() && self.keys.load().verify(&digest) {
            Typed::Secret(digest.grant_id())
        } else {
            Typed::Wrong
        }
    }

    pub(super) fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `Set-Cookie` of a session (`max_age` 0 clears it).
    pub(super) fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            self.path(CONSOLE)
        );
        HeaderValue::try_from(cookie).expect("base64url and a configured path")
    }
}

/// The session cookie's value, when the request has one.
pub(super) fn cookie_of(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| SecretString::from(value.to_owned()))
}
