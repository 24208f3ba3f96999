//! The access-log line: whatever the request's path, query, user agent, tool name and forwarded client,
//! the JSON line is one line of valid JSON that says them back exactly, and the text line is
//! one line.
#![no_main]

use std::time::{Duration, SystemTime};

use latchkey::clients::Client;
use latchkey::telemetry::LogFormat;
use latchkey::telemetry::access_log::Line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let uri = parts.next().unwrap_or_default();
    let user_agent = parts.next();
    let forwarded = parts.next();
    // Paths and queries come from a parsed URI, as in the server.
    let Ok(uri) = http::Uri::try_from(uri) else {
        return;
    };
    let client = forwarded.map(|f| Client::Forwarded(f.to_owned()));
    let line = Line {
        method: "POST",
        path: uri.path(),
        query: uri.query(),
        status: 200,
        duration_us: u64::from(data.len() as u32) * 977,
        client: client.as_ref(),
        user_agent,
        auth: "bearer",
        // A tool's name is the client's choice, as the user agent is.
        mcp_method: Some("tools/call"),
        mcp_target: user_agent.map(|name| ("tool", name)),
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(data.first().copied().unwrap_or(0)) << 24);
    let json = line.render(now, LogFormat::Json, false);
    assert_eq!(json.iter().filter(|b| **b == b'\n').count(), 1);
    let value: serde_json::Value = serde_json::from_slice(&json).expect("a JSON line");
    assert_eq!(value["path"], uri.path());
    if let Some(query) = uri.query() {
        assert_eq!(value["query"], query);
    }
    if let Some(user_agent) = user_agent {
        assert_eq!(value["user_agent"], user_agent);
        assert_eq!(value["tool"], user_agent);
    }
    if let Some(forwarded) = forwarded {
        assert_eq!(value["client"], forwarded);
    }
    for ansi in [false, true] {
        let text = line.render(now, LogFormat::Text, ansi);
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 1, "{:?}", String::from_utf8_lossy(&text));
        assert!(!text[..text.len() - 1].contains(&b'\r'));
    }
});
