//! The authorization server's state: its URLs, the keys and passphrase a consent may be
//! given with, the store, and what the gate asks of it ([`OAuth::check`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::HeaderValue;
use tokio::sync::broadcast;

use super::args::OAuthArgs;
use super::cimd::Cimd;
use super::consents::Authorizations;
use super::passphrase::{Passphrase, Verdict};
use super::redirect_uris::RedirectUris;
use super::secret;
use super::store::{self, Found, Store};
use crate::auth::Credentials;
use crate::clients::ClientAddr;
use crate::configuration::PublicUrl;
use crate::intake::Intake;
use crate::keys::{KeyDigest, KeySet};
use crate::lockout::Lockout;

/// The OAuth endpoints, under the base path.
pub const AUTHORIZE: &str = "/oauth/authorize";
pub const TOKEN: &str = "/oauth/token";
pub const REGISTER: &str = "/oauth/register";
pub const REVOKE: &str = "/oauth/revoke";
pub const ENDPOINTS: [&str; 4] = [AUTHORIZE, TOKEN, REGISTER, REVOKE];

/// The one scope: the MCP endpoint. `offline_access` is accepted (ChatGPT asks for it) and
/// changes nothing: a refresh token is always issued.
pub const SCOPE: &str = "mcp";

/// Registrations one address may make per [`REGISTRATION_WINDOW`]: a person re-adding a
/// connector a few times stays well under it.
pub const REGISTRATIONS_PER_CLIENT: u32 = 10;
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(600);

/// What the gate makes of a request's bearer tokens.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    /// One of ours, expired or revoked with its key: no guess, so not a lockout failure.
    Stale,
    Unknown,
}

/// What the secret typed on the consent page is.
pub enum Typed {
    /// An API key or the passphrase: the id its grants record.
    Secret(String),
    Wrong,
    /// Not checked: every passphrase check was taken (`passphrase::CHECKS_AT_ONCE`).
    Busy,
}

pub struct OAuth {
    issuer: String,
    resource: String,
    /// `WWW-Authenticate` of a 401: where the resource metadata is.
    challenge: HeaderValue,
    challenge_invalid: HeaderValue,
    access_lifetime: Duration,
    refresh_lifetime: Duration,
    keys: Arc<ArcSwap<KeySet>>,
    passphrase_file: Option<PathBuf>,
    passphrase: ArcSwap<Option<Passphrase>>,
    lockout: Arc<Lockout>,
    redirect_uris: RedirectUris,
    cimd: Cimd,
    store: Mutex<Store>,
    authorizations: Authorizations,
    intake: Arc<Intake>,
    /// Registrations per address (`register::REGISTRATIONS_PER_CLIENT`).
    registrations: super::allowance::Allowance,
    /// Turns for argon2, bounded in number.
    passphrase_checks: super::passphrase::Checks,
}

impl OAuth {
    /// Opens the store in `state_dir` and reads the passphrase: a bad file stops the start.
    pub fn new(
        args: &OAuthArgs,
        public_url: &PublicUrl,
        state_dir: &std::path::Path,
        keys: Arc<ArcSwap<KeySet>>,
        lockout: Arc<Lockout>,
        intake: Arc<Intake>,
    ) -> anyhow::Result<Self> {
        let issuer = public_url.as_str().to_owned();
        let resource = format!("{issuer}{}", crate::configuration::MCP_PATH);
        let metadata_url = format!(
            "{issuer}/.well-known/oauth-protected-resource{}",
            crate::configuration::MCP_PATH
        );
        let challenge =
            HeaderValue::try_from(format!("Bearer resource_metadata=\"{metadata_url}\""))
                .expect("a parsed URL is a header value");
        let challenge_invalid = HeaderValue::try_from(format!(
            "Bearer error=\"invalid_token\", error_description=\"The access token is expired, \
             revoked or not one of this server's\", resource_metadata=\"{metadata_url}\""
        ))
        .expect("a parsed URL is a header value");
        let passphrase = match &args.oauth_passphrase_file {
            Some(path) => Some(Passphrase::read(path)?),
            None => None,
        };
        Ok(Self {
            issuer,
            resource,
            challenge,
            challenge_invalid,
            access_lifetime: args.oauth_token_lifetime,
            refresh_lifetime: args.oauth_refresh_lifetime,
            keys,
            passphrase_file: args.oauth_passphrase_file.clone(),
            passphrase: ArcSwap::from_pointee(passphrase),
            lockout,
            redirect_uris: RedirectUris::new(&args.oauth_redirect_uris),
            cimd: Cimd::new(&args.oauth_cimd_allow),
            store: Mutex::new(Store::open(state_dir)?),
            authorizations: Authorizations::default(),
            intake,
            passphrase_checks: Default::default(),
            registrations: super::allowance::Allowance::new(
                REGISTRATIONS_PER_CLIENT,
                REGISTRATION_WINDOW,
            ),
        })
    }

    /// The bounds on what the endpoints read before a key is known.
    pub(super) fn intake(&self) -> Arc<Intake> {
        self.intake.clone()
    }

    /// The issuer: the public URL, with no trailing slash.
    pub(super) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The resource every grant is for: the MCP endpoint's URL.
    pub(super) fn resource(&self) -> &str {
        &self.resource
    }

    /// How long an access token, then a refresh token, lives.
    pub(super) fn lifetimes(&self) -> (Duration, Duration) {
        (self.access_lifetime, self.refresh_lifetime)
    }

    /// The store, for one step: a `std` guard is not `Send`, so no handler can hold it
    /// across an `.await`.
    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("not poisoned")
    }

    /// Consent pages awaiting an answer and codes awaiting exchange, within their bounds.
    pub(super) fn authorizations(&self) -> &Authorizations {
        &self.authorizations
    }

    /// The failures of guessing addresses, shared with the gate.
    pub(super) fn lockout(&self) -> &Lockout {
        &self.lockout
    }

    /// Metadata documents of clients that name themselves by URL.
    pub(super) fn cimd(&self) -> &Cimd {
        &self.cimd
    }

    /// Whether `--oauth-redirect-uri` allows `uri`.
    pub(super) fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.allows(uri)
    }

    /// Takes one of `client`'s registrations for this window; false when it has none left.
    pub(super) fn may_register(&self, client: ClientAddr) -> bool {
        self.registrations.take(client)
    }

    /// Re-reads the passphrase file on every SIGHUP (a broken file keeps the old hash).
    pub fn spawn_reloader(self: &Arc<Self>, mut hangups: broadcast::Receiver<()>) {
        let Some(path) = self.passphrase_file.clone() else {
            return;
        };
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            while hangups.recv().await.is_ok() {
                let Some(this) = this.upgrade() else { return };
                match Passphrase::read(&path) {
                    Ok(p) => {
                        this.passphrase.store(Arc::new(Some(p)));
                        tracing::info!("passphrase reloaded from {}", path.display());
                    }
                    Err(e) => tracing::warn!("kept the passphrase in use: {e:#}"),
                }
            }
        });
    }

    /// The `WWW-Authenticate` value of a 401: with the error fields when a token was sent.
    pub fn challenge(&self, token_sent: bool) -> HeaderValue {
        if token_sent {
            self.challenge_invalid.clone()
        } else {
            self.challenge.clone()
        }
    }

    /// Admits a request whose bearer token is a live access token of a grant whose secret
    /// is still configured.
    pub fn check(&self, credentials: &Credentials) -> TokenCheck {
        let now = store::now();
        let mut result = TokenCheck::Unknown;
        let mut void = None;
        {
            let mut store = self.store();
            store.recheck();
            for digest in credentials.bearer_digests() {
                match store.access(&secret::Hash(*digest.as_bytes()), now) {
                    Found::Live(grant) if self.secret_is_live(&grant.secret_id) => {
                        return TokenCheck::Valid;
                    }
                    Found::Live(grant) => {
                        void = Some(grant.id.clone());
                        result = TokenCheck::Stale;
                    }
                    Found::Expired => result = TokenCheck::Stale,
                    Found::Unknown => {}
                }
            }
        }
        if let Some(id) = void {
            self.revoke_void(&id);
        }
        result
    }

    /// The grants now, as the console lists them: whose, and when (no token or hash).
    pub fn grants_shown(&self) -> Vec<GrantShown> {
        let mut store = self.store();
        store
            .refresh()
            .grants()
            .iter()
            .map(|g| GrantShown {
                client_id: g.client_id.clone(),
                client_name: g.client_name.clone(),
                created_at: g.created_at,
                refreshed_at: g.refreshed_at,
            })
            .collect()
    }

    /// Revokes a client's grants and registration (as `latchkey oauth revoke --client`):
    /// the registrations and grants removed.
    pub fn revoke_client(&self, client_id: &str) -> anyhow::Result<(usize, usize)> {
        self.store().change(|c| c.remove_client(client_id))
    }

    /// Whether the secret a grant was made with is still configured.
    pub fn secret_is_live(&self, secret_id: &str) -> bool {
        self.keys.load().has_grant_id(secret_id)
            || self
                .passphrase
                .load()
                .as_ref()
                .as_ref()
                .is_some_and(|p| p.grant_id == secret_id)
    }

    /// Removes a grant whose secret is gone, for good (the key coming back does not revive it).
    pub(super) fn revoke_void(&self, grant_id: &str) {
        self.revoke_grant(
            grant_id,
            "the key or passphrase it was given with is no longer configured",
        );
    }

    /// Removes a grant for good, saying why in the log.
    pub(super) fn revoke_grant(&self, grant_id: &str, why: &str) {
        let removed = self
            .store()
            .change(|c| c.remove_grants(|g| g.id == grant_id));
        match removed {
            Ok(n) if n > 0 => tracing::warn!("revoked OAuth grant {grant_id}: {why}"),
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot revoke OAuth grant {grant_id}: {e:#}"),
        }
    }

    /// Whether `resource` names this server's MCP endpoint (or its base URL); a trailing
    /// slash is tolerated. Absent is fine: older clients do not send it.
    pub(super) fn is_our_resource(&self, resource: Option<&str>) -> bool {
        resource.is_none_or(|r| {
            let r = r.strip_suffix('/').unwrap_or(r);
            r == self.resource || r == self.issuer
        })
    }

    /// The grant id of the secret typed on the consent page, if it is a key or the passphrase.
    pub async fn secret_id(&self, typed: &str) -> Typed {
        let typed = typed.trim();
        if typed.is_empty() {
            return Typed::Wrong;
        }
        let digest = KeyDigest::of(typed.as_bytes());
        if self.keys.load().verify(&digest) {
            return Typed::Secret(digest.grant_id());
        }
        let Some(passphrase) = self.passphrase.load_full().as_ref().clone() else {
            return Typed::Wrong;
        };
        let grant_id = passphrase.grant_id.clone();
        let typed = secrecy::SecretString::from(typed.to_owned());
        match self.passphrase_checks.check(passphrase, typed).await {
            Verdict::Right => Typed::Secret(grant_id),
            Verdict::Wrong => Typed::Wrong,
            Verdict::Busy => Typed::Busy,
        }
    }
}

/// A grant as the console lists it.
#[derive(Clone, Debug)]
pub struct GrantShown {
    pub client_id: String,
    pub client_name: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    pub refreshed_at: u64,
}
