//! How the names of several upstreams' tools, prompts and resources are kept apart, and
//! which tools an upstream may offer.
//!
//! With one upstream, names are the upstream's own. With several, each is prefixed with its
//! upstream's name: tool and prompt `NAME__original`, resource and template URI
//! `NAME:original` (an opaque URI of scheme `NAME`). Upstream names are letters, digits and
//! `-`, so the first `__` or `:` always ends the prefix.

use std::borrow::Cow;

/// Between an upstream's name and a tool's or prompt's.
pub const NAME_SEPARATOR: &str = "__";

/// Between an upstream's name and a resource's URI.
pub const URI_SEPARATOR: char = ':';

/// Whether `name` can name an upstream in the configuration file (and so prefix names).
pub fn is_valid_upstream_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A tool allow or deny list, by the upstream's own tool names.
#[derive(Clone, Debug, Default)]
pub enum ToolFilter {
    #[default]
    All,
    Only(Vec<String>),
    AllBut(Vec<String>),
}

impl ToolFilter {
    pub fn allows(&self, tool: &str) -> bool {
        match self {
            ToolFilter::All => true,
            ToolFilter::Only(names) => names.iter().any(|n| n == tool),
            ToolFilter::AllBut(names) => !names.iter().any(|n| n == tool),
        }
    }

    /// What is wrong with the list against the upstream's `tools`: one line per entry that
    /// names no tool, with the nearest real name. A typo in a deny list leaves the tool it
    /// meant exposed (`tools.deny = ["write_files"]` left `write_file` callable, silently).
    pub fn unmatched(&self, tools: &[&str]) -> Vec<String> {
        let (names, list) = match self {
            ToolFilter::All => return Vec::new(),
            ToolFilter::Only(names) => (names, "tools.allow"),
            ToolFilter::AllBut(names) => (names, "tools.deny"),
        };
        names
            .iter()
            .filter(|name| !tools.contains(&name.as_str()))
            .map(|name| {
                let nearest = tools
                    .iter()
                    .min_by_key(|tool| strsim::levenshtein(name, tool))
                    .map_or(String::new(), |tool| format!(" (the nearest is {tool:?})"));
                format!("{list} entry {name:?} matches none of its tools{nearest}")
            })
            .collect()
    }
}

/// The names an upstream's items get outside: `prefix` is `Some(upstream name)` when there
/// are several upstreams.
#[derive(Clone, Debug)]
pub struct Naming {
    pub prefix: Option<std::sync::Arc<str>>,
}

impl Naming {
    /// A tool's or prompt's name as clients see it.
    pub fn name<'a>(&self, name: &'a str) -> Cow<'a, str> {
        match &self.prefix {
            None => Cow::Borrowed(name),
            Some(prefix) => Cow::Owned(format!("{prefix}{NAME_SEPARATOR}{name}")),
        }
    }

    /// A log message's `logger` as clients see it: with several upstreams the upstream's
    /// name comes first (`NAME:logger`, or `NAME` when it gave none), so a client can tell
    /// which server logged.
    pub fn logger(&self, logger: Option<String>) -> Option<String> {
        match (&self.prefix, logger) {
            (None, logger) => logger,
            (Some(prefix), None) => Some(prefix.to_string()),
            (Some(prefix), Some(logger)) => Some(format!("{prefix}{URI_SEPARATOR}{logger}")),
        }
    }

    /// Renames `name` in place to what clients see (nothing to do with one upstream).
    pub fn rename(&self, name: &mut String) {
        if self.prefix.is_some() {
            *name = self.name(name).into_owned();
        }
    }

    /// Renames `uri` in place to what clients see (nothing to do with one upstream).
    pub fn rename_uri(&self, uri: &mut String) {
        if self.prefix.is_some() {
            *uri = self.uri(uri).into_owned();
        }
    }

    /// A resource's URI (or URI template) as clients see it.
    pub fn uri<'a>(&self, uri: &'a str) -> Cow<'a, str> {
        match &self.prefix {
            None => Cow::Borrowed(uri),
            Some(prefix) => Cow::Owned(format!("{prefix}{URI_SEPARATOR}{uri}")),
        }
    }
}

/// `(upstream name, the upstream's own name)` of a prefixed tool or prompt name.
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    name.split_once(NAME_SEPARATOR)
}

/// `(upstream name, the upstream's own URI)` of a prefixed URI. What follows the prefix
/// never starts with `//`: that is an upstream's own `scheme://…` URI whose scheme is some
/// upstream's name (`file:///tmp/a` beside an upstream named `file`), not `///tmp/a` of
/// that upstream. Any other rest is the upstream's own, with or without a scheme.
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let (prefix, own) = uri.split_once(URI_SEPARATOR)?;
    (!own.starts_with("//")).then_some((prefix, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefixed_name_splits_back_at_the_first_separator() {
        let naming = Naming {
            prefix: Some("files".into()),
        };
        let outside = naming.name("read__file");
        assert_eq!(outside, "files__read__file");
        assert_eq!(split_name(&outside), Some(("files", "read__file")));
        let uri = naming.uri("file:///tmp/a");
        assert_eq!(uri, "files:file:///tmp/a");
        assert_eq!(split_uri(&uri), Some(("files", "file:///tmp/a")));
        // An upstream's own URI whose scheme is some upstream's name is no prefixed one.
        assert_eq!(split_uri("file:///tmp/a"), None);
        assert_eq!(split_uri("ui://clock/app.html"), None);
        assert_eq!(
            split_uri("apps:ui://clock/app.html"),
            Some(("apps", "ui://clock/app.html"))
        );
        // Without a scheme of their own, and templates: the upstream's as they are.
        assert_eq!(split_uri("apps:readme"), Some(("apps", "readme")));
        assert_eq!(split_uri("apps:{+uri}"), Some(("apps", "{+uri}")));
        assert_eq!(naming.logger(None).as_deref(), Some("files"));
        assert_eq!(
            naming.logger(Some("fs".into())).as_deref(),
            Some("files:fs")
        );
        let alone = Naming { prefix: None };
        assert_eq!(alone.name("read"), "read");
        assert_eq!(alone.uri("file:///a"), "file:///a");
        assert_eq!(alone.logger(None), None);
        assert_eq!(alone.logger(Some("fs".into())).as_deref(), Some("fs"));
    }

    #[test]
    fn upstream_names_cannot_contain_a_separator() {
        assert!(is_valid_upstream_name("notes-2"));
        assert!(!is_valid_upstream_name("my_notes"));
        assert!(!is_valid_upstream_name("a:b"));
        assert!(!is_valid_upstream_name(""));
        assert!(!is_valid_upstream_name(&"a".repeat(33)));
    }

    #[test]
    fn entries_that_match_no_tool_are_named_with_the_nearest() {
        let tools = ["read_file", "write_file", "list_directory"];
        let deny = ToolFilter::AllBut(vec!["write_files".into(), "read_file".into()]);
        assert_eq!(
            deny.unmatched(&tools),
            [
                "tools.deny entry \"write_files\" matches none of its tools (the nearest is \"write_file\")"
            ]
        );
        let allow = ToolFilter::Only(vec!["list_dir".into()]);
        assert!(allow.unmatched(&tools)[0].starts_with("tools.allow entry \"list_dir\""));
        assert!(ToolFilter::All.unmatched(&tools).is_empty());
    }

    #[test]
    fn allow_and_deny_lists() {
        let only = ToolFilter::Only(vec!["read".into()]);
        assert!(only.allows("read") && !only.allows("write"));
        let but = ToolFilter::AllBut(vec!["write".into()]);
        assert!(but.allows("read") && !but.allows("write"));
        assert!(ToolFilter::All.allows("anything"));
    }
}
