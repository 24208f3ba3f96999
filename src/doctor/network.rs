//! What a client meets before HTTP and TLS: the name, the port, the connection. Names are looked up
//! through `--resolve HOST:PORT:ADDR` first (as curl's option), so that tests and a person
//! checking a server before its DNS is set need no resolver.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;

use super::report::Check;
use super::target::{Client, Target};

/// How long a lookup, a connection or a handshake may take before it counts as failed.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// `--resolve HOST:PORT:ADDR`: `HOST` on `PORT` is at `ADDR`, whatever DNS says.
#[derive(Clone, Debug)]
pub struct Resolve {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

impl std::str::FromStr for Resolve {
    type Err = String;

    fn from_str(given: &str) -> Result<Self, String> {
        let mut parts = given.splitn(3, ':');
        let (Some(host), Some(port), Some(addr)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected HOST:PORT:ADDR, e.g. example.com:443:127.0.0.1".into());
        };
        let port = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number"))?;
        let addr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        Ok(Resolve {
            host: host.to_ascii_lowercase(),
            port,
            addr,
        })
    }
}

/// The scheme and port the client is pointed at, and whether it goes there.
pub fn port(target: &Target, client: Client) -> Check {
    let (scheme, port) = (if target.https() { "https" } else { "http" }, target.port());
    let seen = format!("{scheme} on port {port}");
    if !target.https() && !client.accepts_http() {
        return Check::fail(
            "scheme",
            seen,
            format!(
                "{} connects over https only: serve TLS (--tls-listen with --acme-domain, or the bundle's Apache) and use the https:// URL",
                client.name()
            ),
        );
    }
    if !client.accepts_port(port, target.https()) {
        return Check::fail(
            "port",
            seen,
            "Claude connects to port 443 only: serve https on 443 (or forward 443 to latchkey)",
        );
    }
    Check::pass("port", seen)
}

/// The addresses `target`'s host has: `--resolve`'s, an address literal's, or DNS's.
pub async fn addresses(target: &Target, overrides: &[Resolve]) -> (Check, Vec<SocketAddr>) {
    let (host, port) = (target.host(), target.port());
    let given: Vec<SocketAddr> = overrides
        .iter()
        .filter(|r| r.host == host.to_ascii_lowercase() && r.port == port)
        .map(|r| SocketAddr::new(r.addr, port))
        .collect();
    if !given.is_empty() {
        let seen = format!("{host} → {} (from --resolve)", list(&given));
        return (Check::pass("dns", seen), given);
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        let addr = SocketAddr::new(ip, port);
        return (
            Check::pass("dns", format!("{host} is an address")),
            vec![addr],
        );
    }
    let looked_up = tokio::time::timeout(PATIENCE, tokio::net::lookup_host((host, port))).await;
    let found: Vec<SocketAddr> = match looked_up {
        Ok(Ok(found)) => found.collect(),
        Ok(Err(_)) => Vec::new(),
        Err(_) => {
            let check = Check::fail(
                "dns",
                format!("looking up {host} took over {} s", PATIENCE.as_secs()),
                "check this machine's resolver (/etc/resolv.conf), or give the address with --resolve",
            );
            return (check, Vec::new());
        }
    };
    if found.is_empty() {
        let check = Check::fail(
            "dns",
            format!("{host} has no address"),
            format!("add an A (and AAAA) record for {host} pointing at the server"),
        );
        return (check, found);
    }
    let v4 = found.iter().filter(|a| a.is_ipv4()).count();
    let seen = format!(
        "{host} → {} ({v4} A, {} AAAA)",
        list(&found),
        found.len() - v4
    );
    (Check::pass("dns", seen), found)
}

fn list(addrs: &[SocketAddr]) -> String {
    let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    ips.join(", ")
}

/// A connection to the first of `addrs` that takes one.
pub async fn connect(addrs: &[SocketAddr]) -> (Check, Option<TcpStream>) {
    let started = Instant::now();
    // At most four: a name with many dead addresses would take 10 s each.
    for addr in addrs.iter().take(4) {
        if let Ok(Ok(stream)) = tokio::time::timeout(PATIENCE, TcpStream::connect(addr)).await {
            let check = Check::pass("tcp", format!("{addr} accepts connections"));
            return (check.took(super::report::ms_since(started)), Some(stream));
        }
    }
    let check = Check::fail(
        "tcp",
        format!("nothing accepted a connection at {}", list(addrs)),
        "open the port in the firewall, and check that latchkey (or the proxy in front of it) listens on it",
    );
    (check, None)
}

/// What the checks trust: the platform's roots (read once a run) and `extra` (`--ca-file`).
pub fn trusted_roots(extra: &[CertificateDer<'static>]) -> Vec<CertificateDer<'static>> {
    let mut roots = rustls_native_certs::load_native_certs().certs;
    roots.extend_from_slice(extra);
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_reads_as_curls() {
        let r: Resolve = "Example.com:443:127.0.0.1".parse().unwrap();
        assert_eq!((r.host.as_str(), r.port), ("example.com", 443));
        let v6: Resolve = "h:8443:[::1]".parse().unwrap();
        assert_eq!(v6.addr, IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]));
        for bad in ["h:443", "h:x:127.0.0.1", "h:443:nowhere"] {
            assert!(bad.parse::<Resolve>().is_err(), "{bad}");
        }
    }
}
