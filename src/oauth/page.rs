//! The consent page and the error page: small server-rendered HTML, no script, readable on
//! a phone. Everything shown that a client chose (its name, its redirect host) is escaped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::html::escape;

/// What the consent page shows and posts back.
pub struct Consent<'a> {
    pub client_name: &'a str,
    /// `true` when the name comes from a document at the client's own URL (CIMD), not
    /// from a registration anyone could make.
    pub client_verified_by: Option<&'a str>,
    pub redirect_host: &'a str,
    pub csrf: &'a str,
    pub action: &'a str,
    pub problem: Option<&'a str>,
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f4f5;color:#18181b}\
main{max-width:26rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:.75rem;\
box-shadow:0 1px 3px #0002}h1{font-size:1.3rem;margin:0 0 1rem}p{margin:.5rem 0}\
.host{font-weight:600;word-break:break-all}label{display:block;margin:1rem 0 .25rem;font-weight:600}\
input[type=password]{width:100%;box-sizing:border-box;font-size:1rem;padding:.6rem;border:1px solid #a1a1aa;\
border-radius:.4rem}.buttons{display:flex;gap:.75rem;margin-top:1.25rem}button{flex:1;font-size:1rem;\
padding:.7rem;border-radius:.4rem;border:1px solid #a1a1aa;background:#fff}button.allow{background:#1d4ed8;\
color:#fff;border-color:#1d4ed8}.problem{color:#b91c1c;font-weight:600}small{color:#52525b}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>"
    )
}

/// Its style is inline (the page has nothing else to load); no script at all.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// The page, with `html::harden`'s headers (clickjacking, caching, referrer) and a cookie.
fn respond(status: StatusCode, html: String, cookie: Option<String>) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    crate::html::harden(headers, CSP);
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

pub fn consent(status: StatusCode, consent: &Consent<'_>, cookie: Option<String>) -> Response {
    let name = escape(consent.client_name);
    let host = escape(consent.redirect_host);
    let who = match consent.client_verified_by {
        Some(domain) => format!(
            "<p><small>Its description comes from {}.</small></p>",
            escape(domain)
        ),
        None => {
            "<p><small>The name is what the client registered itself as.</small></p>".to_owned()
        }
    };
    let problem = consent
        .problem
        .map(|p| format!("<p class=\"problem\" role=\"alert\">{}</p>", escape(p)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Allow {name} to use your tools?</h1>\
         <p><b>{name}</b> asks to reach the MCP tools behind this latchkey, as you.</p>{who}\
         <p>After you decide, you go back to <span class=\"host\">{host}</span>.</p>{problem}\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"secret\">Your API key or passphrase</label>\
         <input type=\"password\" id=\"secret\" name=\"secret\" autocomplete=\"current-password\" autofocus>\
         <div class=\"buttons\"><button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\
         <button class=\"allow\" type=\"submit\" name=\"decision\" value=\"allow\">Allow</button></div>\
         </form>",
        action = escape(consent.action),
        csrf = escape(consent.csrf),
    );
    respond(status, document("Allow access? – latchkey", &body), cookie)
}

pub fn error(status: StatusCode, problem: &str) -> Response {
    let body = format!(
        "<h1>This sign-in cannot go on</h1><p class=\"problem\">{}</p>\
         <p>Start again from the app you were connecting.</p>",
        escape(problem)
    );
    respond(status, document("Sign-in problem – latchkey", &body), None)
}
