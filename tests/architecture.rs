//! ARCHITECTURE.md's first invariant, kept true: dependencies between latchkey's modules
//! point one way. Every module's non-test code is read for the paths it names (`crate::…`,
//! `super::…`, `self::…` and its own children), and the graph they make must have no cycle —
//! except the one rmcp's macros require between the MCP handler and its tools.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The handler/tool split: `#[tool_router]` tools name the handler, and it names their router.
const ALLOWED: [(&str, &str); 2] = [("tools", "mcp::handler"), ("tools::hello", "mcp::handler")];

/// Module path (`tls::acme`; `` for the crate root) → its source file.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, found: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
                let relative = path.strip_prefix(&src).unwrap().with_extension("");
                let mut segments: Vec<String> = relative
                    .iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect();
                if ["mod", "lib", "main"].contains(&segments.last().unwrap().as_str()) {
                    segments.pop();
                }
                found.insert(segments.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut found = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    found
}

fn join(module: &str, rest: &[&str]) -> Vec<String> {
    module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .chain(rest.iter().map(|s| s.to_string()))
        .collect()
}

/// The longest known module that `segments` starts with.
fn resolve(segments: &[String], modules: &BTreeMap<String, String>) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| modules.contains_key(candidate))
}

/// The modules that `module`'s code (tests and comments left out) names.
fn dependencies(module: &str, modules: &BTreeMap<String, String>) -> BTreeSet<String> {
    let source = &modules[module];
    let code = source.split("#[cfg(test)]").next().unwrap();
    let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
    let mut found = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        assert!(
            !line.contains("crate::{"),
            "{module}: grouped `use crate::{{…}}` is not read by this test: {line}"
        );
        let runs = line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        for run in runs.filter(|r| r.contains("::")) {
            let segments: Vec<&str> = run.split("::").collect();
            let target = match segments[0] {
                "crate" => segments[1..].iter().map(|s| s.to_string()).collect(),
                "super" => join(parent, &segments[1..]),
                "self" => join(module, &segments[1..]),
                // A child named by its own name (`acme::start` in `tls`).
                _ if modules.contains_key(&join(module, &segments[..1]).join("::")) => {
                    join(module, &segments)
                }
                _ => continue,
            };
            if let Some(target) = resolve(&target, modules)
                && target != module
            {
                found.insert(target);
            }
        }
    }
    found
}

#[test]
fn module_dependencies_point_one_way() {
    let modules = modules();
    assert!(modules.contains_key("tls::acme") && modules.contains_key("gate"));
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .keys()
        .map(|m| {
            let mut deps = dependencies(m, &modules);
            deps.retain(|d| !ALLOWED.contains(&(m.as_str(), d.as_str())));
            (m.clone(), deps)
        })
        .collect();
    // The reader works: known edges are seen.
    assert!(graph["gate"].contains("auth"), "{:?}", graph["gate"]);
    assert!(graph["tls"].contains("tls::acme"), "{:?}", graph["tls"]);
    assert!(graph["tls::acme"].contains("tls::args"));

    // Depth-first search for a cycle, reported as the path that closes it.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(start) = path.iter().position(|p| p == node) {
            panic!(
                "modules import each other: {} -> {node}",
                path[start..].join(" -> ")
            );
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in &graph[node] {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}

/// Where cargo put rmcp's source: the `ServerHandler` trait that `mcp::span::Traced` must
/// forward whole.
fn rmcp_server_handler_source() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let metadata = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(metadata.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "rmcp")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("rmcp is a dependency")
        .to_owned();
    let file = Path::new(&manifest).with_file_name("src/handler/server.rs");
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A `ServerHandler` method that `Traced` does not name would answer with rmcp's default
/// (method not found, or nothing) whatever the inner handler does: each is named there.
#[test]
fn the_traced_handler_forwards_every_server_handler_method() {
    let rmcp = rmcp_server_handler_source();
    let start = rmcp
        .find("macro_rules! server_handler_methods")
        .expect("rmcp declares its ServerHandler methods in one macro");
    let block = &rmcp[start..];
    let block = &block[..block.find("\n}\n").unwrap()];
    let methods: Vec<&str> = block
        .lines()
        .filter_map(|line| line.strip_prefix("        fn "))
        .filter_map(|rest| rest.split(['(', '<']).next())
        .collect();
    assert!(methods.len() >= 30, "found only {methods:?}");
    let traced =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mcp/span.rs"))
            .unwrap();
    let traced = &traced[..traced.find("#[cfg(test)]").unwrap()];
    let missing: Vec<&&str> = methods
        .iter()
        .filter(|m| {
            !traced.contains(&format!("fn {m}(")) && !traced.contains(&format!("        {m}("))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "rmcp's ServerHandler has methods mcp::span::Traced does not forward: {missing:?}"
    );
}
