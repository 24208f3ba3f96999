//! Discovery: Protected Resource Metadata (RFC 9728) and Authorization Server Metadata
//! (RFC 8414, with `openid-configuration` as an alias, which ChatGPT probes first).
//!
//! Clients look for them in several places; each is served where a client may look:
//! at the domain root with the resource's or issuer's path appended (RFC 9728 §3.1,
//! RFC 8414 §3.1: `/.well-known/oauth-protected-resource/<base>/mcp`,
//! `/.well-known/oauth-authorization-server/<base>`), bare at the root (ChatGPT's probes),
//! and under the base path (what a proxy forwarding only the prefix still reaches, and what
//! the 401's `resource_metadata` points to).

use serde_json::{Value, json};

use super::server::{AUTHORIZE, OAuth, REGISTER, REVOKE, SCOPE, TOKEN};

/// The document for `rest` (the path after `/.well-known/`), if it is one of ours.
/// `under_base`: the request came under the base path, so the base is not repeated.
pub fn well_known(oauth: &OAuth, rest: &str, base: &str, under_base: bool) -> Option<Value> {
    let (name, suffix) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // What follows the name: nothing, or the resource's (issuer's) path — less the base
    // path when the request came under it.
    let prefix = if under_base { "" } else { base };
    let names = |path: &str| suffix.is_empty() || suffix.strip_prefix(prefix) == Some(path);
    match name {
        "oauth-protected-resource" if names(crate::configuration::MCP_PATH) => {
            Some(protected_resource(oauth))
        }
        "oauth-authorization-server" | "openid-configuration" if names("") => {
            Some(authorization_server(oauth))
        }
        _ => None,
    }
}

fn protected_resource(oauth: &OAuth) -> Value {
    json!({
        "resource": oauth.resource(),
        "authorization_servers": [oauth.issuer()],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": "latchkey",
    })
}

fn authorization_server(oauth: &OAuth) -> Value {
    let issuer = oauth.issuer();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE}"),
        "token_endpoint": format!("{issuer}{TOKEN}"),
        "registration_endpoint": format!("{issuer}{REGISTER}"),
        "revocation_endpoint": format!("{issuer}{REVOKE}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "scopes_supported": [SCOPE, "offline_access"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    })
}
