//! `/oauth/token` (authorization code with PKCE, refresh with rotation and reuse detection)
//! and `/oauth/revoke` (RFC 7009). Errors are JSON; `invalid_client` (401) where the client
//! must register again, which is what makes Claude do so.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

use super::cimd::is_document_url;
use super::consents::CodeLookup;
use super::error::OAuthError;
use super::secret::{ACCESS_PREFIX, Hash, Issued, REFRESH_PREFIX, pkce_matches, random_text};
use super::server::OAuth;
use super::store::{Grant, now};

/// Refresh tokens of a grant remembered after use, to catch a replay.
const RETIRED_KEPT: usize = 20;

#[derive(Default, Deserialize)]
struct Form {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    resource: Option<String>,
    token: Option<String>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Form(REDACTED)")
    }
}

/// The form, with `client_id`/`client_secret` from HTTP Basic when sent there.
fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Form, OAuthError> {
    let mut form: Form = serde_urlencoded::from_bytes(body).map_err(|_| {
        OAuthError::invalid_request("the body is not a form (application/x-www-form-urlencoded)")
    })?;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    if let Some(encoded) = basic {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| {
                OAuthError::invalid_client("the Basic credentials are not valid base64")
            })?;
        let (id, secret) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let unescape = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        form.client_id = Some(unescape(id));
        form.client_secret = Some(unescape(secret));
    }
    Ok(form)
}

impl OAuth {
    /// Authenticates the client of a code or grant: a registered client must still be
    /// registered, and present its secret if it has one; a metadata-document client is
    /// public (PKCE is its proof).
    fn authenticate(&self, form: &Form, expected: &str) -> Result<(), OAuthError> {
        let Some(client_id) = form.client_id.as_deref() else {
            return Err(OAuthError::invalid_client("client_id is required"));
        };
        if client_id != expected {
            return Err(OAuthError::invalid_grant(
                "the grant was issued to another client",
            ));
        }
        if is_document_url(client_id) {
            return Ok(());
        }
        let mut store = self.store();
        let Some(client) = store.refresh().client(client_id) else {
            return Err(OAuthError::invalid_client(
                "this client is not registered here (any more): register again",
            ));
        };
        if let Some(hash) = client.secret_hash.as_deref().and_then(Hash::from_hex) {
            let presented = form
                .client_secret
                .as_deref()
                .map(|s| Hash::of(s.as_bytes()));
            if !presented.is_some_and(|p| hash.matches(&p.0)) {
                return Err(OAuthError::invalid_client(
                    "the client secret is missing or wrong",
                ));
            }
        }
        Ok(())
    }
}

/// New access and refresh tokens, with their hashes and expiry times.
struct NewTokens {
    access: Issued,
    refresh: Issued,
    access_expires: u64,
    refresh_expires: u64,
}

impl NewTokens {
    fn make(oauth: &OAuth, now: u64) -> Result<Self, OAuthError> {
        match (Issued::new(ACCESS_PREFIX), Issued::new(REFRESH_PREFIX)) {
            (Ok(access), Ok(refresh)) => Ok(Self {
                access,
                refresh,
                access_expires: now + oauth.lifetimes().0.as_secs(),
                refresh_expires: now + oauth.lifetimes().1.as_secs(),
            }),
            _ => Err(OAuthError::server_error("no randomness")),
        }
    }

    fn response(&self, oauth: &OAuth, scope: &str) -> Response {
        let mut response = Json(serde_json::json!({
            "access_token": self.access.reveal(),
            "token_type": "Bearer",
            "expires_in": oauth.lifetimes().0.as_secs(),
            "refresh_token": self.refresh.reveal(),
            "scope": scope,
        }))
        .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

pub async fn token(
    State(oauth): State<Arc<OAuth>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form = parse(&headers, &body)?;
    match form.grant_type.as_deref() {
        Some("authorization_code") => exchange_code(&oauth, &form),
        Some("refresh_token") => refresh(&oauth, &form),
        Some(_) => Err(OAuthError::unsupported_grant_type()),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

fn exchange_code(oauth: &OAuth, form: &Form) -> Result<Response, OAuthError> {
    let Some(code) = form.code.as_deref() else {
        return Err(OAuthError::invalid_request("code is required"));
    };
    let hash = Hash::of(code.as_bytes());
    let code = match oauth.authorizations().take_code(&hash) {
        CodeLookup::Fresh(code) => code,
        CodeLookup::Replayed { grant } => {
            // A code used twice: whoever holds the tokens it gave may be the thief.
            oauth.revoke_grant(&grant, "its code was presented again");
            return Err(OAuthError::invalid_grant(
                "the code was already used; the tokens it gave are revoked",
            ));
        }
        CodeLookup::Unknown => {
            return Err(OAuthError::invalid_grant("the code is unknown or expired"));
        }
    };
    oauth.authenticate(form, &code.client_id)?;
    let redirect_ok = match form.redirect_uri.as_deref() {
        Some(uri) => uri == code.redirect_uri,
        None => !code.redirect_named,
    };
    if !redirect_ok {
        return Err(OAuthError::invalid_grant(
            "redirect_uri is not the one the code was issued for",
        ));
    }
    if !form
        .code_verifier
        .as_deref()
        .is_some_and(|v| pkce_matches(v, &code.challenge))
    {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    if !oauth.is_our_resource(form.resource.as_deref()) {
        return Err(OAuthError::invalid_target());
    }
    let now = now();
    let tokens = NewTokens::make(oauth, now)?;
    let grant_id = match random_text(12) {
        Ok(id) => format!("g_{id}"),
        Err(_) => {
            return Err(OAuthError::server_error("no randomness"));
        }
    };
    let grant = Grant {
        id: grant_id.clone(),
        client_id: code.client_id.clone(),
        client_name: Some(code.client_name.clone()),
        secret_id: code.secret_id.clone(),
        scope: code.scope.clone(),
        resource: code.resource.clone(),
        created_at: now,
        refreshed_at: now,
        access_hash: tokens.access.hash().to_hex(),
        access_expires: tokens.access_expires,
        refresh_hash: tokens.refresh.hash().to_hex(),
        refresh_expires: tokens.refresh_expires,
        retired_refresh: Vec::new(),
    };
    if let Err(e) = oauth.store().change(|c| c.add_grant(grant)) {
        tracing::warn!("cannot save an OAuth grant: {e:#}");
        return Err(OAuthError::server_error("cannot save the grant"));
    }
    oauth.authorizations().code_used(hash, grant_id.clone());
    tracing::info!("OAuth grant {grant_id} made for {}", code.client_id);
    Ok(tokens.response(oauth, &code.scope))
}

fn refresh(oauth: &OAuth, form: &Form) -> Result<Response, OAuthError> {
    let Some(token) = form.refresh_token.as_deref() else {
        return Err(OAuthError::invalid_request("refresh_token is required"));
    };
    let hash = Hash::of(token.as_bytes());
    let found = oauth
        .store()
        .refresh()
        .by_refresh(&hash)
        .map(|r| r.cloned());
    let grant = match found {
        Some(Ok(grant)) => grant,
        Some(Err(grant_id)) => {
            oauth.revoke_grant(&grant_id, "a used refresh token was presented again");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked",
            ));
        }
        None => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is unknown or revoked",
            ));
        }
    };
    oauth.authenticate(form, &grant.client_id)?;
    let now = now();
    if grant.refresh_expires <= now {
        return Err(OAuthError::invalid_grant("the refresh token has expired"));
    }
    if !oauth.secret_is_live(&grant.secret_id) {
        oauth.revoke_void(&grant.id);
        return Err(OAuthError::invalid_grant(
            "the key or passphrase this grant was given with is no longer configured",
        ));
    }
    if !oauth.is_our_resource(form.resource.as_deref()) {
        return Err(OAuthError::invalid_target());
    }
    let tokens = NewTokens::make(oauth, now)?;
    let rotated = oauth.store().change(|c| {
        let Some(g) = c.grant_mut(&grant.id) else {
            return false;
        };
        // Another refresh with the same token got here first: this one is the replay.
        if g.refresh_hash != hash.to_hex() {
            return false;
        }
        g.retired_refresh.push(std::mem::take(&mut g.refresh_hash));
        if g.retired_refresh.len() > RETIRED_KEPT {
            g.retired_refresh.remove(0);
        }
        g.refresh_hash = tokens.refresh.hash().to_hex();
        g.refresh_expires = tokens.refresh_expires;
        g.access_hash = tokens.access.hash().to_hex();
        g.access_expires = tokens.access_expires;
        g.refreshed_at = now;
        true
    });
    match rotated {
        Ok(true) => Ok(tokens.response(oauth, &grant.scope)),
        Ok(false) => Err(OAuthError::invalid_grant(
            "the refresh token was already used",
        )),
        Err(e) => {
            tracing::warn!("cannot save a refreshed OAuth grant: {e:#}");
            Err(OAuthError::server_error("cannot save the grant"))
        }
    }
}

/// RFC 7009: revoking a token revokes its grant; an unknown token is not an error.
pub async fn revoke(
    State(oauth): State<Arc<OAuth>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form = parse(&headers, &body)?;
    let Some(token) = form.token.as_deref() else {
        return Err(OAuthError::invalid_request("token is required"));
    };
    let hash = Hash::of(token.as_bytes()).to_hex();
    let result = oauth
        .store()
        .change(|c| c.remove_grants(|g| g.access_hash == hash || g.refresh_hash == hash));
    match result {
        Ok(n) => {
            if n > 0 {
                tracing::info!("OAuth grant revoked by its client");
            }
            Ok(StatusCode::OK.into_response())
        }
        Err(e) => {
            tracing::warn!("cannot save a revocation: {e:#}");
            Err(OAuthError::server_error("cannot save the revocation"))
        }
    }
}
