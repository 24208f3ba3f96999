//! Logs, traces and metrics.
//!
//! - `http`: the HTTP server span and metric, and the record of a request until its answer;
//! - `access_log`: one access log line per request (`timestamp` writes its time);
//! - `mcp`: an MCP operation, served or sent upstream, ended once; `observe`: what sees each
//!   finished one (the duration histograms first); `attribute`: the conventions' names;
//! - `trace`: the spans themselves, made and ended on the request path;
//! - `otlp`: OTLP export of spans and metrics, on when an `OTEL_EXPORTER_OTLP_*` endpoint is set
//!   (`span_export` writes and posts the spans over http/protobuf).
//!
//! What is never recorded is `crate::redact`'s.

pub mod access_log;
pub mod attribute;
mod env;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod observe;
pub mod otlp;
mod span_export;
mod timestamp;
pub mod trace;

use std::io::IsTerminal;
use std::sync::OnceLock;

use anyhow::Context as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Where access log lines go: the writer every other line goes to, in the same format.
struct AccessSink {
    writer: tracing_appender::non_blocking::NonBlocking,
    format: LogFormat,
    ansi: bool,
}

/// Set once by [`init`]; without it (unit tests) access log lines go nowhere.
static ACCESS_SINK: OnceLock<AccessSink> = OnceLock::new();

/// The filter when `RUST_LOG` is unset: latchkey at info, rmcp's per-request chatter off.
pub const DEFAULT_FILTER: &str = "info,rmcp=warn";

/// How log lines look on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// Text on a terminal, JSON otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }
}

/// What the request path needs to export: present only when OTLP export is on.
///
/// Spans are `trace`'s, not `tracing`'s: they exist only to be exported, and a `tracing`
/// bridge would cost every request a subscriber lookup on each poll of its future. Shared:
/// a request holds it twice (its record, its MCP operation), one reference count each.
#[derive(Clone, Debug)]
pub struct Export(std::sync::Arc<ExportParts>);

#[derive(Debug)]
pub struct ExportParts {
    pub tracer: trace::Tracer,
    pub metrics: metrics::Metrics,
    /// What sees every finished MCP operation (`mcp`): the duration histograms first.
    observers: observe::Observers,
}

impl Export {
    pub fn new(tracer: trace::Tracer, metrics: metrics::Metrics) -> Self {
        let observers = observe::Observers::new(vec![std::sync::Arc::new(metrics.clone())]);
        Export(std::sync::Arc::new(ExportParts {
            tracer,
            metrics,
            observers,
        }))
    }

    /// The same export, with `observer` handed every finished MCP operation too.
    pub fn with_observer(self, observer: std::sync::Arc<dyn observe::Observer>) -> Self {
        let mut parts = std::sync::Arc::try_unwrap(self.0).unwrap_or_else(|shared| ExportParts {
            tracer: shared.tracer,
            metrics: shared.metrics.clone(),
            observers: shared.observers.clone(),
        });
        parts.observers = parts.observers.with(observer);
        Export(std::sync::Arc::new(parts))
    }

    /// What sees every finished MCP operation.
    pub fn observers(&self) -> &observe::Observers {
        &self.observers
    }
}

impl std::ops::Deref for Export {
    type Target = ExportParts;

    fn deref(&self) -> &ExportParts {
        &self.0
    }
}

/// Keeps the exporters and the log writer alive; [`Telemetry::shutdown`] flushes what is
/// still buffered.
pub struct Telemetry {
    otlp: Option<otlp::Providers>,
    _log_writer: tracing_appender::non_blocking::WorkerGuard,
}

impl Telemetry {
    /// The tracer and instruments, when spans and metrics are exported.
    pub fn export(&self) -> Option<Export> {
        self.otlp
            .as_ref()
            .map(|otlp| Export::new(otlp.tracer(), metrics::Metrics::new()))
    }

    pub fn shutdown(self) {
        if let Some(otlp) = self.otlp {
            otlp.shutdown();
        }
    }
}

/// Where rmcp logs whole MCP messages (tool arguments and results, an upstream's log
/// messages) or an upstream's raw lines (a malformed line, quoted whole at debug: a Bearer
/// token, an environment secret and a 5.2 MB line were seen): capped whatever `RUST_LOG`
/// says, since those can hold anyone's secrets. latchkey's own spans and log lines say what
/// happened without the contents, and what an upstream writes reaches the log only through
/// `upstream::log_line`'s cut and redaction.
const MESSAGE_DUMPS: [&str; 4] = [
    // At warn it logs every error answer as a Rust `Debug` dump (`ErrorData { code: … }`),
    // which latchkey's access record and spans already say in words.
    "rmcp::service=error",
    "rmcp::transport::async_rw=info",
    "rmcp::transport::streamable_http_client=info",
    "rmcp::transport::streamable_http_server::tower=debug",
];

fn filter() -> (EnvFilter, Option<String>) {
    let (mut filter, problem) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(e.to_string())),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    for cap in MESSAGE_DUMPS {
        filter = filter.add_directive(cap.parse().expect("a valid directive"));
    }
    (filter, problem)
}

/// Installs logging (and OTLP export, when configured) for the whole process.
pub fn init(format: Option<LogFormat>) -> anyhow::Result<Telemetry> {
    let format = format.unwrap_or_else(LogFormat::detect);
    let (filter, problem) = filter();
    // Lines are written by a background thread, so a request never waits on stderr; none is
    // dropped (a full buffer makes the caller wait instead). The buffer is allocated up front:
    // 8192 lines keep it small (the default, 128k lines, costs about 4 MB of resident memory).
    // The thread drains every waiting line into the buffer, then flushes: one write for many
    // lines under load, and every line out as soon as it is alone.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(8192)
        .lossy(false)
        .thread_name("latchkey-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let ansi = std::io::stderr().is_terminal();
    let _ = ACCESS_SINK.set(AccessSink {
        writer: writer.clone(),
        format,
        ansi,
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    let otlp = otlp::Providers::from_env()?;
    // A global filter (not a per-layer one), so the access log's `tracing::enabled!` check
    // asks exactly what an event would.
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    installed.context("cannot install logging")?;
    if let Some(problem) = problem {
        tracing::warn!("RUST_LOG is not a valid filter ({problem}); using {DEFAULT_FILTER:?}");
    }
    if let Some(otlp) = &otlp {
        tracing::info!(
            "exporting traces and metrics over OTLP to {}",
            otlp.describe()
        );
    }
    Ok(Telemetry {
        otlp,
        _log_writer: guard,
    })
}
