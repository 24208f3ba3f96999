//! The resource references inside what an upstream returns, renamed the way its resources
//! are (`crate::upstream::names`), so that with several upstreams a client that follows one
//! reads the resource it meant: a tool's MCP Apps UI (`_meta.ui.resourceUri`, the ext-apps
//! SDK's flat `ui/resourceUri`, ChatGPT's `openai/outputTemplate`), a result's or prompt's
//! `resource_link` and embedded resources, and the same keys in any `_meta` on the way.
//!
//! Everything else in `_meta` passes untouched. With one upstream nothing is renamed (its
//! URIs are its own), and nothing here runs.

use rmcp::model::{
    CallToolResult, ContentBlock, GetPromptResult, MetaObject, Resource, ResourceContents, Tool,
};
use serde_json::Value;

use crate::upstream::names::Naming;

/// The `_meta` paths whose value is a resource URI.
const REFERENCES: [&[&str]; 3] = [
    &["ui", "resourceUri"],
    &["ui/resourceUri"],
    &["openai/outputTemplate"],
];

/// A tool's references (its UI) renamed.
pub fn tool(naming: &Naming, tool: &mut Tool) {
    meta(naming, tool.meta.as_mut());
}

/// A listed resource's URI and references renamed.
pub fn resource(naming: &Naming, resource: &mut Resource) {
    naming.rename_uri(&mut resource.uri);
    meta(naming, resource.meta.as_mut());
}

/// Read (or embedded) contents' URI and references renamed.
pub fn contents(naming: &Naming, contents: &mut ResourceContents) {
    match contents {
        ResourceContents::TextResourceContents { uri, meta: m, .. }
        | ResourceContents::BlobResourceContents { uri, meta: m, .. } => {
            naming.rename_uri(uri);
            meta(naming, m.as_mut());
        }
        _ => {}
    }
}

/// A tool result's references renamed: its `_meta`, and each content block that names a
/// resource (a `resource_link`, an embedded resource).
pub fn call_result(naming: &Naming, result: &mut CallToolResult) {
    if naming.prefix.is_none() {
        return;
    }
    meta(naming, result.meta.as_mut());
    for content in &mut result.content {
        block(naming, content);
    }
}

/// A prompt's references renamed: its `_meta`, and each message that names a resource.
pub fn prompt(naming: &Naming, prompt: &mut GetPromptResult) {
    if naming.prefix.is_none() {
        return;
    }
    meta(naming, prompt.meta.as_mut());
    for message in &mut prompt.messages {
        block(naming, &mut message.content);
    }
}

/// A content block that names a resource (a `resource_link`, an embedded resource),
/// renamed.
fn block(naming: &Naming, block: &mut ContentBlock) {
    match block {
        ContentBlock::ResourceLink(link) => resource(naming, link),
        ContentBlock::Resource(embedded) => {
            contents(naming, &mut embedded.resource);
            meta(naming, embedded.meta.as_mut());
        }
        _ => {}
    }
}

/// The references among `meta`'s keys renamed; every other key as it was.
fn meta(naming: &Naming, meta: Option<&mut MetaObject>) {
    let Some(meta) = meta else { return };
    if naming.prefix.is_none() {
        return;
    }
    for path in REFERENCES {
        if let Some(uri) = string_at(&mut meta.0, path) {
            naming.rename_uri(uri);
        }
    }
}

/// The string at `path` in `object`, when there is one.
fn string_at<'a>(
    object: &'a mut serde_json::Map<String, Value>,
    path: &[&str],
) -> Option<&'a mut String> {
    let (last, parents) = path.split_last()?;
    let mut object = object;
    for parent in parents {
        object = object.get_mut(*parent)?.as_object_mut()?;
    }
    match object.get_mut(*last)? {
        Value::String(uri) => Some(uri),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed() -> Naming {
        Naming {
            prefix: Some("apps".into()),
        }
    }

    #[test]
    fn every_ui_reference_of_a_tool_is_renamed_and_nothing_else() {
        let mut tool = Tool::default();
        let original = serde_json::json!({
            "ui": {"resourceUri": "ui://clock/app.html", "visibility": ["model", "app"]},
            "ui/resourceUri": "ui://clock/app.html",
            "openai/outputTemplate": "ui://clock/app.html",
            "openai/widgetAccessible": true,
            "other": {"resourceUri": "ui://not/a/reference"},
        });
        tool.meta = Some(MetaObject(original.as_object().unwrap().clone()));
        super::tool(&prefixed(), &mut tool);
        let renamed = serde_json::Value::Object(tool.meta.clone().unwrap().0);
        assert_eq!(
            renamed,
            serde_json::json!({
                "ui": {"resourceUri": "apps:ui://clock/app.html", "visibility": ["model", "app"]},
                "ui/resourceUri": "apps:ui://clock/app.html",
                "openai/outputTemplate": "apps:ui://clock/app.html",
                "openai/widgetAccessible": true,
                "other": {"resourceUri": "ui://not/a/reference"},
            })
        );
        let mut alone = tool.clone();
        alone.meta = Some(MetaObject(original.as_object().unwrap().clone()));
        super::tool(&Naming { prefix: None }, &mut alone);
        assert_eq!(serde_json::Value::Object(alone.meta.unwrap().0), original);
    }

    #[test]
    fn a_reference_of_another_type_is_left_as_it_is() {
        let mut meta_object = MetaObject(
            serde_json::json!({"ui": "ui://flat", "openai/outputTemplate": 7})
                .as_object()
                .unwrap()
                .clone(),
        );
        meta(&prefixed(), Some(&mut meta_object));
        assert_eq!(
            serde_json::Value::Object(meta_object.0),
            serde_json::json!({"ui": "ui://flat", "openai/outputTemplate": 7})
        );
    }
}
