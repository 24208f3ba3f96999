//! `latchkey serve`: bind every listener, serve the routes, rotate keys on SIGHUP and shut
//! down gracefully on SIGTERM/SIGINT.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::http::{HeaderValue, header};
use secrecy::ExposeSecret;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::address_file::{AddressFile, Addresses};
use crate::cli::ServeArgs;
use crate::clients::AllowedClients;
use crate::configuration::{KeySources, state_dir_or_default};
use crate::connections::{self, ConnectionLimits};
use crate::gate::{GateLayer, RequestLimits};
use crate::host_origin::HostOriginGuard;
use crate::keys::KeySet;
use crate::listen::{self, ListenAddr, Peer, SocketFile};
use crate::lockout::Lockout;
use crate::mcp::span::McpTracing;
use crate::oauth::OAuth;
use crate::routes::{self, McpOptions, Paths, SessionLimits};
use crate::telemetry::Export;
use crate::tls::Tls;
use crate::tls::listener::TlsListener;
use crate::upstream::Upstreams;
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
}

/// Binds everything and starts serving; errors are one line, for bad configuration.
/// `export`: present when spans are exported, so requests and MCP messages get spans.
pub async fn start(args: ServeArgs, export: Option<Export>) -> anyhow::Result<Server> {
    for unread in crate::cli::unread_variables() {
        tracing::warn!("{unread}");
    }
    let sources = args.keys.sources()?;
    let entries = sources.load()?;
    let keys = Arc::new(ArcSwap::from_pointee(KeySet::new(&entries)));

    let shutdown = CancellationToken::new();
    // One SIGHUP watcher; the key reloader and the certificate files subscribe to it.
    let hangups = hangups(shutdown.clone())?;
    let tls = Tls::setup(&args.tls, &shutdown, &hangups)?;
    let guard = HostOriginGuard::new(
        &args.allowed_hosts,
        &args.allowed_origins,
        args.public_url.public_url.as_ref(),
        &args.tls.acme.acme_domains,
    );
    let sessions = args.sessions.then_some(SessionLimits {
        max_sessions: args.max_sessions as usize,
        idle_timeout: args.session_idle_timeout,
    });
    // Upstreams outlive the listeners' shutdown: requests in flight still reach them.
    let upstream_stop = CancellationToken::new();
    let upstreams = Upstreams::start(args.upstream.configs()?, &upstream_stop);
    let limits = &args.limits;
    let lockout = Arc::new(Lockout::new(limits.max_key_failures, limits.lockout));
    let oauth = match (&args.oauth.oauth, &args.public_url.public_url) {
        (true, Some(public_url)) => {
            let state_dir = state_dir_or_default(args.keys.state_dir.as_deref())?;
            let oauth = Arc::new(OAuth::new(
                &args.oauth,
                public_url,
                &state_dir,
                keys.clone(),
                lockout.clone(),
                limits.header_timeout,
            )?);
            oauth.spawn_reloader(hangups.subscribe());
            tracing::info!(
                "OAuth on: authorization server {public_url}, grants in {}",
                state_dir.join(crate::oauth::store::FILE).display()
            );
            Some(oauth)
        }
        (true, None) => {
            anyhow::bail!("--oauth needs --public-url: every OAuth URL is made from it")
        }
        (false, _) => None,
    };
    let paths = Paths::new(&args.listen.base_path, oauth.is_some());
    let router = paths.router(
        &McpOptions {
            sessions,
            shutdown: shutdown.clone(),
            max_body: args.limits.max_body,
            upstreams: upstreams.clone(),
            tracing: export.clone().map(|export| McpTracing {
                export,
                tool_io: args.trace_tool_io,
            }),
        },
        oauth.clone(),
    );
    let mcp_path = paths.mcp().to_owned();
    // In front of every route: the key leaves the request, then it is logged and checked.
    let redirect_paths = paths.clone();
    let request_limits = RequestLimits {
        max_uri_bytes: limits.max_uri_bytes,
        max_requests: limits.max_requests as usize,
        allowed_clients: AllowedClients::new(&limits.allowed_clients),
        lockout,
    };
    let app = GateLayer::new(
        paths,
        guard,
        keys.clone(),
        request_limits,
        oauth,
        export.clone(),
    )
    .layer(router);
    let connection_limits = ConnectionLimits {
        max_connections: limits.max_connections as usize,
        header_timeout: limits.header_timeout,
        idle_timeout: limits.idle_timeout,
        max_header_bytes: limits.max_header_bytes,
        max_headers: usize::from(limits.max_headers),
    };

    // Bind all first, so a bad listener fails the start before anything is served.
    let mut tcp = Vec::new();
    let mut unix = Vec::new();
    for addr in &args.listen.listen {
        match addr {
            ListenAddr::Tcp(addr) => tcp.push(listen::bind_tcp(*addr).await?),
            ListenAddr::Unix(path) => unix.push(listen::bind_unix(
                path,
                args.socket_mode,
                args.socket_group,
            )?),
        }
    }

    let mut https = Vec::new();
    let mut redirects = Vec::new();
    if let Some(tls) = &tls {
        for addr in &args.tls.tls_listen {
            let listener = listen::bind_tcp(*addr).await?.into_inner();
            https.push(TlsListener::new(
                listener,
                tls.config.clone(),
                tls.challenge.clone(),
            )?);
        }
        for addr in &args.tls.redirect_listen {
            redirects.push(listen::bind_tcp(*addr).await?);
        }
    }

    let tcp_addrs = tcp
        .iter()
        .map(axum::serve::Listener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;
    announce_keys(
        &args,
        &sources,
        keys.load().len(),
        tcp_addrs.first().copied(),
    );

    spawn_key_reloader(sources, keys, hangups.subscribe());

    let exposed = tcp_addrs.iter().any(|a| !a.ip().is_loopback());
    if exposed && args.allowed_hosts.is_empty() && args.public_url.public_url.is_none() {
        tracing::warn!(
            "listening beyond loopback, but only loopback Host names are allowed: requests by \
             domain or IP get 403 until --public-url or --allowed-host names them"
        );
    }
    for upstream in upstreams.iter().flat_map(Upstreams::iter) {
        tracing::info!("serving the tools of upstream {:?}", upstream.name());
    }
    match sessions {
        None => tracing::info!("MCP at {mcp_path}: stateless, JSON responses"),
        Some(limits) => tracing::info!(
            "MCP at {mcp_path}: sessions (at most {}, closed after {:?} idle), SSE responses",
            limits.max_sessions,
            limits.idle_timeout
        ),
    }

    // "listening on" comes last: once every listener has said it, latchkey is ready.
    let mut tasks = JoinSet::new();
    // Serves `service` on `listener` until shutdown; `$peer` says who a connection is from.
    macro_rules! serve {
        ($listener:expr, $peer:expr, $service:expr) => {{
            let served = connections::serve(
                $listener,
                $peer,
                $service,
                connection_limits,
                shutdown.clone(),
            );
            tasks.spawn(async move {
                served.await;
                Ok(())
            })
        }};
    }
    let tcp_peer = |addr: &std::net::SocketAddr| Peer::Tcp(*addr);
    let mut addresses = Addresses::default();
    for (listener, local) in tcp.into_iter().zip(tcp_addrs) {
        if !args.tls.tls_listen.is_empty() {
            // Beside HTTPS, plain HTTP is easy to overlook: --listen has a default.
            tracing::info!(
                "plain HTTP is served too, on {local} (--listen; its default is \
                 127.0.0.1:8080): set --listen to move it"
            );
        }
        tracing::info!("listening on http://{local}");
        addresses.http.push(format!("http://{local}"));
        serve!(listener, tcp_peer, app.clone());
    }
    if let Some(tls) = &tls {
        let hsts = tls.hsts;
        let app = SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            move |_: &axum::response::Response| hsts.then(|| HeaderValue::from_static(HSTS)),
        )
        .layer(app.clone());
        // The port HTTPS is really on (`:0` binds one of the kernel's choosing).
        let mut https_port = 443;
        for (i, listener) in https.into_iter().enumerate() {
            let local = axum::serve::Listener::local_addr(&listener)?;
            if i == 0 {
                https_port = local.port();
            }
            tracing::info!("listening on https://{local}");
            addresses.https.push(format!("https://{local}"));
            serve!(listener, tcp_peer, app.clone());
        }
        let redirect = GateLayer::log_only(redirect_paths.clone(), export.clone())
            .layer(routes::redirect::router(https_port, tls.http01.clone()));
        for listener in redirects {
            let local = axum::serve::Listener::local_addr(&listener)?;
            tracing::info!("listening on http://{local} (redirects to HTTPS)");
            addresses.redirect.push(format!("http://{local}"));
            serve!(listener, tcp_peer, redirect.clone());
        }
    }
    let mut sockets = Vec::new();
    for (listener, file) in unix {
        tracing::info!("listening on unix:{}", file.path.display());
        addresses.unix.push(format!("unix:{}", file.path.display()));
        sockets.push(file);
        serve!(listener, |_: &_| Peer::Unix, app.clone());
    }
    let address_file = match &args.address_file {
        Some(path) => Some(AddressFile::write(path, &addresses)?),
        None => None,
    };

    Ok(Server {
        shutdown,
        tasks,
        sockets,
        address_file,
        shutdown_timeout: args.shutdown_timeout,
        upstreams,
        upstream_stop,
    })
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
