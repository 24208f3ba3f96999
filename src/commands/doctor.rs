//! `latchkey doctor URL`: the checks of `doctor`, printed (or as JSON), and an exit status
//! that is 0 only when every check the client needs passed.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::cli::DoctorArgs;
use crate::doctor::{self, Options, Target};

/// Why the doctor ends non-zero: the report said what.
#[derive(Debug, thiserror::Error)]
#[error("{failed} check(s) failed")]
pub struct Failed {
    failed: usize,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
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
    };
    let report = doctor::examine(&options).await?;
    let out = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.text(std::io::stdout().is_terminal())
    };
    // Nothing in a report is built from the key, but a server may echo it back.
    print!("{}", options.target.scrub(&out));
    let failed = report.failed();
    if failed > 0 {
        return Err(Failed { failed }.into());
    }
    Ok(())
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
