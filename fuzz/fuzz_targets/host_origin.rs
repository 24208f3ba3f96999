//! The Host/Origin guard: parsing `--allowed-host` and `--allowed-origin` patterns and
//! checking a request's `Host` and `Origin` against them never panics, a host pattern that
//! an ACME domain is accepted makes a host and an origin pattern, and a refused request says why.
#![no_main]

use latchkey::host_origin::{HostOriginGuard, HostPattern, OriginPattern};
use latchkey::tls::args::parse_domain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let host_pattern = parts.next().unwrap_or_default();
    let origin_pattern = parts.next().unwrap_or_default();
    let hosts: Vec<HostPattern> = host_pattern.parse().into_iter().collect();
    let origins: Vec<OriginPattern> = origin_pattern.parse().into_iter().collect();
    // What `--acme-domain` accepts, the guard must take as a host and an origin (it
    // `expect`s both at start).
    if let Ok(domain) = parse_domain(host_pattern) {
        domain.parse::<HostPattern>().expect("an ACME domain is a host");
        format!("https://{domain}")
            .parse::<OriginPattern>()
            .expect("an ACME domain makes an origin");
    }
    for guard in [
        HostOriginGuard::new(&hosts, &origins, None, &[]),
        HostOriginGuard::new(&[], &[], None, &[]),
    ] {
        let mut headers = http::HeaderMap::new();
        for (i, value) in parts.clone().enumerate() {
            let Ok(value) = http::HeaderValue::from_str(value) else {
                continue;
            };
            let name = if i == 0 { "host" } else { "origin" };
            headers.append(name, value);
        }
        let uri = http::Uri::from_static("/mcp");
        match guard.check(&headers, &uri) {
            Ok(_) => {}
            Err(refusal) => assert!(!refusal.to_string().is_empty()),
        }
    }
});
