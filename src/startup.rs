//! `latchkey serve`: bind every listener, serve the routes, rotate keys on SIGHUP and shut
//! down gracefully on SIGTERM/SIGINT.

use std::convert::Infallible;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use secrecy::ExposeSecret;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::activity::{Activity, Requests};
use crate::address_file::{AddressFile, Addresses};
use crate::cli::ServeArgs;
use crate::clients::AllowedClients;
use crate::configuration::{KeySources, state_dir_or_default};
use crate::connections::WithPeer;
use crate::connections::{self, ConnectionLimits};
use crate::console::ConsoleParts;
use crate::gate::{Gate, GateLayer, RequestLimits};
use crate::history::{History, Keep};
use crate::host_origin::HostOriginGuard;
use crate::intake::Intake;
use crate::keys::KeySet;
use crate::listen::{self, ListenAddr, NoDelayListener, Peer, SocketFile};
use crate::lockout::Lockout;
use crate::mcp::span::McpTracing;
use crate::oauth::OAuth;
use crate::routes::{self, McpOptions, Paths, SessionLimits};
use crate::telemetry::Export;
use crate::telemetry::observe::{ExchangeObserver, Observers};
use crate::tls::Tls;
use crate::tls::listener::TlsListener;
use crate::upstream::{Pins, Upstreams};
use crate::url;

/// Browsers remember for a year to come back over HTTPS only.
const HSTS: &str = "max-age=31536000";

/// A started server: what it takes to stop it.
pub struct Server {
    shutdown: CancellationToken,
    tasks: JoinSet<std::io::Result<()>>,
    sockets: Vec<SocketFile>,
    address_file: Option<AddressFile>,
    shutdown_timeout: Duration,
    upstreams: Option<Upstreams>,
    upstream_stop: CancellationToken,
    history: Option<Arc<History>>,
}

/// The gate in front of every route: what each listener but the redirect one serves.
pub type Gated = Gate<axum::Router>;

/// Everything that answers requests, made from the configuration before any socket is bound.
pub struct App {
    gated: Gated,
    /// The redirect listener's gate; its router needs the HTTPS port, known once bound.
    redirect_gate: GateLayer,
    tls: Option<Tls>,
    keys: Arc<ArcSwap<KeySet>>,
    sources: KeySources,
    sessions: Option<SessionLimits>,
    mcp_path: String,
    upstreams: Option<Upstreams>,
    /// Upstreams outlive the listeners' shutdown: requests in flight still reach them.
    upstream_stop: CancellationToken,
    shutdown: CancellationToken,
    /// One SIGHUP watcher; the key reloader, the certificate files and OAuth subscribe.
    hangups: broadcast::Sender<()>,
    /// Flushed at shutdown.
    history: Option<Arc<History>>,
}

impl App {
    /// The gated routes, to serve on a listener of the caller's (tests, the fuzz target).
    pub fn gated(&self) -> Gated {
        self.gated.clone()
    }
}

/// Every listener, bound: a bad one fails the start before anything is served.
pub struct Bound {
    tcp: Vec<(NoDelayListener, SocketAddr)>,
    unix: Vec<(tokio::net::UnixListener, SocketFile)>,
    https: Vec<TlsListener>,
    redirects: Vec<NoDelayListener>,
}

/// Checks, builds, binds and serves; errors are one line, for bad configuration.
/// `export`: present when spans are exported, so requests and MCP messages get spans.
pub async fn start(args: ServeArgs, export: Option<Export>) -> anyhow::Result<Server> {
    check(&args)?;
    let app = build(&args, export)?;
    let bound = bind(&args, &app).await?;
    serve(&args, bound, app)
}

/// What the flags cannot say alone: combinations that cannot work, variables nobody reads.
pub fn check(args: &ServeArgs) -> anyhow::Result<()> {
    for unread in crate::cli::unread_variables() {
        tracing::warn!("{unread}");
    }
    if args.oauth.oauth && args.public_url.public_url.is_none() {
        anyhow::bail!("--oauth needs --public-url: every OAuth URL is made from it");
    }
    Ok(())
}

/// The app `args` describe: keys, TLS, upstreams (started), OAuth, the routes and the gate.
pub fn build(args: &ServeArgs, export: Option<Export>) -> anyhow::Result<App> {
    let sources = args.keys.sources()?;
    let keys = Arc::new(ArcSwap::from_pointee(KeySet::new(&sources.load()?)));
    let shutdown = CancellationToken::new();
    let hangups = hangups(shutdown.clone())?;
    let tls = Tls::setup(&args.tls, &shutdown, &hangups)?;
    let upstream_stop = CancellationToken::new();
    let upstreams = Upstreams::start(args.upstream.configs()?, pins(args)?, &upstream_stop);
    let limits = &args.limits;
    let lockout = Arc::new(Lockout::new(limits.max_key_failures, limits.lockout));
    let intake = Arc::new(Intake::new(limits.header_timeout));
    let oauth = build_oauth(args, &keys, &lockout, &intake, &hangups)?;
    let sessions = args.sessions.then_some(SessionLimits {
        max_sessions: args.max_sessions as usize,
        idle_timeout: args.session_idle_timeout,
    });
    let activity = build_activity(args)?;
    let history = activity.as_ref().and_then(|a| a.history().cloned());
    let export = match (&activity, export) {
        (Some(activity), Some(export)) => Some(export.with_observer(activity.clone())),
        (_, export) => export,
    };
    let paths = Paths::new(&args.listen.base_path, oauth.is_some(), activity.is_some());
    let requests = activity.as_ref().map(|_| Arc::new(Requests::default()));
    let console = activity.zip(requests.clone()).map(|(activity, requests)| {
        console_parts(
            args,
            (activity, requests, upstreams.clone()),
            &keys,
            &lockout,
            &oauth,
            tls.is_some(),
            &shutdown,
        )
    });
    let options = McpOptions {
        sessions,
        shutdown: shutdown.clone(),
        max_body: limits.max_body,
        upstreams: upstreams.clone(),
        tracing: mcp_tracing(args, export.clone(), console.as_ref()),
    };
    let router = paths.router(&options, oauth.clone(), console);
    let mcp_path = paths.mcp().to_owned();
    let redirect_gate = GateLayer::log_only(paths.clone(), export.clone());
    // In front of every route: the key leaves the request, then it is logged and checked.
    let gated = gate(args, paths, keys.clone(), lockout, oauth, export)
        .telling(requests.map(|r| r as Arc<dyn ExchangeObserver>))
        .layer(router);
    Ok(App {
        gated,
        redirect_gate,
        tls,
        keys,
        sources,
        sessions,
        mcp_path,
        upstreams,
        upstream_stop,
        shutdown,
        hangups,
        history,
    })
}

/// What the console is made of: the activity and requests it shows, what its sign-in checks with, where
/// it is and whether its cookie is `Secure` (an https public URL, or TLS served here).
fn console_parts(
    args: &ServeArgs,
    (activity, requests, upstreams): (Arc<Activity>, Arc<Requests>, Option<Upstreams>),
    keys: &Arc<ArcSwap<KeySet>>,
    lockout: &Arc<Lockout>,
    oauth: &Option<Arc<OAuth>>,
    serves_tls: bool,
    shutdown: &CancellationToken,
) -> ConsoleParts {
    let public_url = args.public_url.public_url.as_ref();
    ConsoleParts {
        activity,
        requests,
        upstreams,
        keys: keys.clone(),
        lockout: lockout.clone(),
        oauth: oauth.clone(),
        // Its own pool: strangers' slow OAuth bodies cannot keep the owner from signing in.
        intake: Arc::new(Intake::new(args.limits.header_timeout)),
        base: args.listen.base_path.as_str().to_owned(),
        secure: public_url.is_some_and(|u| u.as_str().starts_with("https:")) || serves_tls,
        public_origin: public_url.map(|url| url.origin().to_owned()),
        session_lifetime: args.console_session_lifetime,
        shutdown: shutdown.clone(),
    }
}

/// With `--pin-tools`, the approved tools, read from the state directory: a file that
/// cannot be read stops the start.
fn pins(args: &ServeArgs) -> anyhow::Result<Option<Arc<Pins>>> {
    if !args.pin_tools {
        return Ok(None);
    }
    let state_dir = state_dir_or_default(args.keys.state_dir.as_deref())?;
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state_dir)
        .map_err(|e| anyhow::anyhow!("cannot make {}: {e} (--state-dir)", state_dir.display()))?;
    crate::file_modes::check_state_dir(&state_dir)?;
    let pins =
        Pins::open(state_dir.join(Pins::FILE)).map_err(|e| anyhow::anyhow!("{e} (--pin-tools)"))?;
    Ok(Some(Arc::new(pins)))
}

/// The console's activity (unless `--no-console`), with its history opened in the state
/// directory: a database that cannot be opened stops the start.
fn build_activity(args: &ServeArgs) -> anyhow::Result<Option<Arc<Activity>>> {
    if args.no_console {
        return Ok(None);
    }
    let state_dir = state_dir_or_default(args.keys.state_dir.as_deref())?;
    let keep = Keep {
        retention: args.history_retention,
        max_bytes: args.history_max_size as u64,
    };
    let (history, kept, last_id) = History::open(&state_dir, keep, crate::activity::LIVE_ROWS)
        .map_err(|e| anyhow::anyhow!("{e} (--state-dir)"))?;
    let activity = Activity::new(Some(Arc::new(history)), kept, last_id);
    Ok(Some(Arc::new(activity)))
}

/// The gate `args` describe, in front of `paths`.
pub(crate) fn gate(
    args: &ServeArgs,
    paths: Paths,
    keys: Arc<ArcSwap<KeySet>>,
    lockout: Arc<Lockout>,
    oauth: Option<Arc<OAuth>>,
    export: Option<Export>,
) -> GateLayer {
    let limits = &args.limits;
    let request_limits = RequestLimits {
        max_uri_bytes: limits.max_uri_bytes,
        max_requests: limits.max_requests as usize,
        allowed_clients: AllowedClients::new(&limits.allowed_clients),
        lockout,
    };
    let guard = HostOriginGuard::new(
        &args.allowed_hosts,
        &args.allowed_origins,
        args.public_url.public_url.as_ref(),
        &args.tls.acme.acme_domains,
    );
    GateLayer::new(paths, guard, keys, request_limits, oauth, export)
}

/// What the MCP operations are handed to: the export (its spans and observers) or, with
/// export off, the console's activity alone (or nobody: the access log's note remains).
fn mcp_tracing(
    args: &ServeArgs,
    export: Option<Export>,
    console: Option<&ConsoleParts>,
) -> McpTracing {
    let observers = match (&export, console) {
        (Some(export), _) => export.observers().clone(),
        (None, Some(console)) => Observers::new(vec![console.activity.clone()]),
        (None, None) => Observers::default(),
    };
    McpTracing {
        export,
        observers,
        tool_io: args.trace_tool_io,
    }
}

/// With `--oauth`: the authorization server, reloading its passphrase on SIGHUP.
fn build_oauth(
    args: &ServeArgs,
    keys: &Arc<ArcSwap<KeySet>>,
    lockout: &Arc<Lockout>,
    intake: &Arc<Intake>,
    hangups: &broadcast::Sender<()>,
) -> anyhow::Result<Option<Arc<OAuth>>> {
    let (true, Some(public_url)) = (args.oauth.oauth, &args.public_url.public_url) else {
        return Ok(None);
    };
    let state_dir = state_dir_or_default(args.keys.state_dir.as_deref())?;
    let oauth = Arc::new(OAuth::new(
        &args.oauth,
        public_url,
        &state_dir,
        keys.clone(),
        lockout.clone(),
        intake.clone(),
    )?);
    oauth.spawn_reloader(hangups.subscribe());
    tracing::info!(
        "OAuth on: authorization server {public_url}, grants in {}",
        state_dir.join(crate::oauth::store::FILE).display()
    );
    Ok(Some(oauth))
}

/// Binds every listener `args` name.
pub async fn bind(args: &ServeArgs, app: &App) -> anyhow::Result<Bound> {
    let mut bound = Bound {
        tcp: Vec::new(),
        unix: Vec::new(),
        https: Vec::new(),
        redirects: Vec::new(),
    };
    for addr in &args.listen.listen {
        match addr {
            ListenAddr::Tcp(addr) => {
                let listener = listen::bind_tcp(*addr).await?;
                let local = axum::serve::Listener::local_addr(&listener)?;
                bound.tcp.push((listener, local));
            }
            ListenAddr::Unix(path) => bound.unix.push(listen::bind_unix(
                path,
                args.socket_mode,
                args.socket_group,
            )?),
        }
    }
    if let Some(tls) = &app.tls {
        for addr in &args.tls.tls_listen {
            let listener = listen::bind_tcp(*addr).await?.into_inner();
            bound.https.push(TlsListener::new(
                listener,
                tls.config.clone(),
                tls.challenge.clone(),
            )?);
        }
        for addr in &args.tls.redirect_listen {
            bound.redirects.push(listen::bind_tcp(*addr).await?);
        }
    }
    Ok(bound)
}

/// Serves `app` on every bound listener until shutdown. "listening on" comes last: once
/// every listener has said it, latchkey is ready.
pub fn serve(args: &ServeArgs, bound: Bound, app: App) -> anyhow::Result<Server> {
    let first_tcp = bound.tcp.first().map(|(_, local)| *local);
    announce_keys(args, &app.sources, app.keys.load().len(), first_tcp);
    spawn_key_reloader(app.sources, app.keys, app.hangups.subscribe());
    announce_what_is_served(
        args,
        &bound,
        app.upstreams.as_ref(),
        &app.sessions,
        &app.mcp_path,
    );
    let mut serving = Serving {
        tasks: JoinSet::new(),
        limits: connection_limits(args),
        shutdown: app.shutdown.clone(),
        addresses: Addresses::default(),
    };
    for (listener, local) in bound.tcp {
        if !args.tls.tls_listen.is_empty() {
            // Beside HTTPS, plain HTTP is easy to overlook: --listen has a default.
            tracing::info!(
                "plain HTTP is served too, on {local} (--listen; its default is \
                 127.0.0.1:8080): set --listen to move it"
            );
        }
        serving.tcp(listener, format!("http://{local}"), "", app.gated.clone());
    }
    if let Some(tls) = &app.tls {
        serve_tls(
            &mut serving,
            tls,
            bound.https,
            bound.redirects,
            (&app.gated, &app.redirect_gate),
        )?;
    }
    let mut sockets = Vec::new();
    for (listener, file) in bound.unix {
        let shown = format!("unix:{}", file.path.display());
        tracing::info!("listening on {shown}");
        serving.addresses.unix.push(shown);
        sockets.push(file);
        serving.spawn(listener, |_: &_| Peer::Unix, app.gated.clone());
    }
    let address_file = match &args.address_file {
        Some(path) => Some(AddressFile::write(path, &serving.addresses)?),
        None => None,
    };
    Ok(Server {
        shutdown: app.shutdown,
        tasks: serving.tasks,
        sockets,
        address_file,
        shutdown_timeout: args.shutdown_timeout,
        upstreams: app.upstreams,
        upstream_stop: app.upstream_stop,
        history: app.history,
    })
}

/// HTTPS (with HSTS when asked) and the listeners that redirect to it.
fn serve_tls(
    serving: &mut Serving,
    tls: &Tls,
    https: Vec<TlsListener>,
    redirects: Vec<NoDelayListener>,
    (gated, redirect_gate): (&Gated, &GateLayer),
) -> anyhow::Result<()> {
    let hsts = tls.hsts;
    let secured = SetResponseHeaderLayer::if_not_present(
        header::STRICT_TRANSPORT_SECURITY,
        move |_: &axum::response::Response| hsts.then(|| HeaderValue::from_static(HSTS)),
    )
    .layer(gated.clone());
    // The port HTTPS is really on (`:0` binds one of the kernel's choosing).
    let mut https_port = 443;
    for (i, listener) in https.into_iter().enumerate() {
        let local = axum::serve::Listener::local_addr(&listener)?;
        if i == 0 {
            https_port = local.port();
        }
        tracing::info!("listening on https://{local}");
        serving.addresses.https.push(format!("https://{local}"));
        serving.spawn(listener, tcp_peer, secured.clone());
    }
    let redirect = redirect_gate.layer(routes::redirect::router(https_port, tls.http01.clone()));
    for listener in redirects {
        let local = axum::serve::Listener::local_addr(&listener)?;
        serving.tcp(
            listener,
            format!("http://{local}"),
            " (redirects to HTTPS)",
            redirect.clone(),
        );
    }
    Ok(())
}

/// What the start says before the listeners do: who is exposed, which upstreams, MCP's mode.
fn announce_what_is_served(
    args: &ServeArgs,
    bound: &Bound,
    upstreams: Option<&Upstreams>,
    sessions: &Option<SessionLimits>,
    mcp_path: &str,
) {
    let exposed = bound.tcp.iter().any(|(_, a)| !a.ip().is_loopback());
    if exposed && args.allowed_hosts.is_empty() && args.public_url.public_url.is_none() {
        tracing::warn!(
            "listening beyond loopback, but only loopback Host names are allowed: requests by \
             domain or IP get 403 until --public-url or --allowed-host names them"
        );
    }
    for upstream in upstreams.into_iter().flat_map(Upstreams::iter) {
        tracing::info!("serving the tools of upstream {:?}", upstream.name());
    }
    if !args.no_console {
        let console = args.listen.base_path.join(crate::console::CONSOLE);
        tracing::info!(
            "activity console at {console} (sign in with the key; --no-console turns it off)"
        );
    }
    match sessions {
        None => tracing::info!("MCP at {mcp_path}: stateless, JSON responses"),
        Some(limits) => tracing::info!(
            "MCP at {mcp_path}: sessions (at most {}, closed after {:?} idle), SSE responses",
            limits.max_sessions,
            limits.idle_timeout
        ),
    }
}

fn connection_limits(args: &ServeArgs) -> ConnectionLimits {
    let limits = &args.limits;
    ConnectionLimits {
        max_connections: limits.max_connections as usize,
        header_timeout: limits.header_timeout,
        idle_timeout: limits.idle_timeout,
        max_header_bytes: limits.max_header_bytes,
        max_headers: usize::from(limits.max_headers),
    }
}

fn tcp_peer(addr: &SocketAddr) -> Peer {
    Peer::Tcp(*addr)
}

/// What `connections::serve` serves: a service that can be told its connection's peer.
trait Servable:
    WithPeer
    + tower::Service<Request, Response = Response, Error = Infallible>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Servable for S where
    S: WithPeer
        + tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The listeners being served, and the addresses they are on.
struct Serving {
    tasks: JoinSet<std::io::Result<()>>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    addresses: Addresses,
}

impl Serving {
    /// Serves `service` on `listener` until shutdown; `peer` says who a connection is from.
    fn spawn<L, S>(
        &mut self,
        listener: L,
        peer: impl Fn(&L::Addr) -> Peer + Send + 'static,
        service: S,
    ) where
        L: axum::serve::Listener,
        S: Servable,
        S::Future: Send + 'static,
    {
        let served =
            connections::serve(listener, peer, service, self.limits, self.shutdown.clone());
        self.tasks.spawn(async move {
            served.await;
            Ok(())
        });
    }

    /// A plain HTTP listener at `shown`, said with `note`.
    fn tcp<S>(&mut self, listener: NoDelayListener, shown: String, note: &str, service: S)
    where
        S: Servable,
        S::Future: Send + 'static,
    {
        tracing::info!("listening on {shown}{note}");
        if note.is_empty() {
            self.addresses.http.push(shown);
        } else {
            self.addresses.redirect.push(shown);
        }
        self.spawn(listener, tcp_peer, service);
    }
}

/// Says where the keys come from. A generated key's URL is printed only to a terminal:
/// stderr that goes to a file or a log collector must not hold the key.
fn announce_keys(
    args: &ServeArgs,
    sources: &KeySources,
    count: usize,
    first_tcp: Option<std::net::SocketAddr>,
) {
    if !sources.generated {
        tracing::info!("{count} API key(s) loaded from {}", sources.describe());
        return;
    }
    let file = sources.describe();
    let verb = if sources.newly_generated {
        "generated a new"
    } else {
        "using the"
    };
    match &sources.empty_file {
        Some(empty) => tracing::warn!(
            "key file {} holds no key: {verb} key in {file} instead (put a key in the file \
             and restart to use it)",
            empty.display()
        ),
        None => tracing::info!("no API key configured: {verb} key in {file}"),
    }
    if std::io::stderr().is_terminal() {
        let reach = url::Reach {
            public_url: args.public_url.public_url.as_ref(),
            domain: args.tls.acme.acme_domains.first().map(String::as_str),
            first_tcp,
        };
        // A URL on this machine's own address is no URL ChatGPT or Claude can reach.
        let local = reach.public_url.is_none() && reach.domain.is_none();
        match url::connector_url(reach, &args.listen.base_path, sources) {
            Ok(url) if local => eprintln!(
                "\n  Local connector URL (this machine only): {}\n  ChatGPT and Claude need a \
                 public HTTPS URL: run the compose bundle, or --tls-listen with --acme-domain, \
                 or set --public-url to the address your own proxy serves.\n",
                url.expose_secret()
            ),
            Ok(url) => eprintln!(
                "\n  Connector URL (paste into ChatGPT or Claude): {}\n",
                url.expose_secret()
            ),
            Err(e) => tracing::warn!("cannot show the connector URL: {e}"),
        }
    } else {
        tracing::info!("print the connector URL with `latchkey url` (it contains the key)");
    }
}

/// Broadcasts every SIGHUP until `shutdown`; whoever reloads on it subscribes.
fn hangups(shutdown: CancellationToken) -> anyhow::Result<broadcast::Sender<()>> {
    let mut signals = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let (sender, _) = broadcast::channel(4);
    let broadcaster = sender.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = signals.recv() => match received {
                    // No subscriber yet is not an error: nothing to reload.
                    Some(()) => { let _ = broadcaster.send(()); }
                    None => return,
                },
            }
        }
    });
    Ok(sender)
}

/// On SIGHUP, re-reads the key file; a broken file keeps the keys in force.
fn spawn_key_reloader(
    sources: KeySources,
    keys: Arc<ArcSwap<KeySet>>,
    mut hangups: broadcast::Receiver<()>,
) {
    tokio::spawn(async move {
        // Ends when the broadcaster does (at shutdown); a missed SIGHUP still reloads once.
        while let Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) = hangups.recv().await {
            match sources.load() {
                Ok(entries) => {
                    // Requests in flight keep the set they loaded; new ones see the new set.
                    keys.store(Arc::new(KeySet::new(&entries)));
                    tracing::info!(
                        "SIGHUP: reloaded {} API key(s) from {}",
                        entries.len(),
                        sources.describe()
                    );
                }
                Err(e) => tracing::error!("SIGHUP: keeping the current keys: {e:#}"),
            }
        }
    });
}

impl Server {
    /// Serves until SIGTERM or SIGINT, then shuts down.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let why = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{why}: shutting down");
        self.shutdown().await;
        Ok(())
    }

    /// Stops accepting, lets requests in flight finish (up to the shutdown timeout) and
    /// removes the Unix sockets and the address file.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "requests still running after {:?}; exiting anyway",
                self.shutdown_timeout
            );
            self.tasks.abort_all();
        }
        if let Some(history) = &self.history {
            let history = history.clone();
            let _ =
                tokio::task::spawn_blocking(move || history.close(Duration::from_secs(5))).await;
        }
        self.upstream_stop.cancel();
        if let Some(upstreams) = &self.upstreams {
            upstreams.stopped().await;
        }
        self.sockets.clear();
        if let Some(file) = self.address_file.take() {
            file.remove();
        }
        tracing::info!("stopped");
    }
}

/// The app as `build` makes it, served in this process with no socket: zero-to-production's
/// `spawn_app` shape, for a test that needs no separate process.
/// `latchkey serve` with `flags`, parsed as the command line would be (for unit tests that
/// build parts of the app the way `build` does).
#[cfg(test)]
pub(crate) fn test_args(flags: &[&str]) -> ServeArgs {
    use clap::Parser as _;
    let line = ["latchkey", "serve"]
        .into_iter()
        .chain(flags.iter().copied());
    match crate::cli::Cli::try_parse_from(line).unwrap().command {
        crate::cli::Command::Serve(args) => *args,
        _ => unreachable!("serve was asked for"),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use tower::ServiceExt as _;

    use super::*;

    const KEY: &str = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";

    fn args(extra: &[&str]) -> ServeArgs {
        let mut line = vec!["--api-key", KEY];
        line.extend_from_slice(extra);
        test_args(&line)
    }

    async fn call(app: &App, key: &str) -> (StatusCode, String) {
        let request = axum::http::Request::post("/mcp")
            .header(header::HOST, "localhost")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(axum::body::Body::from(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello","arguments":{"name":"Ada"}}}"#,
            ))
            .unwrap();
        let peer = Peer::Tcp("127.0.0.1:40000".parse().unwrap());
        let response = app.gated().with_peer(peer).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_built_app_answers_a_tool_call_behind_the_key() {
        let app = build(&args(&[]), None).unwrap();
        let (status, body) = call(&app, KEY).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("Hello Ada!"), "{body}");
        let (status, _) = call(&app, &"w".repeat(32)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn oauth_without_a_public_url_fails_the_check_before_anything_starts() {
        let error = check(&args(&["--oauth"])).unwrap_err().to_string();
        assert!(error.contains("--oauth needs --public-url"), "{error}");
    }
}
