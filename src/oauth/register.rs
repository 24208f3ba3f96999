//! `/oauth/register`: Dynamic Client Registration (RFC 7591), deprecated by the MCP spec in
//! favour of metadata documents but what Claude still uses. Only redirect URIs of the
//! allowlist are accepted; the requested auth method is echoed (older ChatGPT demanded
//! `client_secret_post`); registrations are bounded and expire unused (`store`).
//!
//! A registration can be deleted by whoever made it (RFC 7592 §2.3, DELETE only): its answer
//! holds a registration access token and `registration_client_uri`, the registration
//! endpoint with the client's id in the query (so that it is one exact route like the
//! others). `latchkey doctor --register` removes its trial registration this way.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::OAuthError;
use super::secret::{CLIENT_SECRET_PREFIX, Hash, Issued, REGISTRATION_PREFIX, random_text};
use super::server::{OAuth, REGISTER, REGISTRATION_WINDOW, REGISTRATIONS_PER_CLIENT};
use super::store::{Client, now};
use crate::auth::Credentials;
use crate::clients::ClientAddr;

/// Largest registration: ChatGPT's and Claude's are under 1 KiB. Every byte of one may be
/// written to `oauth.json` (a name is cut to 100 characters, but the redirect URIs are not).
const MAX_BODY: usize = 4 * 1024;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
}

/// A registration that can be used: its metadata, checked.
struct Checked {
    request: Request,
    method: String,
    grant_types: Vec<String>,
    response_types: Vec<String>,
}

pub async fn register(
    State(oauth): State<Arc<OAuth>>,
    client: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let client = client.map_or(ClientAddr::Local, |c| c.0);
    if !oauth.may_register(client) {
        return Err(OAuthError::too_many_requests(
            format!(
                "this address registered {REGISTRATIONS_PER_CLIENT} clients in the last {}; retry later",
                humantime::format_duration(REGISTRATION_WINDOW)
            ),
            60,
        ));
    }
    let checked = check(&oauth, &body)?;
    let (id, secret) = credentials(&checked.method)?;
    let deletion =
        Issued::new(REGISTRATION_PREFIX).map_err(|_| OAuthError::server_error("no randomness"))?;
    let name = checked
        .request
        .client_name
        .as_ref()
        .map(|n| n.chars().take(100).collect::<String>());
    let issued_at = now();
    let registered = Client {
        id: id.clone(),
        name: name.clone(),
        redirect_uris: checked.request.redirect_uris.clone(),
        auth_method: checked.method.clone(),
        secret_hash: secret.as_ref().map(|s| s.hash().to_hex()),
        registration_hash: Some(deletion.hash().to_hex()),
        registered_at: issued_at,
    };
    save(&oauth, registered, issued_at)?;
    tracing::info!(
        "OAuth client registered: {id} ({:?})",
        name.as_deref().unwrap_or("unnamed")
    );
    let mut body = serde_json::json!({
        "client_id": id,
        "client_id_issued_at": issued_at,
        "redirect_uris": checked.request.redirect_uris,
        "token_endpoint_auth_method": checked.method,
        "grant_types": checked.grant_types,
        "response_types": checked.response_types,
        "registration_access_token": deletion.reveal(),
        "registration_client_uri": format!("{}{}?client_id={id}", oauth.issuer(), REGISTER),
    });
    if let Some(name) = name {
        body["client_name"] = name.into();
    }
    if let Some(secret) = &secret {
        body["client_secret"] = secret.reveal().into();
        body["client_secret_expires_at"] = 0.into();
    }
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Which registration a DELETE is for; one without is refused as a wrong token is.
#[derive(Deserialize)]
pub struct Which {
    #[serde(default)]
    client_id: String,
}

/// `DELETE {registration_client_uri}` with the registration access token as Bearer: the
/// client and its grants are gone (204). A wrong token and an unknown client get the same 401.
pub async fn unregister(
    State(oauth): State<Arc<OAuth>>,
    Query(which): Query<Which>,
    sent: Option<axum::Extension<Credentials>>,
) -> Result<StatusCode, OAuthError> {
    let refused = || OAuthError::invalid_token("not this client's registration access token");
    let sent = sent.ok_or_else(refused)?.0;
    let owns = |hash: &str| {
        Hash::from_hex(hash)
            .is_some_and(|stored| sent.bearer_digests().any(|d| stored.matches(d.as_bytes())))
    };
    // Checked before anything is written: a refusal costs no disk write.
    let owned =
        {
            let mut store = oauth.store();
            // Now, not within the second `recheck` allows: a client just revoked is gone.
            store.refresh().clients().iter().any(|c| {
                c.id == which.client_id && c.registration_hash.as_deref().is_some_and(owns)
            })
        };
    if !owned {
        return Err(refused());
    }
    let removed = oauth
        .store()
        .change(|store| store.remove_client(&which.client_id));
    match removed {
        // Removed meanwhile (`latchkey oauth revoke`, another DELETE): nothing was ours.
        Ok((0, _)) => Err(refused()),
        Ok((_, grants)) => {
            tracing::info!(
                "OAuth client deleted by its registration token: {} ({grants} grants)",
                which.client_id
            );
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            tracing::warn!("cannot save a deletion: {e:#}");
            Err(OAuthError::server_error("cannot save the deletion"))
        }
    }
}

/// The registration's metadata, or what is wrong with it.
fn check(oauth: &OAuth, body: &[u8]) -> Result<Checked, OAuthError> {
    if body.len() > MAX_BODY {
        return Err(OAuthError::invalid_client_metadata(
            "the registration is larger than 4 KiB",
        ));
    }
    let request: Request = serde_json::from_slice(body).map_err(|e| {
        OAuthError::invalid_client_metadata(format!(
            "the registration is not client metadata JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if request.redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri(
            "redirect_uris is required",
        ));
    }
    if let Some(bad) = request
        .redirect_uris
        .iter()
        .find(|u| !oauth.allows_redirect(u))
    {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "{bad:?} is not allowed: only ChatGPT's, Claude's, loopback http and --oauth-redirect-uri URIs are"
        )));
    }
    let method = request
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "none".into());
    if !["none", "client_secret_post", "client_secret_basic"].contains(&method.as_str()) {
        return Err(OAuthError::invalid_client_metadata(
            "token_endpoint_auth_method must be none, client_secret_post or client_secret_basic",
        ));
    }
    let grant_types = request
        .grant_types
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if grant_types
        .iter()
        .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err(OAuthError::invalid_client_metadata(
            "grant_types may hold only authorization_code and refresh_token",
        ));
    }
    let response_types = request
        .response_types
        .clone()
        .unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(OAuthError::invalid_client_metadata(
            "response_types may hold only code",
        ));
    }
    Ok(Checked {
        request,
        method,
        grant_types,
        response_types,
    })
}

/// A new client id, and a secret for a client that authenticates with one.
fn credentials(method: &str) -> Result<(String, Option<Issued>), OAuthError> {
    let made = || -> anyhow::Result<_> {
        let secret = match method {
            "none" => None,
            _ => Some(Issued::new(CLIENT_SECRET_PREFIX)?),
        };
        Ok((format!("lkcl_{}", random_text(16)?), secret))
    };
    made().map_err(|_| OAuthError::server_error("no randomness"))
}

/// Keeps the client, within the store's bounds. A client being signed in (a consent page
/// open, a code not yet exchanged) is never the one evicted to make room.
fn save(oauth: &OAuth, registered: Client, issued_at: u64) -> Result<(), OAuthError> {
    let signing_in = oauth.authorizations().clients_signing_in();
    let added = oauth
        .store()
        .change(|c| c.register(registered, issued_at, &signing_in));
    match added {
        Ok(true) => Ok(()),
        Ok(false) => Err(OAuthError::invalid_client_metadata(
            "too many clients hold grants or are signing in: revoke some with `latchkey oauth revoke`, or retry in a few minutes",
        )),
        Err(e) => {
            tracing::warn!("cannot save a registration: {e:#}");
            Err(OAuthError::server_error("cannot save the registration"))
        }
    }
}
