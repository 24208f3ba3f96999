//! `latchkey url`: print the connector URL, key included, for pasting into ChatGPT.

use secrecy::ExposeSecret;

use crate::cli::UrlArgs;
use crate::listen::ListenAddr;

pub fn run(args: UrlArgs) -> anyhow::Result<()> {
    let sources = args.keys.sources()?;
    let first_tcp = args.listen.listen.iter().find_map(|l| match l {
        ListenAddr::Tcp(addr) => Some(*addr),
        ListenAddr::Unix(_) => None,
    });
    let reach = crate::url::Reach {
        public_url: args.public_url.public_url.as_ref(),
        domain: args.acme.acme_domains.first().map(String::as_str),
        first_tcp,
    };
    let url = crate::url::connector_url(reach, &args.listen.base_path, &sources)?;
    println!("{}", url.expose_secret());
    Ok(())
}
