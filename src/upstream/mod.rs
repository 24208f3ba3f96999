//! An upstream MCP server that latchkey serves as its own: a command it starts and talks to
//! over stdio (`stdio`), or a Streamable HTTP server (`http`).
//!
//! One connection serves every client: rmcp's client multiplexes concurrent requests over
//! it by JSON-RPC id. A supervisor task keeps the connection: it connects and initialises
//! once, and when the connection ends (the child exits, the server goes away) it marks the
//! upstream down and connects again: at once when the connection had been ready (a crash or
//! restart costs only the calls in flight) unless the last one also died within 1 s of being
//! ready (a crash loop), else after 1 s, doubling to 30 s.
//! Calls made while it is connecting wait for it (up to [`STARTING_WAIT`]); calls made while
//! it is down fail at once with an error naming the upstream; calls in flight when it goes
//! fail as soon as it goes (rmcp drops their pending answers).

pub mod args;
mod client;
mod config_file;
pub mod error;
mod http;
mod http_client;
pub mod inventory;
pub mod lines;
pub mod log_line;
pub mod names;
pub mod notices;
mod progress_transport;
pub mod relay;
mod stdio;
mod subscriptions;
mod values;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::model::{ErrorCode, SubscribeRequestParams, UnsubscribeRequestParams};
use rmcp::service::ServiceError;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use client::Connection;
pub use http::HttpTarget;
pub use inventory::{Inventory, Pins};
pub use stdio::StdioCommand;

use client::Session;
use error::UpstreamError;
use log_line::LogLines;
use names::{Naming, ToolFilter};
use notices::{Listener, Notice, ProgressRoutes};
use relay::{Callers, Calling};
use subscriptions::Holders;

/// The first pause before connecting again, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long connecting and `initialize` may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a call waits for an upstream that is connecting (after a crash, or at start).
pub const STARTING_WAIT: Duration = Duration::from_secs(10);

/// What latchkey connects to.
#[derive(Clone, Debug)]
pub enum Target {
    Stdio(StdioCommand),
    Http(HttpTarget),
}

/// One upstream, as configured.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Its name in logs, errors, spans and `/healthz`.
    pub name: String,
    pub target: Target,
    /// How long a request to it may take before it fails (and is cancelled upstream).
    pub request_timeout: Duration,
    /// Which of its tools are offered.
    pub tools: ToolFilter,
    /// How often a silent call whose client asked for progress gets latchkey's heartbeat
    /// (`--heartbeat`, for every upstream).
    pub heartbeat: Option<Duration>,
    /// Whether the client's roots are offered to it (`--relay-roots`).
    pub relay_roots: bool,
}

/// The upstream's state, as `/healthz` and calls see it.
#[derive(Clone)]
pub enum State {
    Starting,
    Ready(Connection),
    Down(String),
    Stopped,
}

/// A handle on a supervised upstream.
pub struct Upstream {
    name: Arc<str>,
    request_timeout: Duration,
    heartbeat: Option<Duration>,
    relay_roots: bool,
    tools: ToolFilter,
    /// The names its tools, prompts and resources get outside.
    pub naming: Naming,
    notices: broadcast::Sender<Notice>,
    /// Where its progress notifications go.
    pub progress: Arc<ProgressRoutes>,
    /// Who its requests to a client go to.
    callers: Arc<Callers>,
    /// The sessions subscribed to each of its resources.
    subscriptions: Arc<Holders>,
    state: watch::Receiver<State>,
    done: watch::Receiver<bool>,
    /// Requests timed out since the last answer: a child wedged mid-line is connected and
    /// answers nothing, which `/healthz` reports as degraded.
    unanswered: AtomicU32,
    track: Arc<Track>,
    inventory: Inventory,
}

/// What the console shows of an upstream's past: how often it connected again after it had
/// been ready, and the last reason it went down (redacted as its log lines are).
#[derive(Debug, Default)]
pub struct Track {
    reconnects: AtomicU32,
    last_error: std::sync::Mutex<Option<(std::time::SystemTime, String)>>,
}

impl Track {
    pub fn reconnects(&self) -> u32 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// When it last went down, and why.
    pub fn last_error(&self) -> Option<(std::time::SystemTime, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn went_down(&self, reason: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::SystemTime::now(), reason.to_owned()));
    }
}

/// Timeouts in a row after which an upstream counts as degraded.
pub const DEGRADED_AFTER: u32 = 3;

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every configured upstream (at least one); cheap to clone.
#[derive(Clone, Debug)]
pub struct Upstreams(Arc<[Upstream]>);

impl Upstreams {
    /// Starts supervising each of `configs` until `shutdown`; `None` when there are none.
    /// With more than one, their names prefix what they offer ([`names`]). With `pins`
    /// (`--pin-tools`), their tools are offered only as approved.
    pub fn start(
        configs: Vec<UpstreamConfig>,
        pins: Option<Arc<Pins>>,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        let prefixed = configs.len() > 1;
        let upstreams: Arc<[Upstream]> = configs
            .into_iter()
            .map(|config| Upstream::start(config, prefixed, pins.clone(), shutdown.clone()))
            .collect();
        (!upstreams.is_empty()).then_some(Upstreams(upstreams))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Upstream> {
        self.0.iter()
    }

    /// The upstream, when there is only one (its names are its own).
    pub fn only(&self) -> Option<&Upstream> {
        match &*self.0 {
            [only] => Some(only),
            _ => None,
        }
    }

    /// The upstream a tool or prompt name outside names, and the name it knows: with one
    /// upstream, every name; with several, a prefixed one (`None` for any other, which only
    /// a listing can place).
    pub fn by_prefixed_name<'a>(&self, name: &'a str) -> Option<(&Upstream, &'a str)> {
        if let Some(only) = self.only() {
            return Some((only, name));
        }
        names::split_name(name).and_then(|(prefix, own)| Some((self.named(prefix)?, own)))
    }

    /// The upstream a tool name outside belongs to, and the name it knows: a prefixed
    /// name, or (with several upstreams) a name only one upstream's last listing offers,
    /// which is what an MCP App's own code calls. A name several offer is refused with the
    /// names to call instead. `None` while an upstream has not been listed yet, to list
    /// and ask again.
    pub fn by_tool_name<'a>(
        &self,
        name: &'a str,
    ) -> Option<Result<(&Upstream, &'a str), McpError>> {
        if let Some(only) = self.only() {
            return Some(Ok((only, name)));
        }
        if let Some((prefix, own)) = names::split_name(name)
            && let Some(upstream) = self.named(prefix)
        {
            return Some(Ok((upstream, own)));
        }
        let mut offering = Vec::new();
        for upstream in self.iter() {
            match upstream.inventory.lists(name) {
                // One that is down, or offers no tools, cannot be listed now.
                None if !upstream.lists_tools() => {}
                None => return None,
                Some(true) if upstream.offers_tool(name) => offering.push(upstream),
                Some(_) => {}
            }
        }
        Some(match offering[..] {
            [one] => Ok((one, name)),
            [] => Err(McpError::invalid_params(
                format!("unknown tool {name:?}"),
                None,
            )),
            _ => {
                let names: Vec<String> = offering
                    .iter()
                    .map(|u| format!("{:?}", u.naming.name(name)))
                    .collect();
                Err(McpError::invalid_params(
                    format!(
                        "tool {name:?} is offered by several upstreams: call it as one of {}",
                        names.join(", ")
                    ),
                    None,
                ))
            }
        })
    }

    /// The upstream a resource URI outside belongs to, and the URI it knows.
    pub fn by_uri<'a>(&self, uri: &'a str) -> Result<(&Upstream, &'a str), McpError> {
        self.by_prefixed_uri(uri)
            .ok_or_else(|| McpError::resource_not_found(format!("unknown resource {uri:?}"), None))
    }

    /// [`Self::by_prefixed_name`] for a resource URI or URI template.
    pub fn by_prefixed_uri<'a>(&self, uri: &'a str) -> Option<(&Upstream, &'a str)> {
        if let Some(only) = self.only() {
            return Some((only, uri));
        }
        names::split_uri(uri).and_then(|(prefix, own)| Some((self.named(prefix)?, own)))
    }

    fn named(&self, name: &str) -> Option<&Upstream> {
        self.0.iter().find(|u| &*u.name == name)
    }

    /// Waits until every supervisor has stopped (at shutdown: the children are gone).
    pub async fn stopped(&self) {
        for upstream in self.iter() {
            upstream.stopped().await;
        }
    }
}

impl Upstream {
    /// Starts supervising `config` until `shutdown`; returns at once (state `Starting`).
    fn start(
        config: UpstreamConfig,
        prefixed: bool,
        pins: Option<Arc<Pins>>,
        shutdown: CancellationToken,
    ) -> Self {
        let (state_tx, state) = watch::channel(State::Starting);
        let (done_tx, done) = watch::channel(false);
        let name: Arc<str> = Arc::from(config.name.as_str());
        // Room for a burst of resource updates; a session that lags skips some (list changes
        // are the same however many were missed).
        let (notices, _) = broadcast::channel(256);
        let upstream = Upstream {
            naming: Naming {
                prefix: prefixed.then(|| name.clone()),
            },
            name: name.clone(),
            request_timeout: config.request_timeout,
            heartbeat: config.heartbeat,
            relay_roots: config.relay_roots,
            tools: config.tools.clone(),
            notices: notices.clone(),
            progress: Arc::default(),
            callers: Arc::default(),
            subscriptions: Arc::default(),
            state,
            done,
            unanswered: AtomicU32::new(0),
            track: Arc::default(),
            inventory: Inventory::new(pins),
        };
        let hub = Hub {
            track: upstream.track.clone(),
            name,
            naming: upstream.naming.clone(),
            log: LogLines::new(config.target.secrets()),
            notices,
            progress: upstream.progress.clone(),
            callers: upstream.callers.clone(),
            timeout: config.request_timeout,
            relay_roots: config.relay_roots,
            subscriptions: upstream.subscriptions.clone(),
        };
        tokio::spawn(async move {
            supervise(config, hub, state_tx, shutdown).await;
            let _ = done_tx.send(true);
        });
        upstream
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Whether it is told of the client's roots (`--relay-roots`).
    pub fn relays_roots(&self) -> bool {
        self.relay_roots
    }

    /// How often a silent call whose client asked for progress gets a heartbeat.
    pub fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// Lists a client session as having a request in flight to it, so that the upstream's
    /// requests in the meantime (elicitation, sampling, roots) can be relayed to it
    /// ([`relay`]), until the guard is dropped.
    pub fn calling(
        &self,
        peer: rmcp::Peer<rmcp::RoleServer>,
        request: rmcp::model::RequestId,
        capabilities: rmcp::model::ClientCapabilities,
    ) -> Calling {
        self.callers.enter(peer, request, capabilities)
    }

    /// One more client session subscribes to its resource `uri` (its own URI): the
    /// upstream is subscribed for the first. A failure counts nothing, and a subscribe
    /// whose answer never came is undone upstream, in case it was applied.
    #[allow(deprecated)]
    pub async fn subscribe(&self, uri: &str) -> Result<(), McpError> {
        let _turn = self.subscriptions.turn().await;
        if !self.subscriptions.hold(uri) {
            return Ok(());
        }
        let failed = match self.ready_connection().await {
            Err(error) => error,
            Ok(connection) => {
                let request = connection.peer.subscribe(SubscribeRequestParams::new(uri));
                match tokio::time::timeout(self.request_timeout, request).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(error)) => self.error(error),
                    Err(_) => {
                        let undo = connection
                            .peer
                            .unsubscribe(UnsubscribeRequestParams::new(uri));
                        let _ = tokio::time::timeout(self.request_timeout, undo).await;
                        self.timed_out(self.request_timeout)
                    }
                }
            }
        };
        self.subscriptions.release(uri);
        Err(failed)
    }

    /// A client session lets go of its subscription to `uri`: the upstream is
    /// unsubscribed after the last.
    #[allow(deprecated)]
    pub async fn unsubscribe(&self, uri: &str) {
        let _turn = self.subscriptions.turn().await;
        if !self.subscriptions.release(uri) {
            return;
        }
        if let Ok(connection) = self.connection() {
            let request = connection
                .peer
                .unsubscribe(UnsubscribeRequestParams::new(uri));
            let _ = tokio::time::timeout(self.request_timeout, request).await;
        }
    }

    /// Whether it is ready and offers tools.
    fn lists_tools(&self) -> bool {
        self.connection()
            .is_ok_and(|c| c.info.capabilities.tools.is_some())
    }

    /// Whether it said it offers resource subscriptions (`resources.subscribe`).
    pub fn offers_subscriptions(&self) -> bool {
        self.connection().is_ok_and(|c| {
            c.info
                .capabilities
                .resources
                .as_ref()
                .and_then(|r| r.subscribe)
                .unwrap_or(false)
        })
    }

    /// The list changes it announces from now on.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// The allow or deny entries that name none of `tools` (its own names), as lines to say.
    pub fn unmatched_tool_entries(&self, tools: &[&str]) -> Vec<String> {
        self.tools.unmatched(tools)
    }

    /// Whether its tool `tool` (by its own name) is offered.
    pub fn offers_tool(&self, tool: &str) -> bool {
        self.tools.allows(tool)
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Its reconnects and last error.
    pub fn track(&self) -> &Track {
        &self.track
    }

    /// Its tools as last listed, and their changes.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Whether its tool `tool` (by its own name) is withheld awaiting approval.
    pub fn withholds(&self, tool: &str) -> bool {
        self.inventory.withholds(&self.name, tool)
    }

    /// The live connection, or the JSON-RPC error a call gets while there is none.
    pub fn connection(&self) -> Result<Connection, McpError> {
        match &*self.state.borrow() {
            State::Ready(connection) => Ok(connection.clone()),
            State::Starting => Err(self.unavailable("is starting")),
            State::Down(reason) => Err(self.unavailable(&format!("is down ({reason})"))),
            State::Stopped => Err(self.unavailable("is stopped")),
        }
    }

    /// The live connection, waiting up to [`STARTING_WAIT`] while the upstream connects.
    pub async fn ready_connection(&self) -> Result<Connection, McpError> {
        if !matches!(&*self.state.borrow(), State::Starting) {
            return self.connection();
        }
        let mut state = self.state.clone();
        let settled = state.wait_for(|state| !matches!(state, State::Starting));
        let _ = tokio::time::timeout(STARTING_WAIT, settled).await;
        self.connection()
    }

    fn unavailable(&self, why: &str) -> McpError {
        McpError::new(
            ErrorCode::INTERNAL_ERROR,
            format!("upstream {:?} {why}", &*self.name),
            None,
        )
    }

    /// What a failed request to the upstream becomes for the client: the upstream's own
    /// JSON-RPC error as it is, anything else as an error that names the upstream.
    pub fn error(&self, error: ServiceError) -> McpError {
        match error {
            ServiceError::McpError(error) => error,
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                self.unavailable("went away during the call")
            }
            ServiceError::Timeout { timeout } => self.timed_out(timeout),
            ServiceError::Cancelled { .. } => self.unavailable("cancelled the call"),
            other => McpError::new(
                ErrorCode::INTERNAL_ERROR,
                format!("upstream {:?}: {other}", &*self.name),
                None,
            ),
        }
    }

    /// Records whether a request was answered (by a result or the upstream's own error).
    pub fn answered(&self, answered: bool) {
        if answered {
            if self.unanswered.load(Ordering::Relaxed) != 0 {
                self.unanswered.store(0, Ordering::Relaxed);
            }
        } else {
            self.unanswered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The requests timed out in a row, when that is [`DEGRADED_AFTER`] or more.
    pub fn degraded(&self) -> Option<u32> {
        let unanswered = self.unanswered.load(Ordering::Relaxed);
        (unanswered >= DEGRADED_AFTER).then_some(unanswered)
    }

    pub fn timed_out(&self, after: Duration) -> McpError {
        McpError::new(
            ErrorCode::INTERNAL_ERROR,
            format!(
                "upstream {:?} did not answer within {after:?} (the call was cancelled)",
                &*self.name
            ),
            None,
        )
    }

    /// Waits until the supervisor has stopped (at shutdown: the child is gone).
    pub async fn stopped(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|done| *done).await;
    }
}

/// What each connection's [`Listener`] is made of.
struct Hub {
    name: Arc<str>,
    naming: Naming,
    track: Arc<Track>,
    log: LogLines,
    notices: broadcast::Sender<Notice>,
    progress: Arc<ProgressRoutes>,
    callers: Arc<Callers>,
    timeout: Duration,
    relay_roots: bool,
    subscriptions: Arc<Holders>,
}

impl Hub {
    /// A new connection subscribed to what the sessions hold (a restarted server knows
    /// nothing of the last connection's subscriptions).
    #[allow(deprecated)]
    fn resubscribe(&self, connection: &Connection) {
        let held = self.subscriptions.held();
        if held.is_empty() {
            return;
        }
        let peer = connection.peer.clone();
        let timeout = self.timeout;
        tokio::spawn(async move {
            for uri in held {
                let request = peer.subscribe(SubscribeRequestParams::new(uri));
                let _ = tokio::time::timeout(timeout, request).await;
            }
        });
    }

    fn listener(&self) -> Listener {
        Listener {
            name: self.name.clone(),
            naming: self.naming.clone(),
            log: self.log.clone(),
            notices: self.notices.clone(),
            callers: self.callers.clone(),
            timeout: self.timeout,
            relay_roots: self.relay_roots,
        }
    }
}

impl Target {
    /// Starts or reaches the upstream and completes `initialize`: its session, held until
    /// it ends, and the connection calls go over.
    async fn connect(
        &self,
        listener: Listener,
        progress: Arc<ProgressRoutes>,
    ) -> Result<(Box<dyn Session>, Connection), UpstreamError> {
        match self {
            Target::Stdio(command) => stdio::connect(command, listener, progress)
                .await
                .map(|(session, connection)| (Box::new(session) as Box<dyn Session>, connection)),
            Target::Http(target) => http::connect(target, listener, progress)
                .await
                .map(|(session, connection)| (Box::new(session) as Box<dyn Session>, connection)),
        }
    }

    /// The values latchkey hands the upstream that its lines must not show.
    fn secrets(&self) -> Vec<String> {
        match self {
            Target::Stdio(command) => command
                .env
                .iter()
                .map(|(_, value)| value.to_string_lossy().into_owned())
                .collect(),
            Target::Http(target) => {
                let mut secrets: Vec<String> = target
                    .headers
                    .iter()
                    .filter_map(|(_, value)| value.to_str().ok().map(str::to_owned))
                    .collect();
                // The URL's password and sensitive query values, as written and decoded:
                // connection errors quote the URL.
                if let Ok(url) = reqwest::Url::parse(&target.url) {
                    secrets.extend(url.password().map(str::to_owned));
                    if let Some(query) = url.query() {
                        for pair in query.split('&') {
                            if let Some((name, value)) = pair.split_once('=')
                                && crate::redact::is_sensitive_param(
                                    &crate::redact::percent_decoded(name),
                                )
                            {
                                secrets.push(value.to_owned());
                                secrets.push(
                                    String::from_utf8_lossy(&crate::redact::percent_decoded(value))
                                        .into_owned(),
                                );
                            }
                        }
                    }
                }
                secrets
            }
        }
    }
}

async fn supervise(
    config: UpstreamConfig,
    hub: Hub,
    state: watch::Sender<State>,
    shutdown: CancellationToken,
) {
    let name = config.name.as_str();
    let mut backoff = FIRST_BACKOFF;
    // Whether the last session ended within FIRST_BACKOFF of being ready: a second such end
    // in a row is a crash loop, which waits the backoff instead of reconnecting at once.
    let mut ended_young = false;
    let mut last_failure: Option<String> = None;
    let mut was_ready = false;
    loop {
        let _ = state.send(State::Starting);
        let attempt = config.target.connect(hub.listener(), hub.progress.clone());
        let connected = tokio::select! {
            _ = shutdown.cancelled() => break,
            connected = tokio::time::timeout(CONNECT_TIMEOUT, attempt) => connected
                .unwrap_or(Err(UpstreamError::NoAnswer(CONNECT_TIMEOUT))),
        };
        let reason = match connected {
            Ok((mut session, connection)) => {
                let server = connection
                    .info
                    .server_info
                    .as_ref()
                    .map_or_else(String::new, |s| format!(": {} {}", s.name, s.version))
                    .trim_end()
                    .to_owned();
                tracing::info!(upstream = name, "upstream ready{server}");
                if std::mem::replace(&mut was_ready, true) {
                    hub.track.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                last_failure = None;
                hub.resubscribe(&connection);
                let _ = state.send(State::Ready(connection));
                let ready_at = tokio::time::Instant::now();
                backoff = FIRST_BACKOFF;
                let reason = tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = state.send(State::Stopped);
                        session.close().await;
                        return;
                    }
                    reason = session.ended() => reason,
                };
                // It had served: connect again at once (calls wait for it meanwhile), unless
                // it keeps dying as soon as it is ready.
                let young = ready_at.elapsed() < FIRST_BACKOFF;
                let looping = young && ended_young;
                ended_young = young;
                if !looping {
                    let reason = hub.log.show(reason.as_bytes());
                    hub.track.went_down(&reason);
                    tracing::warn!(
                        upstream = name,
                        "upstream down: {reason}; connecting again now"
                    );
                    continue;
                }
                reason
            }
            Err(error) => error.to_string(),
        };
        // Errors can quote the upstream's URL or what it wrote: redacted like its lines.
        let reason = hub.log.show(reason.as_bytes());
        // Said once clearly; the same failure again (a missing command retried with backoff)
        // only at debug.
        if last_failure.as_deref() == Some(reason.as_str()) {
            tracing::debug!(
                upstream = name,
                "still down: {reason}; again in {backoff:?}"
            );
        } else {
            tracing::warn!(
                upstream = name,
                "upstream down: {reason}; connecting again in {backoff:?} (and on, backing off, \
                 logged again when the reason changes)"
            );
        }
        hub.track.went_down(&reason);
        last_failure = Some(reason.clone());
        let _ = state.send(State::Down(reason));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    let _ = state.send(State::Stopped);
}
