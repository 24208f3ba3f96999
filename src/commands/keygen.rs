//! `latchkey keygen`: a new key, or the `sha256:` form of one read on stdin.

use std::io::Read;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};

use crate::cli::KeygenArgs;
use crate::keys::{self, KeyEntry};

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    if !args.digest {
        println!("{}", keys::generate()?.expose_secret());
        return Ok(());
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the key from stdin")?;
    let input = SecretString::from(input);
    let entry = keys::parse_entry(input.expose_secret()).context("the key on stdin is refused")?;
    match entry {
        KeyEntry::Plain(_) => println!("{}", entry.digest().to_config_form()),
        KeyEntry::Digest(_) => anyhow::bail!("stdin holds a sha256: digest already, not a key"),
    }
    Ok(())
}
