//! The README's configuration tables say what `--help` says: every flag and variable of
//! every command is documented, and nothing documented is missing from the binary; and what
//! the README's steps create in the checkout stays out of git.

mod common;

use std::collections::BTreeSet;

fn help(command: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = common::command(dir.path())
        .args(command.split(' '))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{command} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// `--flag` and `LATCHKEY_…` words in `text`.
fn names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |start: usize, ok: fn(u8) -> bool| {
        let end = (start..bytes.len())
            .find(|&i| !ok(bytes[i]))
            .unwrap_or(bytes.len());
        text[start..end].trim_end_matches('-').to_owned()
    };
    for (i, _) in text.match_indices("--") {
        let preceded_ok = i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'-';
        if preceded_ok {
            let name = word(i + 2, |b| b.is_ascii_lowercase() || b == b'-');
            if !name.is_empty() && name != "help" && name != "version" {
                found.insert(format!("--{name}"));
            }
        }
    }
    for (i, _) in text.match_indices("LATCHKEY_") {
        found.insert(word(i, |b| b.is_ascii_uppercase() || b == b'_'));
    }
    found
}

#[test]
fn readme_documents_every_flag_and_variable() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Configuration section");
    let mut in_help = BTreeSet::new();
    for command in [
        "serve",
        "keygen",
        "healthcheck",
        "url",
        "watch",
        "doctor",
        "oauth list",
        "oauth revoke",
    ] {
        in_help.extend(names(&help(command)));
    }
    assert!(
        in_help.contains("--listen") && in_help.contains("LATCHKEY_API_KEY_FILE"),
        "{in_help:?}"
    );
    let in_readme = names(section);
    let undocumented: Vec<_> = in_help.difference(&in_readme).collect();
    assert!(
        undocumented.is_empty(),
        "missing from the README's Configuration: {undocumented:?}"
    );
    let stale: Vec<_> = in_readme.difference(&in_help).collect();
    assert!(
        stale.is_empty(),
        "in the README but not in --help: {stale:?}"
    );
}

/// What the README's steps create in the checkout (`.env`, `secrets/api_key`) is ignored by
/// git, so a key is never committed by accident; `.env.example` is not.
#[test]
fn the_checkout_ignores_what_the_deployment_steps_create() {
    let root = env!("CARGO_MANIFEST_DIR");
    let ignored = |path: &str| {
        std::process::Command::new("git")
            .args(["check-ignore", "-q", "--no-index", path])
            .current_dir(root)
            .status()
            .unwrap()
            .success()
    };
    for path in [".env", "secrets/api_key"] {
        assert!(ignored(path), "{path} is not in .gitignore");
    }
    assert!(!ignored(".env.example"));
}

/// `latchkey` with no command serves, and the usage line says so (it said
/// `latchkey <COMMAND>`, as if a command were required).
#[test]
fn the_usage_line_says_no_command_means_serve() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::command(dir.path()).arg("--help").output().unwrap();
    let usage = String::from_utf8(out.stdout).unwrap();
    assert!(
        usage.contains("Usage: latchkey [serve] [OPTIONS]"),
        "{usage}"
    );
}
