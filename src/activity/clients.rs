//! The clients seen, for the console's clients view: each by its User-Agent (what ChatGPT,
//! Claude or the Inspector send on every request, discovery probes included), named by what
//! it says of itself in `initialize` when it does, with how it authenticated, when it was
//! first and last seen, and its connection timeline — the discovery probes, the 401, the
//! metadata, registration, authorize, token, `initialize` and the first `tools/list`, each
//! with its status and time, flagged where a step took longer than clients are known to wait.
//!
//! Bounded whatever is sent: at most [`MAX_CLIENTS`] clients, each with its last [`STEPS`]
//! steps of at most [`MAX_TEXT`] bytes a field. When the table is full, a client that never
//! authenticated makes room first, so strangers' made-up User-Agents push out strangers.
//! A request without a User-Agent (SDKs' OAuth helpers send none where their MCP requests
//! do) is taken as the last client's from the same address within a minute. The console's
//! own pages are the owner's browser, not a client, and are left out.
//! A request accepted with a key and answered, other than `initialize` and `tools/list`, is
//! counted, not kept as a step (the calls view shows it).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

pub use super::bounded::MAX_TEXT;
use super::bounded::{cut, now_ms};
use crate::clients::Client;
use crate::telemetry::observe::Exchange;

pub const MAX_CLIENTS: usize = 64;
pub const STEPS: usize = 40;
/// Key labels kept a client.
pub const KEYS: usize = 8;

/// What Claude waits for discovery, registration, a token and the first `initialize`
/// (../shared/notes/field-2026-12.md): about 10 s.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);
/// What ChatGPT and Claude wait for a tool call: about 60 s.
const CALL_BUDGET: Duration = Duration::from_secs(60);

/// One request of a client's connection.
#[derive(Clone, Debug)]
pub struct Step {
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    /// The JSON-RPC method, for an MCP request.
    pub mcp_method: Option<String>,
    pub status: u16,
    /// The error body's `error`, when there was one.
    pub error: Option<String>,
    pub duration_ms: f64,
    /// Where the step took longer than clients wait.
    pub too_slow: Option<&'static str>,
}

/// One client seen.
#[derive(Clone, Debug)]
pub struct ClientRow {
    /// Its User-Agent, or `(none)`.
    pub agent: String,
    /// What it said of itself (`clientInfo`), when it did.
    pub name: Option<String>,
    pub first_ms: u64,
    pub last_ms: u64,
    pub requests: u64,
    /// How its keys came (`bearer`, `query`, `path`, `oauth`, …), each once.
    pub auth: Vec<&'static str>,
    /// The labels of the keys it used (`--api-key-file`), each once, at most [`KEYS`].
    pub keys: Vec<String>,
    /// Where its last request that was not routine came from.
    pub address: Option<String>,
    pub steps: VecDeque<Step>,
}

#[derive(Debug, Default)]
pub struct Clients {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    rows: Rows,
    /// The last client seen with a User-Agent: its address, agent and when.
    last: Option<(Client, String, u64)>,
}

/// The clients by User-Agent. Hashed with foldhash, not SipHash: every request looks its
/// client up (SipHash cost about 200 instructions of it), and at [`MAX_CLIENTS`] rows a
/// flood of colliding names has nothing to slow down.
type Rows = HashMap<String, ClientRow, foldhash::fast::RandomState>;

/// The row of requests without a User-Agent and no client to take them as.
const NONE: &str = "(none)";

/// How long a request without a User-Agent is taken as the last client's from its address
/// (SDKs' OAuth helpers send none where their MCP requests send one).
const SAME_CLIENT: u64 = 60_000;

/// Whether the step is one clients are known to wait only so long for, and it took longer.
fn too_slow(exchange: &Exchange<'_>) -> Option<&'static str> {
    // The shorter budget first: nearly every request is within it, and its path not read.
    if exchange.duration <= CONNECT_BUDGET {
        return None;
    }
    let connecting = exchange.path.contains("/.well-known/")
        || exchange.path.ends_with("/token")
        || exchange.path.ends_with("/register")
        || exchange.mcp_method == Some("initialize");
    if connecting && exchange.duration > CONNECT_BUDGET {
        return Some("longer than the ~10 s Claude waits while connecting");
    }
    if exchange.mcp_method == Some("tools/call") && exchange.duration > CALL_BUDGET {
        return Some("longer than the ~60 s ChatGPT and Claude wait for a tool call");
    }
    None
}

impl Clients {
    /// The clients, the one last seen first.
    pub fn recent(&self) -> Vec<ClientRow> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = table.rows.values().cloned().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.last_ms));
        rows
    }

    /// Counts the request on its client's row, and keeps it as a step unless it is
    /// routine ([`is_routine`]). The console's own pages are the owner's browser, not a
    /// client. A routine request is one lookup under the lock, nothing formatted or copied:
    /// every request comes here.
    pub fn finished(&self, exchange: &Exchange<'_>) {
        // (An MCP request is none of the console's, and its path not searched.)
        if exchange.mcp_method.is_none()
            && (exchange.path.contains("/console/") || exchange.path.ends_with("/console"))
        {
            return;
        }
        let now = now_ms();
        let mut guard = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let table = &mut *guard;
        let agent = agent_of(&table.last, exchange, now);
        let routine = is_routine(exchange);
        if routine && let Some(row) = table.rows.get_mut(agent) {
            row.counted(exchange, now);
            return;
        }
        let agent = agent.to_owned();
        if exchange.user_agent.is_some()
            && let Some(client) = exchange.client
        {
            table.last = Some((client.clone(), agent.clone(), now));
        }
        if !table.rows.contains_key(&agent) {
            make_room(&mut table.rows);
            table
                .rows
                .insert(agent.clone(), ClientRow::new(&agent, now));
        }
        let address = exchange.client.map(|c| cut(&c.to_string()).to_owned());
        let row = table.rows.get_mut(&agent).expect("inserted above");
        row.seen(exchange, address, now, !routine);
    }
}

/// Whose request it is: its User-Agent's, or without one the last client's from the same
/// address within [`SAME_CLIENT`], or [`NONE`]'s. Compared, not formatted (every request
/// comes here).
fn agent_of<'a>(
    last: &'a Option<(Client, String, u64)>,
    exchange: &Exchange<'a>,
    now: u64,
) -> &'a str {
    match (exchange.user_agent, last) {
        (Some(agent), _) => cut(agent),
        (None, Some((from, agent, at)))
            if exchange.client == Some(from) && now.saturating_sub(*at) < SAME_CLIENT =>
        {
            agent
        }
        (None, _) => NONE,
    }
}

/// A request that is not part of connecting: accepted with a key, answered in time, and
/// neither `initialize` nor `tools/list` (the calls view has it).
fn is_routine(exchange: &Exchange<'_>) -> bool {
    exchange.auth.is_some()
        && exchange.status < 400
        && !matches!(exchange.mcp_method, Some("initialize" | "tools/list"))
        && too_slow(exchange).is_none()
}

/// Room for one more client: one that never authenticated goes first, then the one seen
/// longest ago.
fn make_room(table: &mut Rows) {
    if table.len() < MAX_CLIENTS {
        return;
    }
    let evicted = table
        .iter()
        .min_by_key(|(_, row)| (!row.auth.is_empty(), row.last_ms))
        .map(|(agent, _)| agent.clone());
    if let Some(agent) = evicted {
        table.remove(&agent);
    }
}

impl ClientRow {
    fn new(agent: &str, now: u64) -> Self {
        ClientRow {
            agent: agent.to_owned(),
            name: None,
            first_ms: now,
            last_ms: now,
            requests: 0,
            auth: Vec::new(),
            keys: Vec::new(),
            address: None,
            steps: VecDeque::new(),
        }
    }

    /// Counted: when, how many, how it authenticated, what it calls itself.
    fn counted(&mut self, exchange: &Exchange<'_>, now: u64) {
        self.last_ms = now;
        self.requests += 1;
        if let Some(auth) = exchange.auth.map(crate::auth::AuthMethod::as_str)
            && !self.auth.contains(&auth)
        {
            self.auth.push(auth);
        }
        if let Some(label) = exchange.key_label
            && self.keys.len() < KEYS
            && !self.keys.iter().any(|k| k == label)
        {
            self.keys.push(label.to_owned());
        }
        if let Some(name) = exchange.mcp_client
            && self.name.as_deref() != Some(cut(name))
            && name != exchange.user_agent.unwrap_or("")
        {
            self.name = Some(cut(name).to_owned());
        }
    }

    /// Counted, and kept as a step.
    fn seen(&mut self, exchange: &Exchange<'_>, address: Option<String>, now: u64, step: bool) {
        self.counted(exchange, now);
        // A stranger sending the same User-Agent does not move an authenticated client.
        if exchange.auth.is_some() || self.auth.is_empty() {
            self.address = address;
        }
        if step {
            self.step(exchange, now);
        }
    }

    fn step(&mut self, exchange: &Exchange<'_>, now: u64) {
        if self.steps.len() == STEPS {
            self.steps.pop_front();
        }
        self.steps.push_back(Step {
            at_ms: now,
            method: cut(exchange.method).to_owned(),
            path: cut(exchange.path).to_owned(),
            mcp_method: exchange.mcp_method.map(|m| cut(m).to_owned()),
            status: exchange.status,
            error: exchange.error.map(|(e, _)| cut(e).to_owned()),
            duration_ms: exchange.duration.as_secs_f64() * 1000.0,
            too_slow: too_slow(exchange),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;

    fn exchange<'a>(agent: &'a str, path: &'a str, status: u16) -> Exchange<'a> {
        Exchange {
            status,
            error: None,
            client: None,
            method: "POST",
            path,
            user_agent: Some(agent),
            auth: None,
            key_label: None,
            mcp_method: None,
            mcp_client: None,
            duration: Duration::from_millis(5),
        }
    }

    #[test]
    fn a_connection_is_a_timeline_until_the_tools_are_listed() {
        let clients = Clients::default();
        clients.finished(&exchange(
            "Claude-User",
            "/.well-known/oauth-protected-resource",
            200,
        ));
        clients.finished(&exchange("Claude-User", "/mcp", 401));
        let mut slow = exchange("Claude-User", "/token", 200);
        slow.duration = Duration::from_secs(11);
        clients.finished(&slow);
        for method in ["initialize", "tools/list", "tools/call", "tools/call"] {
            let mut mcp = exchange("Claude-User", "/mcp", 200);
            mcp.mcp_method = Some(method);
            mcp.mcp_client = Some("claude-ai");
            mcp.auth = Some(AuthMethod::OAuth);
            clients.finished(&mcp);
        }
        let rows = clients.recent();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!((row.requests, row.name.as_deref()), (7, Some("claude-ai")));
        assert_eq!(row.auth, ["oauth"]);
        let steps: Vec<_> = row
            .steps
            .iter()
            .map(|s| (s.path.as_str(), s.mcp_method.as_deref(), s.status))
            .collect();
        assert_eq!(
            steps,
            [
                ("/.well-known/oauth-protected-resource", None, 200),
                ("/mcp", None, 401),
                ("/token", None, 200),
                ("/mcp", Some("initialize"), 200),
                ("/mcp", Some("tools/list"), 200),
            ],
            "the calls after the listing are counted, not kept"
        );
        assert!(row.steps[2].too_slow.is_some() && row.steps[0].too_slow.is_none());
    }

    #[test]
    fn a_request_without_a_user_agent_is_the_last_clients_from_its_address() {
        let clients = Clients::default();
        let here = Client::Ip("192.0.2.1".parse().unwrap());
        let there = Client::Ip("192.0.2.2".parse().unwrap());
        let mut first = exchange("python-httpx", "/mcp", 401);
        first.client = Some(&here);
        clients.finished(&first);
        let mut discovery = exchange("", "/.well-known/oauth-authorization-server", 200);
        discovery.user_agent = None;
        discovery.client = Some(&here);
        clients.finished(&discovery);
        discovery.client = Some(&there);
        clients.finished(&discovery);
        let mut console = exchange("a browser", "/console/refusals", 200);
        console.client = Some(&here);
        clients.finished(&console);
        let mut agents: Vec<_> = clients
            .recent()
            .into_iter()
            .map(|r| (r.agent, r.steps.len()))
            .collect();
        agents.sort();
        assert_eq!(
            agents,
            [("(none)".to_owned(), 1), ("python-httpx".to_owned(), 2)]
        );
    }

    #[test]
    fn a_routine_request_without_a_user_agent_counts_on_the_last_clients_row() {
        let clients = Clients::default();
        let here = Client::Ip("192.0.2.1".parse().unwrap());
        let there = Client::Ip("192.0.2.2".parse().unwrap());
        let mut first = exchange("loadgen", "/mcp", 200);
        first.client = Some(&here);
        first.auth = Some(AuthMethod::Bearer);
        clients.finished(&first);
        let mut routine = first;
        routine.user_agent = None;
        clients.finished(&routine);
        routine.client = Some(&there);
        clients.finished(&routine);
        clients.finished(&routine);
        let mut rows: Vec<_> = clients
            .recent()
            .into_iter()
            .map(|r| (r.agent, r.requests))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            [("(none)".to_owned(), 2), ("loadgen".to_owned(), 2)],
            "the same address is the last client's; another is nobody's"
        );
    }

    #[test]
    fn a_client_shows_the_labels_of_the_keys_it_used_each_once() {
        let clients = Clients::default();
        let mut request = exchange("Claude-User", "/mcp", 200);
        request.auth = Some(AuthMethod::Bearer);
        for label in ["laptop", "laptop", "phone", "laptop"] {
            request.key_label = Some(label);
            clients.finished(&request);
        }
        request.key_label = None;
        clients.finished(&request);
        let labels: Vec<String> = (0..KEYS * 2).map(|i| format!("key {i}")).collect();
        for label in &labels {
            request.key_label = Some(label);
            clients.finished(&request);
        }
        let row = &clients.recent()[0];
        assert_eq!(row.keys[..2], ["laptop", "phone"]);
        assert_eq!(row.keys.len(), KEYS, "bounded");
        assert_eq!(row.requests, 5 + KEYS as u64 * 2);
    }

    #[test]
    fn strangers_make_room_for_strangers() {
        let clients = Clients::default();
        let mut owner = exchange("owner", "/mcp", 200);
        owner.auth = Some(AuthMethod::Bearer);
        clients.finished(&owner);
        for i in 0..MAX_CLIENTS * 3 {
            clients.finished(&exchange(&format!("stranger {i}"), "/mcp", 401));
        }
        let rows = clients.recent();
        assert_eq!(rows.len(), MAX_CLIENTS);
        assert!(rows.iter().any(|r| r.agent == "owner"), "the owner stays");
        let long = "x".repeat(10_000);
        clients.finished(&exchange(&long, &long, 401));
        let rows = clients.recent();
        assert!(rows.iter().all(|r| r.agent.len() <= MAX_TEXT));
        assert!(
            rows.iter()
                .all(|r| r.steps.iter().all(|s| s.path.len() <= MAX_TEXT))
        );
    }
}
