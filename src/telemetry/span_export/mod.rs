//! OTLP/HTTP span export (`http/protobuf`): each span written to protobuf on the thread that
//! ends it ([`EncodingSink`]), batches posted by a thread of their own.
//!
//! Why not `opentelemetry-otlp`'s HTTP exporter (still used for gRPC and for metrics): it
//! converts every span into `opentelemetry-proto`'s message types first, a `String` for every
//! attribute key and value (each value through `fmt`), then lets prost walk that tree
//! computing nested lengths at every level. Measured on `tools/call` with export on (two
//! spans a request, `perf`, 16 connections), that exporter thread was 7% of latchkey's CPU;
//! this encoder writes the same bytes in one pass with no allocation but the body, and
//! `tests` below check it against that crate's conversion of the same spans, field for field.
//!
//! Configured by the standard variables, as that exporter was: the endpoint
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, or `OTEL_EXPORTER_OTLP_ENDPOINT` +
//! `/v1/traces`), headers (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TRACES_HEADERS`), timeout
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`, `…_TRACES_TIMEOUT`, milliseconds, default 10 s). A batch the
//! collector refuses with 429, 502, 503 or 504, or that cannot reach it, is tried again up to
//! three times (100, 200, 400 ms apart) within the timeout. Header values never appear in a
//! message: they are often a backend's API token.
//!
//! `protobuf` is the encoder, `collector` the settings and the POST; this module is the batch
//! thread and the sink the tracer ends spans into.

mod collector;
mod protobuf;

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use crate::telemetry::env;
use crate::telemetry::trace::{FinishedSpan, SpanSink};
use collector::Collector;
use protobuf::{Pending, Prefix, Writer, resource_message};

/// `OTEL_BSP_*`: a number, or its default.
fn bsp(name: &str, default: u64) -> anyhow::Result<u64> {
    match env::var(name) {
        Some(value) => value
            .trim()
            .parse()
            .with_context(|| format!("{name}={value:?} is not a number")),
        None => Ok(default),
    }
}

/// What the sink and its thread share.
struct Shared {
    collector: Collector,
    pending: Mutex<Pending>,
    wake: Condvar,
    stopping: AtomicBool,
    prefix: Prefix,
    /// The resource's schema URL.
    schema_url: Option<String>,
    /// `OTEL_BSP_SCHEDULE_DELAY`: the longest a span waits to be sent.
    delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: this many spans waiting are sent at once.
    batch: usize,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: beyond this many waiting, new spans are dropped.
    queue: usize,
    dropped: AtomicU64,
}

impl Shared {
    fn send(&self, pending: Pending) -> anyhow::Result<()> {
        if pending.count == 0 {
            return Ok(());
        }
        let body = pending.seal(&self.prefix, self.schema_url.as_deref());
        self.collector.post(body.into())
    }

    /// Posts what waits, each batch when it is full or has waited `delay`, until stopped.
    fn run(&self) {
        let mut capacity = 0;
        loop {
            // Allocated here, not under the lock the request path takes.
            let fresh = Pending::new(&self.prefix, capacity);
            let taken = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let deadline = Instant::now() + self.delay;
                while pending.count < self.batch && !self.stopping.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    pending = self
                        .wake
                        .wait_timeout(pending, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                std::mem::replace(&mut *pending, fresh)
            };
            let count = taken.count;
            capacity = capacity.max(taken.body.len());
            if let Err(e) = self.send(taken) {
                tracing::warn!("{e:#}");
            }
            if count == 0 && self.stopping.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

thread_local! {
    /// Where a span is written before it joins the batch (reused: no allocation a span).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Spans written to protobuf on the thread that ends them, and posted in batches by a thread
/// of their own, honouring `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and
/// `OTEL_BSP_MAX_QUEUE_SIZE` as the SDK's `BatchSpanProcessor` does. Why not that processor:
/// it moves every span by value through a channel to its thread, which encodes and frees it
/// there; here a span is written while it is still in the cache of the thread that ended it,
/// and the batch thread only posts.
pub struct EncodingSink {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl fmt::Debug for EncodingSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodingSink")
            .field("collector", &self.shared.collector)
            .finish_non_exhaustive()
    }
}

impl EncodingSink {
    /// From the `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` variables; starts the batch thread.
    pub fn from_env(resource: &Resource) -> anyhow::Result<Self> {
        let queue = bsp("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?.max(1) as usize;
        let prefix = Prefix::new(&resource_message(resource));
        let shared = Arc::new(Shared {
            collector: Collector::from_env()?,
            pending: Mutex::new(Pending::new(&prefix, 0)),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            prefix,
            schema_url: resource.schema_url().map(str::to_owned),
            delay: Duration::from_millis(bsp("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
            batch: (bsp("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.max(1) as usize).min(queue),
            queue,
            dropped: AtomicU64::new(0),
        });
        let runner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("latchkey-spans".into())
            .spawn(move || runner.run())
            .context("cannot start the span export thread")?;
        Ok(EncodingSink {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl SpanSink for EncodingSink {
    fn end(&self, span: FinishedSpan) {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut w = Writer {
                buf: std::mem::take(scratch),
            };
            w.buf.clear();
            w.span(&span);
            drop(span);
            let shared = &self.shared;
            let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.count >= shared.queue {
                drop(pending);
                if shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "spans end faster than the collector takes them: dropping spans \
                         (OTEL_BSP_MAX_QUEUE_SIZE={})",
                        shared.queue
                    );
                }
            } else {
                pending.add(&w.buf);
                if pending.count == shared.batch {
                    shared.wake.notify_one();
                }
            }
            *scratch = w.buf;
        });
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            thread.join().map_err(|_| {
                OTelSdkError::InternalFailure("the span export thread panicked".into())
            })?;
        }
        Ok(())
    }
}
