//! `latchkey oauth list | revoke | passphrase`: the OAuth store seen and changed from the
//! command line (see `oauth::store` for how a running server learns of a revocation).

use std::io::Read;

use anyhow::Context as _;
use secrecy::SecretString;

use crate::cli::{OAuthCommand, OAuthStoreArgs};
use crate::configuration::state_dir_or_default;
use crate::oauth::passphrase;
use crate::oauth::store::{Store, now};

pub fn run(command: OAuthCommand) -> anyhow::Result<()> {
    match command {
        OAuthCommand::List(args) => list(&args),
        OAuthCommand::Revoke(args) => {
            let mut store = open(&args.store)?;
            let (clients, grants) = match &args.client {
                Some(id) => store.change(|c| c.remove_client(id))?,
                None => store.change(|c| c.remove_all())?,
            };
            println!("revoked {grants} grant(s); removed {clients} registration(s)");
            if let Some(id) = &args.client
                && clients == 0
                && grants == 0
            {
                anyhow::bail!(
                    "no client {id:?} in {} (see `latchkey oauth list`)",
                    store.path().display()
                );
            }
            Ok(())
        }
        OAuthCommand::Passphrase => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the passphrase from stdin")?;
            let phrase = SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned());
            println!("{}", passphrase::hash(&phrase)?);
            Ok(())
        }
    }
}

fn open(args: &OAuthStoreArgs) -> anyhow::Result<Store> {
    Store::open(&state_dir_or_default(args.state_dir.as_deref())?)
}

fn ago(then: u64, now: u64) -> String {
    let secs = now.saturating_sub(then);
    match secs {
        0..120 => format!("{secs}s ago"),
        120..7200 => format!("{}m ago", secs / 60),
        7200..172_800 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn list(args: &OAuthStoreArgs) -> anyhow::Result<()> {
    let store = open(args)?;
    let now = now();
    println!("grants ({}):", store.grants().len());
    for g in store.grants() {
        let state = if g.access_expires > now {
            format!(
                "access token expires in {}h",
                (g.access_expires - now) / 3600
            )
        } else {
            "access token expired".to_owned()
        };
        println!(
            "  {}  client {}  {:?}  made {}  refreshed {}  {state}",
            g.id,
            g.client_id,
            g.client_name.as_deref().unwrap_or("unnamed"),
            ago(g.created_at, now),
            ago(g.refreshed_at, now),
        );
    }
    println!("registered clients ({}):", store.clients().len());
    for c in store.clients() {
        println!(
            "  {}  {:?}  auth {}  registered {}  redirect {}",
            c.id,
            c.name.as_deref().unwrap_or("unnamed"),
            c.auth_method,
            ago(c.registered_at, now),
            c.redirect_uris.join(" "),
        );
    }
    Ok(())
}
