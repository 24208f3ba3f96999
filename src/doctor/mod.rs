//! `latchkey doctor URL`: from the outside in, what a client meets before its requests reach
//! latchkey — the name, the port, the certificate, the MCP endpoint with the key and without,
//! the well-known paths, each client's User-Agent, and the time each takes against what the
//! client waits — one line a check, with the fix for each failure.
//!
//! - `target`: the URL taken apart (where its key is), and what each client accepts;
//! - `network`: `--resolve`, DNS and TCP;
//! - `certificate`: the TLS handshake, and why a chain is refused;
//! - `probe`: how the HTTP checks send and read;
//! - `discovery`: the well-known documents and OAuth's metadata;
//! - `registration`: `--register`'s trial registration, removed again;
//! - `endpoint`: the MCP endpoint, with the key and without, and each client's User-Agent;
//! - `report`: the checks, as text or JSON.
//!
//! Nothing it prints holds the key: the URL is shown with `<key>` in its place, and errors
//! are shown without their URL.

mod certificate;
mod discovery;
mod endpoint;
mod network;
mod probe;
mod registration;
mod report;
mod target;

pub use network::Resolve;
pub use report::{Check, Report, Status};
pub use target::{Client, Target, TargetError};

use rustls::pki_types::CertificateDer;

/// What to examine, and how to reach it.
pub struct Options {
    pub target: Target,
    pub client: Client,
    pub resolve: Vec<Resolve>,
    /// Trusted besides the platform's roots (`--ca-file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Try a registration with the clients' redirect URIs (`--register`).
    pub register: bool,
}

/// Every check of `options.target` for `options.client`; later ones are skipped once the
/// server cannot be reached.
pub async fn examine(options: &Options) -> anyhow::Result<Report> {
    tokio::time::timeout(DEADLINE, every_check(options))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the checks took longer than {} s: the server is too slow to answer for any client",
                DEADLINE.as_secs()
            )
        })?
}

/// The most all the checks may take (each request alone is given 20 s).
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

async fn every_check(options: &Options) -> anyhow::Result<Report> {
    let Options { target, client, .. } = options;
    let mut checks = vec![network::port(target, *client)];
    let (dns, addrs) = network::addresses(target, &options.resolve).await;
    checks.push(dns);
    if addrs.is_empty() {
        return Ok(finish(options, checks));
    }
    let trusted = network::trusted_roots(&options.extra_roots);
    let (tcp, stream) = network::connect(&addrs).await;
    checks.push(tcp);
    let Some(stream) = stream else {
        return Ok(finish(options, checks));
    };
    if target.https() {
        let tls = certificate::handshake(target, stream, &trusted).await;
        let accepted = tls.iter().all(|c| c.status != Status::Fail);
        checks.extend(tls);
        if !accepted {
            checks.push(Check::skip(
                "mcp",
                "not tried: no client goes past a certificate it does not trust",
            ));
            return Ok(finish(options, checks));
        }
    } else {
        drop(stream);
    }
    let probe = probe::Probe::new(target, &options.resolve, &trusted)?;
    checks.extend(http_checks(&probe, target, (*client, options.register)).await);
    Ok(finish(options, checks))
}

/// Every HTTP check, in the order a client meets them.
async fn http_checks(
    probe: &probe::Probe,
    target: &Target,
    (client, register): (Client, bool),
) -> Vec<Check> {
    let mut checks = Vec::new();
    let (discovery, oauth) =
        discovery::well_known(probe, target, (client, register), &mut checks).await;
    checks.push(endpoint::without_key(probe, target).await);
    let (keyed, accepted) = endpoint::with_key(probe, target, client, oauth).await;
    checks.extend(keyed);
    // A key refused once is not sent again: each refusal counts toward the lockout.
    checks.extend(endpoint::user_agents(probe, target, client, accepted).await);
    if let Some(ms) = discovery {
        let budget = client.connect_budget();
        checks.push(probe::timed(
            "discovery",
            "the well-known fetches",
            ms,
            budget,
        ));
    }
    checks
}

fn finish(options: &Options, checks: Vec<Check>) -> Report {
    Report::new(options.target.shown(), options.client.name(), checks)
}
