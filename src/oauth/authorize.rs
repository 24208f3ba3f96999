//! `/oauth/authorize`: the consent page (GET) and the person's answer (POST).
//!
//! GET checks the request — a known client, a redirect URI it registered and that is
//! allowed, `state`, an S256 challenge, our resource — and remembers it under a random CSRF
//! token, which is both a hidden field and a `SameSite=Strict` cookie. POST must carry both,
//! and the secret: an API key or the passphrase, covered by the lockout like any key. Then a
//! code (single use, 60 s, bound to client, redirect URI, challenge and resource) goes back
//! to the client's redirect URI with `state` and `iss`.

use std::sync::Arc;
use std::time::Instant;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::cimd::is_document_url;
use super::consents::{Checked, Code, PENDING_FOR, Pending};
use super::page::{self, Consent};
use super::redirect_uris::host_of;
use super::secret::{self, CODE_PREFIX, Issued};
use super::server::{AUTHORIZE, OAuth, SCOPE, Typed};
use crate::clients::ClientAddr;

const COOKIE: &str = "latchkey_consent";

#[derive(Deserialize)]
pub struct Params {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

/// Why a request cannot go on: shown on a page, or sent back to the client.
enum Refusal {
    /// The client or its redirect URI cannot be trusted: say so here, send nothing.
    Page(String),
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl OAuth {
    fn cookie(&self, value: &str, max_age: u64) -> String {
        let path = self
            .issuer()
            .parse::<http::Uri>()
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let secure = if self.issuer().starts_with("https:") {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{COOKIE}={value}; Path={path}{AUTHORIZE}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        )
    }

    /// `redirect_uri` with the answer's parameters added (and `iss`, RFC 9207).
    fn redirect(&self, redirect_uri: &str, params: &[(&str, &str)]) -> Response {
        let mut url = redirect_uri.to_owned();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (name, value) in params.iter().chain(&[("iss", self.issuer())]) {
            url.push(sep);
            sep = '&';
            url.push_str(name);
            url.push('=');
            url.extend(percent_encoding::utf8_percent_encode(
                value,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        }
        let mut response = StatusCode::SEE_OTHER.into_response();
        let headers = response.headers_mut();
        match HeaderValue::try_from(url) {
            Ok(location) => {
                headers.insert(header::LOCATION, location);
            }
            Err(_) => {
                return page::error(StatusCode::BAD_REQUEST, "The redirect URI is not valid.");
            }
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }

    fn refuse(&self, refusal: Refusal) -> Response {
        match refusal {
            Refusal::Page(problem) => page::error(StatusCode::BAD_REQUEST, &problem),
            Refusal::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut params = vec![
                    ("error", error),
                    ("error_description", description.as_str()),
                ];
                if let Some(state) = &state {
                    params.push(("state", state));
                }
                self.redirect(&redirect_uri, &params)
            }
        }
    }

    /// Checks an authorization request: the client and its redirect URI first (until they
    /// are known good, nothing may be sent to the URI), then the rest.
    async fn check_request(&self, p: Params) -> Result<Asked, Refusal> {
        let client_id = p
            .client_id
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Refusal::Page("The request names no client (client_id).".into()))?;
        let known = self.client_of(&client_id).await?;
        let (name, uris, verified_by) = (known.name, known.redirect_uris, known.verified_by);
        let redirect_named = p.redirect_uri.is_some();
        let redirect_uri = match p.redirect_uri {
            Some(uri) => uri,
            None if uris.len() == 1 => uris[0].clone(),
            None => return Err(Refusal::Page("The request names no redirect_uri.".into())),
        };
        if !uris.contains(&redirect_uri) || !self.allows_redirect(&redirect_uri) {
            return Err(Refusal::Page(format!(
                "The redirect URI {redirect_uri:?} is not one this client may use (see --oauth-redirect-uri)."
            )));
        }
        let refuse = |error, description: &str| Refusal::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: p.state.clone(),
            error,
            description: description.to_owned(),
        };
        if p.response_type.as_deref() != Some("code") {
            return Err(refuse(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        let state = match p.state.as_deref() {
            Some(s) if !s.is_empty() && s.len() <= 1024 => s.to_owned(),
            _ => {
                return Err(refuse(
                    "invalid_request",
                    "state is required (at most 1024 characters)",
                ));
            }
        };
        let challenge = match (
            p.code_challenge.as_deref(),
            p.code_challenge_method.as_deref(),
        ) {
            // BASE64URL(SHA-256(verifier)): exactly 43 characters of that alphabet.
            (Some(c), Some("S256")) if c.len() == 43 && c.bytes().all(is_base64url) => c.to_owned(),
            _ => {
                return Err(refuse(
                    "invalid_request",
                    "a PKCE code_challenge with method S256 is required",
                ));
            }
        };
        if !self.is_our_resource(p.resource.as_deref()) {
            return Err(refuse(
                "invalid_target",
                "resource is not this server's MCP endpoint",
            ));
        }
        // Unknown scopes are dropped rather than refused: the grant is for the MCP endpoint.
        let scope = match p.scope.as_deref() {
            Some(s) if s.split(' ').any(|s| s == "offline_access") => {
                format!("{SCOPE} offline_access")
            }
            _ => SCOPE.to_owned(),
        };
        Ok(Asked {
            request: Checked {
                client_id,
                redirect_uri,
                redirect_named,
                state,
                challenge,
                resource: self.resource().to_owned(),
                scope,
            },
            client_name: name,
            verified_by,
        })
    }

    /// The client `client_id` names: by its metadata document, or as registered here.
    async fn client_of(&self, client_id: &str) -> Result<KnownClient, Refusal> {
        if is_document_url(client_id) {
            let doc = self.cimd().get(client_id).await.map_err(|e| {
                Refusal::Page(format!(
                    "The client's metadata document cannot be used: {e}"
                ))
            })?;
            return Ok(KnownClient {
                name: doc.name.unwrap_or_else(|| host_of(client_id)),
                redirect_uris: doc.redirect_uris,
                verified_by: Some(host_of(client_id)),
            });
        }
        let mut store = self.store();
        let client = store.refresh().client(client_id).ok_or_else(|| {
            Refusal::Page(
                "This client is not registered here (any more): connect again from the app.".into(),
            )
        })?;
        Ok(KnownClient {
            name: client
                .name
                .clone()
                .unwrap_or_else(|| "An unnamed client".into()),
            redirect_uris: client.redirect_uris.clone(),
            verified_by: None,
        })
    }
}

/// An authorization request, checked: what the consent page shows and keeps.
struct Asked {
    request: Checked,
    client_name: String,
    /// The host of a metadata document's URL, which vouches for the client's name.
    verified_by: Option<String>,
}

/// A client, as far as the consent page needs it.
struct KnownClient {
    name: String,
    redirect_uris: Vec<String>,
    verified_by: Option<String>,
}

pub async fn show(
    State(oauth): State<Arc<OAuth>>,
    client: Option<axum::Extension<ClientAddr>>,
    Query(params): Query<Params>,
) -> Response {
    let Asked {
        request,
        client_name,
        verified_by,
    } = match oauth.check_request(params).await {
        Ok(asked) => asked,
        Err(refusal) => return oauth.refuse(refusal),
    };
    let csrf = match secret::random_text(32) {
        Ok(t) => t,
        Err(e) => return page::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let pending = Pending {
        request,
        client_name,
        verified_by,
        since: Instant::now(),
        opened_by: client.map_or(ClientAddr::Local, |c| c.0).network(),
    };
    let response = consent_page(&oauth, StatusCode::OK, &pending, &csrf, None);
    oauth.authorizations().await_consent(csrf, pending);
    response
}

fn consent_page(
    oauth: &OAuth,
    status: StatusCode,
    pending: &Pending,
    csrf: &str,
    problem: Option<&str>,
) -> Response {
    let action = format!("{}{AUTHORIZE}", oauth.issuer());
    page::consent(
        status,
        &Consent {
            client_name: &pending.client_name,
            client_verified_by: pending.verified_by.as_deref(),
            redirect_host: &host_of(&pending.request.redirect_uri),
            csrf,
            action: &action,
            problem,
        },
        Some(oauth.cookie(csrf, PENDING_FOR.as_secs())),
    )
}

#[derive(Deserialize)]
pub struct Answer {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    decision: String,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answer(REDACTED)")
    }
}

/// The value of our cookie in `headers`.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

pub async fn decide(
    State(oauth): State<Arc<OAuth>>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(answer): Form<Answer>,
) -> Response {
    let client = client.map_or(ClientAddr::Local, |c| c.0);
    let cookie_matches = cookie_value(&headers).is_some_and(|c| {
        !answer.csrf.is_empty() && bool::from(c.as_bytes().ct_eq(answer.csrf.as_bytes()))
    });
    let pending = cookie_matches
        .then(|| oauth.authorizations().awaiting(&answer.csrf))
        .flatten();
    let Some(pending) = pending else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "This consent page has expired or was not opened in this browser.",
        );
    };
    let request = &pending.request;
    if answer.decision != "allow" {
        if !oauth.authorizations().answer(&answer.csrf) {
            return already_answered();
        }
        return oauth.redirect(
            &request.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "The owner denied access."),
                ("state", &request.state),
            ],
        );
    }
    let secret_id = match secret_given(&oauth, client, &pending, &answer).await {
        Ok(id) => id,
        Err(page) => return page,
    };
    if !oauth.authorizations().answer(&answer.csrf) {
        return already_answered();
    }
    issue(&oauth, &pending, secret_id)
}

fn already_answered() -> Response {
    page::error(
        StatusCode::BAD_REQUEST,
        "This consent page was already answered.",
    )
}

/// The id of the secret typed on the page, or the page again saying why not. Counted before
/// it is checked, so concurrent answers cannot outrun the lockout; an empty answer is no guess.
async fn secret_given(
    oauth: &OAuth,
    client: ClientAddr,
    pending: &Pending,
    answer: &Answer,
) -> Result<String, Response> {
    let counted = if answer.secret.trim().is_empty() {
        oauth.lockout().check(client)
    } else {
        oauth.lockout().attempt(client)
    };
    let again =
        |status, message: &str| consent_page(oauth, status, pending, &answer.csrf, Some(message));
    if let Err(retry_after) = counted {
        let minutes = retry_after.as_secs().div_ceil(60);
        return Err(again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many wrong secrets from this address: try again in {minutes} min."),
        ));
    }
    match oauth.secret_id(&answer.secret).await {
        Typed::Secret(id) => {
            oauth.lockout().succeeded(client);
            Ok(id)
        }
        Typed::Wrong => Err(again(
            StatusCode::UNAUTHORIZED,
            "That is not an API key or the passphrase of this server.",
        )),
        Typed::Busy => Err(again(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is checking other sign-ins; try again in a moment.",
        )),
    }
}

/// A code for the consented request, sent to its redirect URI (the page's cookie cleared).
fn issue(oauth: &OAuth, pending: &Pending, secret_id: String) -> Response {
    let request = &pending.request;
    let code = match Issued::new(CODE_PREFIX) {
        Ok(code) => code,
        Err(e) => return page::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let kept = Code {
        client_id: request.client_id.clone(),
        client_name: pending.client_name.clone(),
        redirect_uri: request.redirect_uri.clone(),
        redirect_named: request.redirect_named,
        challenge: request.challenge.clone(),
        resource: request.resource.clone(),
        scope: request.scope.clone(),
        secret_id,
        since: Instant::now(),
    };
    if oauth
        .authorizations()
        .issue_code(code.hash(), kept)
        .is_err()
    {
        return page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins at once; try again in a minute.",
        );
    }
    tracing::info!(
        "OAuth consent given to {:?} (redirect to {})",
        pending.client_name,
        host_of(&request.redirect_uri)
    );
    let mut response = oauth.redirect(
        &request.redirect_uri,
        &[("code", code.reveal()), ("state", &request.state)],
    );
    if let Ok(clear) = HeaderValue::try_from(oauth.cookie("", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    response
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}
