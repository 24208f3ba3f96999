//! With several upstreams, a prompt or resource asked by the upstream's own name or URI,
//! unprefixed: what an MCP App's own code asks for (it knows `ui://clock/app.html`, not
//! `apps:ui://clock/app.html`). It goes to the one upstream whose listing offers it, found by
//! listing then and there every upstream that declares prompts (or resources).
//!
//! Nothing is kept between asks: such asks are rare next to prefixed ones, and a listing
//! made for the ask is never stale, where a kept one would need list-change tracking,
//! retries after a failed listing and a bound of its own. An upstream that is down is
//! skipped (it could serve nothing now); one that is still starting after
//! [`crate::upstream::STARTING_WAIT`], or whose listing fails, times out or does not end
//! within [`MAX_PAGES`], makes the ask fail: it might have offered the name too. Each
//! upstream's listing has one deadline for the whole ask, its request timeout.

use futures::future::{BoxFuture, join_all};
use rmcp::model::{ErrorCode, PaginatedRequestParams};
use rmcp::service::{RoleClient, ServiceError};
use rmcp::{ErrorData as McpError, Peer};
use tokio::time::Instant;

use crate::upstream::{State, Upstream, Upstreams};

/// The most pages of one upstream's listing read for one ask (a guard against a server
/// whose cursors never end); also the bridge's bound for finding an unprefixed tool.
pub const MAX_PAGES: usize = 100;

/// How well one upstream's listing matches what was asked: a listed prompt or resource
/// beats any template, and a template with more literal characters (`file:///{p}.txt`)
/// beats one with fewer (`file:///{p}`), so a catch-all never outranks a specific one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    None,
    Template(usize),
    Listed,
}

/// One page of a listing: how it matches, and the cursor of the next page.
type Page = Result<(Match, Option<String>), ServiceError>;

/// Which capability an upstream declares to be asked.
#[derive(Clone, Copy)]
enum Offers {
    Prompts,
    Resources,
}

/// The upstream that offers the prompt `name` (its own name for it).
pub async fn prompt<'a>(upstreams: &'a Upstreams, name: &str) -> Result<&'a Upstream, McpError> {
    let asked = Asked::Prompt(name);
    let lookup = Lookup::new(upstreams, asked, Offers::Prompts);
    let found = lookup
        .find(|peer, cursor| {
            Box::pin(async move {
                let page = peer.list_prompts(cursor).await?;
                let found = page.prompts.iter().any(|p| p.name == name);
                Ok((listed_if(found), page.next_cursor))
            })
        })
        .await?;
    found.ok_or_else(|| asked.unknown())
}

/// The upstream that offers the resource `uri` (its own URI): one that lists it, or else
/// the one with the template it fits best.
pub async fn resource<'a>(upstreams: &'a Upstreams, uri: &str) -> Result<&'a Upstream, McpError> {
    let lookup = Lookup::new(upstreams, Asked::Resource(uri), Offers::Resources);
    match lookup
        .find(|peer, cursor| resources(peer, cursor, uri))
        .await?
    {
        Some(found) => Ok(found),
        None => lookup
            .find(|peer, cursor| templates(peer, cursor, uri, true))
            .await?
            .ok_or_else(|| lookup.asked.unknown()),
    }
}

/// The upstream a completion's `ref/resource` belongs to: the one that lists it as a
/// template (what the reference names), or else as a resource.
pub async fn completed<'a>(upstreams: &'a Upstreams, uri: &str) -> Result<&'a Upstream, McpError> {
    let lookup = Lookup::new(upstreams, Asked::Resource(uri), Offers::Resources);
    match lookup
        .find(|peer, cursor| templates(peer, cursor, uri, false))
        .await?
    {
        Some(found) => Ok(found),
        None => lookup
            .find(|peer, cursor| resources(peer, cursor, uri))
            .await?
            .ok_or_else(|| lookup.asked.unknown()),
    }
}

fn resources(
    peer: Peer<RoleClient>,
    cursor: Option<PaginatedRequestParams>,
    uri: &str,
) -> BoxFuture<'_, Page> {
    Box::pin(async move {
        let page = peer.list_resources(cursor).await?;
        let found = page.resources.iter().any(|r| r.uri == uri);
        Ok((listed_if(found), page.next_cursor))
    })
}

/// A page of templates: one that is `uri` itself is a listed match; with `fitting`, one
/// whose literal parts `uri` has is a template match.
fn templates(
    peer: Peer<RoleClient>,
    cursor: Option<PaginatedRequestParams>,
    uri: &str,
    fitting: bool,
) -> BoxFuture<'_, Page> {
    Box::pin(async move {
        let page = peer.list_resource_templates(cursor).await?;
        let found = page.resource_templates.iter().fold(Match::None, |best, t| {
            let template = t.uri_template.as_str();
            best.max(if template == uri {
                Match::Listed
            } else if fitting {
                fits(template, uri).map_or(Match::None, Match::Template)
            } else {
                Match::None
            })
        });
        Ok((found, page.next_cursor))
    })
}

fn listed_if(found: bool) -> Match {
    if found { Match::Listed } else { Match::None }
}

/// What was asked, for the error texts.
#[derive(Clone, Copy)]
enum Asked<'a> {
    Prompt(&'a str),
    Resource(&'a str),
}

impl Asked<'_> {
    fn unknown(self) -> McpError {
        match self {
            Asked::Prompt(name) => {
                McpError::invalid_params(format!("unknown prompt {name:?}"), None)
            }
            Asked::Resource(uri) => {
                McpError::resource_not_found(format!("unknown resource {uri:?}"), None)
            }
        }
    }

    fn several(self, offering: &[&Upstream]) -> McpError {
        let names: Vec<String> = offering
            .iter()
            .map(|u| match self {
                Asked::Prompt(name) => format!("{:?}", u.naming.name(name)),
                Asked::Resource(uri) => format!("{:?}", u.naming.uri(uri)),
            })
            .collect();
        let (what, asked, verb) = match self {
            Asked::Prompt(name) => ("prompt", name, "get it"),
            Asked::Resource(uri) => ("resource", uri, "read it"),
        };
        McpError::invalid_params(
            format!(
                "{what} {asked:?} is offered by several upstreams: {verb} as one of {}",
                names.join(", ")
            ),
            None,
        )
    }

    /// Not the client's mistake, whatever code the upstream's own error had.
    fn unlisted(self, upstream: &Upstream, why: &str) -> McpError {
        let (what, asked) = match self {
            Asked::Prompt(name) => ("prompt", name),
            Asked::Resource(uri) => ("resource", uri),
        };
        McpError::new(
            ErrorCode::INTERNAL_ERROR,
            format!(
                "cannot tell which upstream offers {what} {asked:?}: upstream {:?} {why}; \
                 ask for it prefixed",
                upstream.name()
            ),
            None,
        )
    }
}

/// One ask: its upstreams, what is asked, and when it started (each upstream's deadline).
struct Lookup<'a, 'n> {
    upstreams: &'a Upstreams,
    asked: Asked<'n>,
    offers: Offers,
    started: Instant,
}

impl<'a, 'n> Lookup<'a, 'n> {
    fn new(upstreams: &'a Upstreams, asked: Asked<'n>, offers: Offers) -> Self {
        Lookup {
            upstreams,
            asked,
            offers,
            started: Instant::now(),
        }
    }

    /// The one upstream whose listing (read a page at a time by `page`) matches best, or
    /// `None` when none matches; the best match of several is refused with their names.
    async fn find<P>(&self, page: P) -> Result<Option<&'a Upstream>, McpError>
    where
        P: Fn(Peer<RoleClient>, Option<PaginatedRequestParams>) -> BoxFuture<'n, Page>,
    {
        let upstreams: Vec<&Upstream> = self.upstreams.iter().collect();
        let matches = join_all(upstreams.iter().map(|u| self.listing(u, &page))).await;
        let mut best = Match::None;
        let mut offering = Vec::new();
        for (upstream, found) in upstreams.into_iter().zip(matches) {
            let found = found?;
            if found > best {
                (best, offering) = (found, Vec::new());
            }
            if found == best && found != Match::None {
                offering.push(upstream);
            }
        }
        match offering[..] {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(self.asked.several(&offering)),
        }
    }

    /// How well `upstream`'s listing matches: none when it is down or does not declare
    /// the capability; every page read until a listed match, within its deadline.
    async fn listing<P>(&self, upstream: &Upstream, page: &P) -> Result<Match, McpError>
    where
        P: Fn(Peer<RoleClient>, Option<PaginatedRequestParams>) -> BoxFuture<'n, Page>,
    {
        let connection = match upstream.ready_connection().await {
            Ok(connection) => connection,
            Err(_) if matches!(upstream.state(), State::Starting) => {
                return Err(self.asked.unlisted(upstream, "is still starting"));
            }
            Err(_) => return Ok(Match::None),
        };
        let capabilities = &connection.info.capabilities;
        let declared = match self.offers {
            Offers::Prompts => capabilities.prompts.is_some(),
            Offers::Resources => capabilities.resources.is_some(),
        };
        if !declared {
            return Ok(Match::None);
        }
        let timeout = upstream.request_timeout();
        let pages = every_page(&connection.peer, page);
        match tokio::time::timeout_at(self.started + timeout, pages).await {
            Err(_) => Err(self
                .asked
                .unlisted(upstream, &format!("did not list within {timeout:?}"))),
            Ok(Err(Unlisted::Failed(error))) => {
                let why = format!("could not list ({})", upstream.error(error).message);
                Err(self.asked.unlisted(upstream, &why))
            }
            Ok(Err(Unlisted::Endless)) => Err(self
                .asked
                .unlisted(upstream, &format!("listed more than {MAX_PAGES} pages"))),
            Ok(Ok(found)) => Ok(found),
        }
    }
}

enum Unlisted {
    Failed(ServiceError),
    Endless,
}

/// The best match over every page `page` reads from `peer`, up to a listed one. A listing
/// the upstream does not implement (-32601: templates, most often) matches nothing.
async fn every_page<'n, P>(peer: &Peer<RoleClient>, page: &P) -> Result<Match, Unlisted>
where
    P: Fn(Peer<RoleClient>, Option<PaginatedRequestParams>) -> BoxFuture<'n, Page>,
{
    let mut best = Match::None;
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let request = cursor.map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
        let (found, next) = match page(peer.clone(), request).await {
            Ok(page) => page,
            Err(ServiceError::McpError(error)) if error.code == ErrorCode::METHOD_NOT_FOUND => {
                return Ok(best);
            }
            Err(error) => return Err(Unlisted::Failed(error)),
        };
        best = best.max(found);
        match next {
            Some(next) if best != Match::Listed => cursor = Some(next),
            _ => return Ok(best),
        }
    }
    Err(Unlisted::Endless)
}

/// Whether `uri` has the literal parts of the URI `template` (RFC 6570), in order: the first
/// at its start, the last at its end; then how many literal characters matched. Only
/// literal parts are compared (a `{name}` may take a `/` here), so a template is a lesser
/// match than a listed URI.
fn fits(template: &str, uri: &str) -> Option<usize> {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}')?;
        literals.push(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    let (first, middle) = literals.split_first()?;
    let last = rest;
    let mut remaining = uri.strip_prefix(first)?;
    for literal in middle {
        let at = remaining.find(literal)?;
        remaining = &remaining[at + literal.len()..];
    }
    remaining
        .ends_with(last)
        .then(|| literals.iter().map(|l| l.len()).sum::<usize>() + last.len())
}

#[cfg(test)]
mod tests {
    use super::fits;

    #[test]
    fn a_uri_fits_a_template_by_its_literal_parts() {
        assert!(fits("file:///{path}", "file:///tmp/a").is_some());
        assert!(fits("demo://resource/{id}/text", "demo://resource/7/text").is_some());
        assert!(fits("ui://{app}/{page}.html", "ui://clock/app.html").is_some());
        assert!(fits("ui://{app}/{page}.html", "ui://clock/app.js").is_none());
        assert!(fits("file:///{path}", "ui://clock").is_none());
        assert!(fits("demo://{a}/x/{b}", "demo://1/y/2").is_none());
        // The last literal is after what the middle ones took, and may not overlap the first.
        assert!(fits("a{x}a", "a").is_none());
        assert!(fits("a{x}a", "aa").is_some());
        // No expression: only the listed URI itself is the resource.
        assert!(fits("file:///a", "file:///a").is_none());
        assert!(fits("file:///{path", "file:///tmp").is_none());
    }

    #[test]
    fn a_specific_template_outranks_a_catch_all() {
        let uri = "file:///notes/a.txt";
        assert_eq!(fits("{+uri}", uri), Some(0));
        let general = fits("file:///{+path}", uri).unwrap();
        let specific = fits("file:///notes/{name}.txt", uri).unwrap();
        assert!(specific > general && general > 0, "{specific} {general}");
    }
}
