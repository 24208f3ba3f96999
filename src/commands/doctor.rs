//! `latchkey doctor URL`: the checks of `doctor`, printed (or as JSON), and an exit status
//! that is 0 only when every check the client needs passed.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::cli::DoctorArgs;
use crate::doctor::{self, Options, Target};

/// Why the doctor ends non-zero: the report said what (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("{failed} check(s) failed")]
pub struct Failed {
    failed: usize,
}

/// The doctor could not examine the URL at all — it could not be read, a file named could
/// not be, or the server took too long for any check — which exits 2, not 1: a script tells
/// "the connector is broken" from "the doctor could not tell".
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Unexamined(anyhow::Error);

/// The exit status `error` ends `latchkey` with: 2 when the doctor could not examine, 1 for
/// anything else.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    if error.is::<Unexamined>() { 2 } else { 1 }
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let json = args.json;
    let (target, report) = match examine(args).await {
        Ok(examined) => examined,
        Err(error) => {
            if json {
                // The same document's shape, so that a script reads one kind of answer.
                let document = serde_json::json!({"ok": false, "error": format!("{error:#}")});
                println!("{document:#}");
            }
            return Err(Unexamined(error).into());
        }
    };
    let out = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.text(std::io::stdout().is_terminal())
    };
    // Nothing in a report is built from the key, but a server may echo it back.
    print!("{}", target.scrub(&out));
    let failed = report.failed();
    if failed > 0 {
        return Err(Failed { failed }.into());
    }
    Ok(())
}

/// The URL and files read, and every check made.
async fn examine(args: DoctorArgs) -> anyhow::Result<(Target, doctor::Report)> {
    let target =
        Target::parse(args.url.expose_secret(), header_key(&args)?).context("latchkey doctor")?;
    let extra_roots = match &args.ca_file {
        Some(path) => crate::tls::crypto::read_certificates(path, "--ca-file")?,
        None => Vec::new(),
    };
    let options = Options {
        target,
        client: args.client,
        resolve: args.resolve,
        extra_roots,
        register: args.register,
    };
    let report = doctor::examine(&options).await?;
    Ok((options.target, report))
}

/// The key for the header forms: `--key`, or the first of `--key-file`.
fn header_key(args: &DoctorArgs) -> anyhow::Result<Option<SecretString>> {
    if let Some(key) = &args.key {
        return Ok(Some(key.clone()));
    }
    let Some(path) = &args.key_file else {
        return Ok(None);
    };
    let first = crate::keys::read_key_file(path)?
        .into_iter()
        .find_map(|configured| match configured.entry {
            crate::keys::KeyEntry::Plain(key) => Some(key),
            crate::keys::KeyEntry::Digest(_) => None,
        })
        .with_context(|| {
            format!(
                "--key-file {}: no plain key in it (a sha256: digest cannot be sent)",
                path.display()
            )
        })?;
    Ok(Some(first))
}
