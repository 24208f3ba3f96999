//! Who a request comes from, and whether it may come at all (`--allowed-client`).
//!
//! On TCP the client is the peer. On the Unix socket only the local proxy can connect, so
//! the client is the address that proxy appended last to `X-Forwarded-For`; on TCP that
//! header is anyone's to write and is ignored.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::listen::Peer;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A request's client, as far as limits and lockouts are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAddr {
    Ip(IpAddr),
    /// A process on this machine on the Unix socket, with no proxy's header.
    Local,
}

impl ClientAddr {
    pub fn of(peer: Option<Peer>, headers: &HeaderMap) -> Self {
        match peer {
            Some(Peer::Tcp(addr)) => ClientAddr::Ip(addr.ip().to_canonical()),
            Some(Peer::Unix) | None => match forwarded_for(headers).map(str::parse::<IpAddr>) {
                Some(Ok(ip)) => ClientAddr::Ip(ip.to_canonical()),
                _ => ClientAddr::Local,
            },
        }
    }
}

impl ClientAddr {
    /// The client as a bound counts it: an IPv6 address by its /64, which is what one host
    /// usually gets.
    pub fn network(self) -> Self {
        match self {
            ClientAddr::Ip(IpAddr::V6(ip)) => {
                ClientAddr::Ip(IpAddr::V6((ip.to_bits() & !u128::from(u64::MAX)).into()))
            }
            other => other,
        }
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAddr::Ip(ip) => ip.fmt(f),
            ClientAddr::Local => f.write_str("local"),
        }
    }
}

/// Who sent a request, as the access log and the console show it: the TCP peer, or on the
/// Unix socket (where only the local proxy can connect) the address the proxy appended last
/// to `X-Forwarded-For`. Compared as it is, never formatted to be compared (the console
/// looks a client up on every request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Client {
    Ip(IpAddr),
    Forwarded(String),
}

impl Client {
    /// The client the gate found (`address`), as the log shows it: what the proxy sent is
    /// shown as sent when it is no address, where the bounds count it as local.
    pub fn of(peer: Option<Peer>, address: ClientAddr, headers: &HeaderMap) -> Option<Self> {
        match (peer?, address) {
            (_, ClientAddr::Ip(ip)) => Some(Client::Ip(ip)),
            (Peer::Tcp(addr), ClientAddr::Local) => Some(Client::Ip(addr.ip())),
            (Peer::Unix, ClientAddr::Local) => {
                forwarded_for(headers).map(|v| Client::Forwarded(v.to_owned()))
            }
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Ip(ip) => ip.fmt(f),
            Client::Forwarded(address) => f.write_str(address),
        }
    }
}

/// The last `X-Forwarded-For` entry: the one the proxy in front of latchkey appended (a
/// client may send the header itself; its entries come first).
pub fn forwarded_for(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `--allowed-client`: the networks requests may come from (all, when none is given).
#[derive(Clone, Debug, Default)]
pub struct AllowedClients(Vec<IpNet>);

impl AllowedClients {
    pub fn new(networks: &[IpNet]) -> Self {
        AllowedClients(networks.iter().map(IpNet::trunc).collect())
    }

    /// A local process on the Unix socket is on this machine, and always allowed.
    pub fn allows(&self, client: ClientAddr) -> bool {
        match client {
            _ if self.0.is_empty() => true,
            ClientAddr::Local => true,
            ClientAddr::Ip(ip) => self.0.iter().any(|net| net.contains(&ip)),
        }
    }
}

/// Parses `--allowed-client`: a network (`203.0.113.0/24`, `2001:db8::/32`) or one address.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => Err("expected an address or a network in CIDR form, e.g. 203.0.113.0/24".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_counts_only_on_the_unix_socket_and_only_its_last_entry() {
        let spoofed = headers(&["6.6.6.6", "10.0.0.1, 203.0.113.9"]);
        let tcp = Peer::Tcp("192.0.2.1:5000".parse().unwrap());
        assert_eq!(ClientAddr::of(Some(tcp), &spoofed).to_string(), "192.0.2.1");
        assert_eq!(
            ClientAddr::of(Some(Peer::Unix), &spoofed).to_string(),
            "203.0.113.9"
        );
        assert_eq!(
            ClientAddr::of(Some(Peer::Unix), &headers(&["junk"])),
            ClientAddr::Local
        );
        assert_eq!(
            ClientAddr::of(Some(Peer::Unix), &HeaderMap::new()),
            ClientAddr::Local
        );
        let mapped = Peer::Tcp("[::ffff:192.0.2.7]:1".parse().unwrap());
        assert_eq!(
            ClientAddr::of(Some(mapped), &spoofed).to_string(),
            "192.0.2.7"
        );
    }

    #[test]
    fn allowed_clients_match_networks() {
        let nets = ["203.0.113.0/24", "2001:db8::1/32"].map(|s| parse_network(s).unwrap());
        let allowed = AllowedClients::new(&nets);
        let ip = |s: &str| ClientAddr::Ip(s.parse().unwrap());
        assert!(allowed.allows(ip("203.0.113.200")));
        assert!(allowed.allows(ip("2001:db8:ffff::9")));
        assert!(!allowed.allows(ip("203.0.114.1")));
        assert!(allowed.allows(ClientAddr::Local));
        assert!(AllowedClients::default().allows(ip("198.51.100.1")));
        assert_eq!(
            parse_network("192.0.2.5").unwrap().to_string(),
            "192.0.2.5/32"
        );
        assert!(parse_network("192.0.2.0/33").is_err());
    }
}
