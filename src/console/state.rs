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
use crate::activity::{Activity, Clients, Refusals, Requests};
use crate::intake::Intake;
use crate::keys::{KeyDigest, KeySet};
use crate::lockout::Lockout;
use crate::oauth::{OAuth, Typed};
use crate::upstream::Upstreams;

/// The cookie naming a session, scoped to `{base}/console`.
const COOKIE: &str = "latchkey_console";

/// What the console needs from the rest of the server.
pub struct ConsoleParts {
    pub activity: Arc<Activity>,
    /// The requests refused lately and the clients seen (told by the gate).
    pub requests: Arc<Requests>,
    pub upstreams: Option<Upstreams>,
    pub keys: Arc<ArcSwap<KeySet>>,
    pub lockout: Arc<Lockout>,
    pub oauth: Option<Arc<OAuth>>,
    pub intake: Arc<Intake>,
    /// The base path, without a trailing `/`.
    pub base: String,
    /// Whether browsers reach it over https (the cookie is `Secure` then).
    pub secure: bool,
    /// The origin of `--public-url` (`https://example.com`), when set.
    pub public_origin: Option<String>,
    pub session_lifetime: Duration,
    pub shutdown: CancellationToken,
}

pub struct Console {
    activity: Arc<Activity>,
    requests: Arc<Requests>,
    upstreams: Option<Upstreams>,
    keys: Arc<ArcSwap<KeySet>>,
    lockout: Arc<Lockout>,
    oauth: Option<Arc<OAuth>>,
    sessions: Sessions,
    base: String,
    secure: bool,
    public_origin: Option<String>,
    shutdown: CancellationToken,
}

impl Console {
    pub(super) fn new(parts: ConsoleParts) -> Self {
        Console {
            activity: parts.activity,
            requests: parts.requests,
            upstreams: parts.upstreams,
            keys: parts.keys,
            lockout: parts.lockout,
            oauth: parts.oauth,
            sessions: Sessions::new(parts.session_lifetime),
            base: parts.base,
            secure: parts.secure,
            public_origin: parts.public_origin,
            shutdown: parts.shutdown,
        }
    }

    pub(super) fn activity(&self) -> &Activity {
        &self.activity
    }

    pub(super) fn refusals(&self) -> &Refusals {
        &self.requests.refusals
    }

    pub(super) fn clients(&self) -> &Clients {
        &self.requests.clients
    }

    pub(super) fn oauth(&self) -> Option<&Arc<OAuth>> {
        self.oauth.as_ref()
    }

    pub(super) fn upstreams(&self) -> Option<&Upstreams> {
        self.upstreams.as_ref()
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
        self.cookie_and_session(headers).map(|(_, session)| session)
    }

    /// The first of the request's session cookies that names a live session, with it.
    pub(super) fn cookie_and_session(
        &self,
        headers: &HeaderMap,
    ) -> Option<(SecretString, Session)> {
        cookies_of(headers).find_map(|cookie| {
            let session = self
                .sessions
                .find(cookie.expose_secret(), |id| self.is_live(id))?;
            Some((cookie, session))
        })
    }

    /// Whether a form was posted from this server's own pages: a browser's `Origin` must be
    /// the public URL's, or name the `Host` it was sent to. The Host/Origin guard lets the
    /// hosted clients' origins through (ChatGPT's, Claude's), which must not sign anyone
    /// in or out.
    pub(super) fn posted_here(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        if self.public_origin.as_deref() == Some(origin) {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        host.is_some() && authority == host
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

/// Every session cookie the request has (a sibling site may add one of the same name).
fn cookies_of(headers: &HeaderMap) -> impl Iterator<Item = SecretString> + '_ {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| SecretString::from(value.to_owned()))
}
