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

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::redact;
use crate::telemetry::env;
use crate::telemetry::trace::{FinishedSpan, SpanSink};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// `SpanFlags`: the flags say whether the parent was remote.
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// A protobuf message being written.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.key(field, LEN);
            self.varint(bytes.len() as u64);
            self.buf.extend_from_slice(bytes);
        }
    }

    /// A length-delimited field written even when empty (an empty string value is a value).
    fn bytes_always(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, LEN);
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, VARINT);
            self.varint(value);
        }
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn fixed32(&mut self, field: u32, value: u32) {
        if value != 0 {
            self.key(field, FIXED32);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// A nested message: its length is written in one byte ahead of it and widened after,
    /// when it turns out longer than 127 bytes (a move of the message, not a second pass).
    fn message(&mut self, field: u32, write: impl FnOnce(&mut Self)) {
        self.key(field, LEN);
        let at = self.buf.len();
        self.buf.push(0);
        write(self);
        let len = self.buf.len() - at - 1;
        if len < 0x80 {
            self.buf[at] = len as u8;
        } else {
            let width = varint_len(len);
            self.buf.resize(self.buf.len() + width - 1, 0);
            self.buf.copy_within(at + 1..at + 1 + len, at + width);
            let mut value = len;
            for byte in &mut self.buf[at..at + width] {
                *byte = (value as u8 & 0x7f) | if value >= 0x80 { 0x80 } else { 0 };
                value >>= 7;
            }
        }
    }

    /// The start of an attribute whose `AnyValue` is `any` bytes long, all lengths known up
    /// front (nothing is moved after): its field and length, the key, the value's field and
    /// length, each run of keys and lengths written as one slice.
    fn attribute_head(&mut self, field: u32, key: &str, any: usize) {
        let kv = 1 + varint_len(key.len()) + key.len() + 1 + varint_len(any) + any;
        let mut head = Head::default();
        head.varint((field << 3 | u32::from(LEN)) as usize);
        head.varint(kv);
        head.varint(1 << 3 | LEN as usize);
        head.varint(key.len());
        self.buf.reserve(head.len + kv);
        self.buf.extend_from_slice(head.bytes());
        self.buf.extend_from_slice(key.as_bytes());
        let mut head = Head::default();
        head.varint(2 << 3 | LEN as usize);
        head.varint(any);
        self.buf.extend_from_slice(head.bytes());
    }

    /// An attribute whose value is a string, the most common kind.
    fn string_attribute(&mut self, field: u32, key: &str, value: &str) {
        self.attribute_head(field, key, 1 + varint_len(value.len()) + value.len());
        self.bytes_always(1, value.as_bytes());
    }

    /// An attribute whose value is an integer (sizes, ports, statuses).
    fn int_attribute(&mut self, field: u32, key: &str, value: i64) {
        self.attribute_head(field, key, 1 + varint_len_u64(value as u64));
        self.key(3, VARINT);
        self.varint(value as u64);
    }

    fn any_value(&mut self, field: u32, value: &Value) {
        self.message(field, |w| match value {
            Value::Bool(b) => {
                w.key(2, VARINT);
                w.varint(u64::from(*b));
            }
            Value::I64(i) => {
                w.key(3, VARINT);
                w.varint(*i as u64);
            }
            Value::F64(f) => {
                w.key(4, FIXED64);
                w.buf.extend_from_slice(&f.to_le_bytes());
            }
            Value::String(s) => w.bytes_always(1, s.as_str().as_bytes()),
            Value::Array(array) => w.message(5, |w| match array {
                Array::Bool(values) => values.iter().for_each(|v| w.any_value(1, &Value::Bool(*v))),
                Array::I64(values) => values.iter().for_each(|v| w.any_value(1, &Value::I64(*v))),
                Array::F64(values) => values.iter().for_each(|v| w.any_value(1, &Value::F64(*v))),
                Array::String(values) => values
                    .iter()
                    .for_each(|v| w.any_value(1, &Value::String(v.clone()))),
                _ => {}
            }),
            _ => {}
        });
    }

    fn attributes<'a>(&mut self, field: u32, attributes: impl IntoIterator<Item = &'a KeyValue>) {
        for kv in attributes {
            match &kv.value {
                Value::String(value) => {
                    self.string_attribute(field, kv.key.as_str(), value.as_str());
                }
                Value::I64(value) => self.int_attribute(field, kv.key.as_str(), *value),
                value => self.message(field, |w| {
                    w.string(1, kv.key.as_str());
                    w.any_value(2, value);
                }),
            }
        }
    }

    fn span(&mut self, span: &FinishedSpan) {
        let context = &span.context;
        self.bytes(1, &context.trace_id().to_bytes());
        self.bytes(2, &context.span_id().to_bytes());
        self.string(3, &context.trace_state().header());
        if span.parent_span_id != SpanId::INVALID {
            self.bytes(4, &span.parent_span_id.to_bytes());
        }
        self.string(5, &span.name);
        self.uint(
            6,
            match span.kind {
                SpanKind::Internal => 1,
                SpanKind::Server => 2,
                SpanKind::Client => 3,
                SpanKind::Producer => 4,
                SpanKind::Consumer => 5,
            },
        );
        self.fixed64(7, nanos(span.start));
        self.fixed64(8, nanos(span.end));
        self.attributes(9, &span.attributes);
        for linked in &span.links {
            self.message(13, |w| {
                w.bytes(1, &linked.trace_id().to_bytes());
                w.bytes(2, &linked.span_id().to_bytes());
                w.string(3, &linked.trace_state().header());
                w.fixed32(6, flags(linked.is_remote(), linked.trace_flags().to_u8()));
            });
        }
        self.message(15, |w| match &span.status {
            Status::Unset => {}
            Status::Ok => w.uint(3, 1),
            Status::Error { description } => {
                w.string(2, description);
                w.uint(3, 2);
            }
        });
        self.fixed32(
            16,
            flags(span.parent_is_remote, span.context.trace_flags().to_u8()),
        );
    }
}

/// Up to four varints of lengths under 4 GiB (five bytes each), gathered on the stack to be
/// copied at once.
#[derive(Default)]
struct Head {
    bytes: [u8; 32],
    len: usize,
}

impl Head {
    fn varint(&mut self, mut value: usize) {
        while value >= 0x80 {
            self.bytes[self.len] = (value as u8) | 0x80;
            self.len += 1;
            value >>= 7;
        }
        self.bytes[self.len] = value as u8;
        self.len += 1;
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Bytes in the varint of `value` (keys and lengths here are small: one to three).
fn varint_len(value: usize) -> usize {
    varint_len_u64(value as u64)
}

fn varint_len_u64(value: u64) -> usize {
    (u64::BITS - (value | 1).leading_zeros()).div_ceil(7) as usize
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | CONTEXT_HAS_IS_REMOTE | if remote { CONTEXT_IS_REMOTE } else { 0 }
}

/// The `Resource` message, written once.
fn resource_message(resource: &Resource) -> Vec<u8> {
    let mut w = Writer { buf: Vec::new() };
    for (key, value) in resource.iter() {
        w.message(1, |w| {
            w.string(1, key.as_str());
            w.any_value(2, value);
        });
    }
    w.buf
}

/// A length written in five bytes, whatever its value: a varint with continuation bits to
/// spare, which protobuf decoders read like any other. It lets a message's length be filled
/// in after the message, in place.
const PADDED: usize = 5;

fn padded_varint(at: &mut [u8], mut value: usize) {
    for (i, byte) in at[..PADDED].iter_mut().enumerate() {
        *byte = (value as u8 & 0x7f) | if i + 1 < PADDED { 0x80 } else { 0 };
        value >>= 7;
    }
}

/// The start of every request: `ResourceSpans` (its length to fill), the resource, the
/// `ScopeSpans` (its length to fill), the scope `latchkey`. Spans follow it.
struct Prefix {
    bytes: Vec<u8>,
    /// Where the `ScopeSpans` length is.
    scope_length_at: usize,
}

impl Prefix {
    fn new(resource: &[u8]) -> Self {
        let mut w = Writer { buf: Vec::new() };
        w.key(1, LEN);
        w.buf.extend_from_slice(&[0; PADDED]);
        w.key(1, LEN);
        w.varint(resource.len() as u64);
        w.buf.extend_from_slice(resource);
        w.key(2, LEN);
        let scope_length_at = w.buf.len();
        w.buf.extend_from_slice(&[0; PADDED]);
        w.message(1, |w| w.string(1, SCOPE));
        Prefix {
            bytes: w.buf,
            scope_length_at,
        }
    }
}

/// Spans written and waiting to be sent, already in the request that will carry them: the
/// [`Prefix`], then one `ScopeSpans.spans` entry after another.
struct Pending {
    body: Vec<u8>,
    count: usize,
}

impl Pending {
    fn new(prefix: &Prefix, capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity.max(prefix.bytes.len() + 4096));
        body.extend_from_slice(&prefix.bytes);
        Pending { body, count: 0 }
    }

    /// Adds a span written by [`Writer::span`].
    fn add(&mut self, span: &[u8]) {
        let mut head = Head::default();
        head.varint(2 << 3 | LEN as usize);
        head.varint(span.len());
        self.body.extend_from_slice(head.bytes());
        self.body.extend_from_slice(span);
        self.count += 1;
    }

    /// The `ExportTraceServiceRequest`: lengths filled in, the resource's schema URL last.
    fn seal(mut self, prefix: &Prefix, schema_url: Option<&str>) -> Vec<u8> {
        let scope_end = self.body.len();
        let mut w = Writer { buf: self.body };
        w.string(3, schema_url.unwrap_or_default());
        self.body = w.buf;
        let at = prefix.scope_length_at;
        padded_varint(&mut self.body[at..], scope_end - at - PADDED);
        let total = self.body.len() - 1 - PADDED;
        padded_varint(&mut self.body[1..], total);
        self.body
    }
}

/// The instrumentation scope of every span.
const SCOPE: &str = "latchkey";

/// Where and how spans are posted.
struct Collector {
    client: reqwest::blocking::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    timeout: Duration,
}

impl fmt::Debug for Collector {
    /// Without the headers: they may hold a backend's token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("endpoint", &redact::url_for_display(self.endpoint.as_str()))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_<name>`, else `OTEL_EXPORTER_OTLP_<name>`, with the variable's
/// name for messages.
fn setting(name: &str) -> Option<(String, String)> {
    [
        format!("OTEL_EXPORTER_OTLP_TRACES_{name}"),
        format!("OTEL_EXPORTER_OTLP_{name}"),
    ]
    .into_iter()
    .find_map(|var| env::var(&var).map(|value| (var, value)))
}

/// `key=value,key=value`, values percent-decoded (the OTLP exporter specification). The
/// general variable's headers first, the traces variable's over them.
fn headers() -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        let Some(list) = env::var(var) else { continue };
        for (n, pair) in list.split(',').enumerate() {
            if pair.trim().is_empty() {
                continue;
            }
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("{var}: entry {} has no '='", n + 1))?;
            let name = HeaderName::try_from(name.trim())
                .with_context(|| format!("{var}: entry {} is not a header name", n + 1))?;
            let value = percent_encoding::percent_decode_str(value.trim()).collect::<Vec<u8>>();
            let mut value = HeaderValue::from_bytes(&value).map_err(|_| {
                anyhow::anyhow!("{var}: the value of {name} is not a valid header value")
            })?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
    }
    Ok(map)
}

impl Collector {
    /// From the `OTEL_EXPORTER_OTLP_*` variables.
    fn from_env() -> anyhow::Result<Self> {
        let endpoint = match env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => url,
            None => {
                let base = env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .unwrap_or_else(|| "http://localhost:4318".to_owned());
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
        };
        let endpoint = reqwest::Url::parse(endpoint.trim()).with_context(|| {
            format!(
                "{:?} is not a URL for OTLP trace export",
                redact::url_for_display(&endpoint)
            )
        })?;
        let timeout = match setting("TIMEOUT") {
            Some((var, ms)) => Duration::from_millis(
                ms.trim()
                    .parse()
                    .with_context(|| format!("{var}={ms:?} is not a number of milliseconds"))?,
            ),
            None => Duration::from_secs(10),
        };
        if let Some((var, compression)) = setting("COMPRESSION")
            && compression.trim() != "none"
        {
            anyhow::bail!("{var}={compression:?} is not supported: use none");
        }
        let headers = headers()?;
        // reqwest's blocking client runs its own runtime, which may not be made (or dropped)
        // on a thread that is already in one.
        let client = std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the HTTP client for OTLP export could not be built"))?
        .context("cannot build the HTTP client for OTLP export")?;
        Ok(Collector {
            client,
            endpoint,
            headers,
            timeout,
        })
    }

    fn post(&self, body: bytes::Bytes) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(100);
        for attempt in 0.. {
            let sent = self
                .client
                .post(self.endpoint.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, "application/x-protobuf")
                .body(body.clone())
                .send();
            let problem = match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let again = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                    (format!("the collector answered {status}"), again)
                }
                Err(e) => (e.without_url().to_string(), true),
            };
            let (message, again) = problem;
            if !again || attempt == 3 || Instant::now() + pause >= deadline {
                anyhow::bail!(
                    "exporting spans to {}: {message}",
                    redact::url_for_display(self.endpoint.as_str())
                );
            }
            std::thread::sleep(pause);
            pause *= 2;
        }
        unreachable!("the loop returns")
    }
}

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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::Resource;
    use prost::Message as _;

    use super::{Pending, Prefix, SCOPE, Writer, resource_message, varint_len};
    use crate::telemetry::trace::FinishedSpan;

    #[test]
    fn varint_lengths_match_the_varints_written() {
        for value in [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152] {
            let mut w = Writer { buf: Vec::new() };
            w.varint(value as u64);
            assert_eq!(varint_len(value), w.buf.len(), "{value}");
        }
    }

    fn span(n: u8) -> FinishedSpan {
        let long = "x".repeat(300 * usize::from(n));
        let linked = SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "link")]).unwrap(),
        );
        FinishedSpan {
            context: SpanContext::new(
                TraceId::from(0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00_u128 + u128::from(n)),
                SpanId::from(0x1020_3040_5060_7080_u64 + u64::from(n)),
                TraceFlags::SAMPLED,
                false,
                TraceState::from_key_value([("vendor", "own")]).unwrap(),
            ),
            parent_span_id: if n == 0 {
                SpanId::INVALID
            } else {
                SpanId::from(5u64)
            },
            parent_is_remote: n == 2,
            kind: [SpanKind::Server, SpanKind::Client, SpanKind::Internal][usize::from(n % 3)]
                .clone(),
            name: Cow::Owned(format!("tools/call hello {n}")),
            start: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_000),
            end: SystemTime::now(),
            attributes: vec![
                KeyValue::new("mcp.method.name", "tools/call"),
                KeyValue::new("long", long),
                KeyValue::new("empty", ""),
                KeyValue::new("client.port", 443i64),
                KeyValue::new("negative", -5i64),
                KeyValue::new("ratio", 0.25),
                KeyValue::new("flag", true),
                KeyValue::new(
                    "list",
                    Value::Array(vec![StringValue::from("a"), StringValue::from("b")].into()),
                ),
                KeyValue::new("ints", Value::Array(vec![1i64, 2].into())),
            ],
            links: if n == 2 { vec![linked] } else { Vec::new() },
            status: match n {
                0 => Status::Unset,
                1 => Status::Ok,
                _ => Status::error("the tool reported an error"),
            },
        }
    }

    /// The bytes decode to exactly what `opentelemetry-proto`'s own conversion makes of the
    /// same spans (the conversion `opentelemetry-otlp` sends), for every kind of field.
    #[test]
    fn encodes_what_the_otlp_crate_would_send() {
        let spans: Vec<FinishedSpan> = (0..4).map(span).collect();
        let resource = Resource::builder()
            .with_service_name("latchkey")
            .with_attribute(KeyValue::new("service.version", "0.1.0"))
            .build();
        let prefix = Prefix::new(&resource_message(&resource));
        let mut pending = Pending::new(&prefix, 0);
        for span in &spans {
            let mut w = Writer { buf: Vec::new() };
            w.span(span);
            pending.add(&w.buf);
        }

        let ours = ExportTraceServiceRequest::decode(
            pending.seal(&prefix, resource.schema_url()).as_slice(),
        )
        .expect("the encoded request decodes");
        let scope = InstrumentationScope::builder(SCOPE).build();
        let theirs = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans
                    .into_iter()
                    .map(|span| span.into_span_data(scope.clone()))
                    .collect(),
                &ResourceAttributesWithSchema::from(&resource),
            ),
        };
        assert_eq!(ours, theirs);
    }
}
