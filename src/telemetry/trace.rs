//! latchkey's spans: made, filled and ended on the request path holding only what the OTLP
//! message carries, then handed whole to a [`SpanSink`] (`span_export`'s encoder for
//! http/protobuf; an SDK span processor for gRPC and in unit tests).
//!
//! Why not the SDK's tracer: every span it makes is a `SpanBuilder`, then a span behind a
//! mutex inside an `opentelemetry::Context` (an `Arc`), then a `SpanData` moved by value
//! through a channel to the batch thread, which frees it there. Measured with `bench/run` at
//! 16 connections, export on ran at 0.76 of export off that way (BENCHMARKS.md, *Export
//! cost*). Here a span is one plain value; it is encoded and freed on the thread that ends it.
//!
//! Sampling is the SDK's default, parent-based always-on, unless `OTEL_TRACES_SAMPLER` names
//! another sampler: then the SDK's sampler for that variable decides.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, ShouldSample, SpanData, SpanEvents,
    SpanLinks, SpanProcessor,
};

use crate::telemetry::env;

/// The span of the MCP request being handled, left in rmcp's request context so that what
/// the handler calls hangs under it (the bridge's CLIENT spans).
#[derive(Clone, Debug)]
pub struct ServerSpan(pub SpanContext);

/// `context` as a W3C `traceparent` value, for an upstream to continue the trace.
pub fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// A span as it ended: what goes into the OTLP `Span` message.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedSpan {
    pub context: SpanContext,
    /// `SpanId::INVALID` for a root span.
    pub parent_span_id: SpanId,
    pub parent_is_remote: bool,
    pub kind: SpanKind,
    pub name: Cow<'static, str>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// Linked spans (links carry no attributes here).
    pub links: Vec<SpanContext>,
    pub status: Status,
}

impl FinishedSpan {
    /// Left behind in a [`Span`] whose content has gone to the sink (allocates nothing).
    const TAKEN: FinishedSpan = FinishedSpan {
        context: SpanContext::NONE,
        parent_span_id: SpanId::INVALID,
        parent_is_remote: false,
        kind: SpanKind::Internal,
        name: Cow::Borrowed(""),
        start: SystemTime::UNIX_EPOCH,
        end: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        links: Vec::new(),
        status: Status::Unset,
    };

    /// The SDK's form of the span, for an SDK span processor.
    pub fn into_span_data(self, scope: InstrumentationScope) -> SpanData {
        let mut links = SpanLinks::default();
        links.links = self
            .links
            .into_iter()
            .map(|context| Link::new(context, Vec::new(), 0))
            .collect();
        SpanData {
            span_context: self.context,
            parent_span_id: self.parent_span_id,
            parent_span_is_remote: self.parent_is_remote,
            span_kind: self.kind,
            name: self.name,
            start_time: self.start,
            end_time: self.end,
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links,
            status: self.status,
            instrumentation_scope: scope,
        }
    }
}

/// Where ended spans go.
pub trait SpanSink: Send + Sync + 'static {
    fn end(&self, span: FinishedSpan);
    /// Sends what is still buffered and stops; called once, at shutdown.
    fn shutdown(&self) -> OTelSdkResult;
}

/// An SDK span processor as a sink: spans become `SpanData` of the scope `latchkey`.
pub struct SdkSink<P> {
    processor: P,
    scope: InstrumentationScope,
}

impl<P: SpanProcessor + 'static> SdkSink<P> {
    /// `processor` with its resource already set.
    pub fn new(processor: P) -> Self {
        SdkSink {
            processor,
            scope: InstrumentationScope::builder("latchkey").build(),
        }
    }
}

impl<P: SpanProcessor + 'static> SpanSink for SdkSink<P> {
    fn end(&self, span: FinishedSpan) {
        self.processor
            .on_end(span.into_span_data(self.scope.clone()));
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.processor.shutdown_with_timeout(Duration::from_secs(5))
    }
}

struct Inner {
    /// `None`: the default sampler (parent-based always-on), decided without building an
    /// `opentelemetry::Context` for the SDK's sampler.
    sampler: Option<Box<dyn ShouldSample>>,
    ids: RandomIdGenerator,
    sink: Arc<dyn SpanSink>,
}

/// Starts spans; ended spans go to its sink.
///
/// Made once per process (and per unit test) and never freed, so that a span holds it with
/// no reference count: counting would bump, twice a span, a cache line that every worker
/// thread shares.
#[derive(Clone, Copy)]
pub struct Tracer(&'static Inner);

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("sampler", &self.0.sampler)
            .finish_non_exhaustive()
    }
}

/// How a span starts.
pub struct Start {
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    pub attributes: Vec<KeyValue>,
    /// The parent: local (a span of this process) or remote (propagated by a client).
    pub parent: Option<SpanContext>,
    pub links: Vec<SpanContext>,
}

impl Tracer {
    /// Spans go to `sink`; the sampler is the one `OTEL_TRACES_SAMPLER` names, if set.
    pub fn new(sink: Arc<dyn SpanSink>) -> Self {
        let sampler = env::var("OTEL_TRACES_SAMPLER")
            .map(|_| opentelemetry_sdk::trace::Config::default().sampler);
        Tracer(Box::leak(Box::new(Inner {
            sampler,
            ids: RandomIdGenerator::default(),
            sink,
        })))
    }

    pub fn start(&self, start: Start) -> Span {
        let parent = start.parent.filter(SpanContext::is_valid);
        let trace_id = match &parent {
            Some(parent) => parent.trace_id(),
            None => self.0.ids.new_trace_id(),
        };
        let (sampled, trace_state) = match &self.0.sampler {
            None => (
                parent.as_ref().is_none_or(SpanContext::is_sampled),
                parent
                    .as_ref()
                    .map(|p| p.trace_state().clone())
                    .unwrap_or_default(),
            ),
            Some(sampler) => {
                let cx = parent
                    .clone()
                    .map(|p| opentelemetry::Context::new().with_remote_span_context(p));
                let links: Vec<Link> = start
                    .links
                    .iter()
                    .map(|l| Link::with_context(l.clone()))
                    .collect();
                let result = sampler.should_sample(
                    cx.as_ref(),
                    trace_id,
                    &start.name,
                    &start.kind,
                    &start.attributes,
                    &links,
                );
                (
                    result.decision == SamplingDecision::RecordAndSample,
                    result.trace_state,
                )
            }
        };
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let context = SpanContext::new(
            trace_id,
            self.0.ids.new_span_id(),
            flags,
            false,
            trace_state,
        );
        if !sampled {
            // Not recorded: only its context, for children to follow the decision.
            return Span {
                tracer: None,
                data: FinishedSpan {
                    context,
                    ..FinishedSpan::TAKEN
                },
            };
        }
        let (parent_span_id, parent_is_remote) = match &parent {
            Some(parent) => (parent.span_id(), parent.is_remote()),
            None => (SpanId::INVALID, false),
        };
        Span {
            tracer: Some(*self),
            data: FinishedSpan {
                context,
                parent_span_id,
                parent_is_remote,
                kind: start.kind,
                name: start.name,
                start: SystemTime::now(),
                end: SystemTime::UNIX_EPOCH,
                attributes: start.attributes,
                links: start.links,
                status: Status::Unset,
            },
        }
    }

    /// A tracer whose spans are kept in memory as `SpanData`, for unit tests.
    #[cfg(test)]
    pub fn in_memory() -> (Self, opentelemetry_sdk::trace::InMemorySpanExporter) {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let processor = opentelemetry_sdk::trace::SimpleSpanProcessor::new(exporter.clone());
        (Tracer::new(Arc::new(SdkSink::new(processor))), exporter)
    }

    /// Sends what the sink still buffers, and stops it.
    pub fn shutdown(&self) -> OTelSdkResult {
        self.0.sink.shutdown()
    }
}

/// A span being recorded (or, unsampled, only a context). It ends when [`Span::end`] is
/// first called, or when it is dropped.
pub struct Span {
    /// `None` once ended, or when not sampled.
    tracer: Option<Tracer>,
    data: FinishedSpan,
}

impl Span {
    pub fn context(&self) -> &SpanContext {
        &self.data.context
    }

    pub fn set_attribute(&mut self, attribute: KeyValue) {
        if self.tracer.is_some() {
            self.data.attributes.push(attribute);
        }
    }

    /// As the SDK does: `Ok` over `Error` over `Unset`.
    pub fn set_status(&mut self, status: Status) {
        if self.tracer.is_some() && status > self.data.status {
            self.data.status = status;
        }
    }

    /// Ends the span (once: later calls, and the drop, do nothing).
    pub fn end(&mut self) {
        if let Some(tracer) = self.tracer.take() {
            let mut data = std::mem::replace(&mut self.data, FinishedSpan::TAKEN);
            data.end = SystemTime::now();
            tracer.0.sink.end(data);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::error::OTelSdkResult;

    use super::{FinishedSpan, SpanSink, Start, Tracer};

    #[derive(Default)]
    struct Kept(Mutex<Vec<FinishedSpan>>);

    impl SpanSink for Kept {
        fn end(&self, span: FinishedSpan) {
            self.0.lock().unwrap().push(span);
        }
        fn shutdown(&self) -> OTelSdkResult {
            Ok(())
        }
    }

    fn start(parent: Option<SpanContext>) -> Start {
        Start {
            name: "child".into(),
            kind: SpanKind::Server,
            attributes: Vec::new(),
            parent,
            links: Vec::new(),
        }
    }

    fn remote(flags: TraceFlags) -> SpanContext {
        SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            flags,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        )
    }

    #[test]
    fn a_child_follows_its_parent_and_ends_once() {
        let kept = Arc::new(Kept::default());
        let tracer = Tracer::new(kept.clone());
        let root = tracer.start(start(None));
        let mut child = tracer.start(start(Some(root.context().clone())));
        child.set_status(Status::error("failed"));
        child.set_status(Status::Unset);
        assert_eq!(child.context().trace_id(), root.context().trace_id());
        child.end();
        drop(root);
        let spans = kept.0.lock().unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].parent_span_id, spans[1].context.span_id());
        assert!(!spans[0].parent_is_remote);
        assert_eq!(spans[0].status, Status::error("failed"));
        assert_eq!(spans[1].parent_span_id, SpanId::INVALID);
        assert!(
            spans
                .iter()
                .all(|s| s.end >= s.start && s.context.is_sampled())
        );
    }

    #[test]
    fn a_remote_parent_decides_sampling_and_passes_its_trace_state() {
        let kept = Arc::new(Kept::default());
        let tracer = Tracer::new(kept.clone());
        let sampled = tracer.start(start(Some(remote(TraceFlags::SAMPLED))));
        assert_eq!(sampled.context().trace_state().get("vendor"), Some("x"));
        drop(sampled);
        let unsampled = tracer.start(start(Some(remote(TraceFlags::default()))));
        assert!(!unsampled.context().is_sampled());
        assert_eq!(unsampled.context().trace_id(), TraceId::from(7u128));
        drop(unsampled);
        let spans = kept.0.lock().unwrap();
        assert_eq!(spans.len(), 1, "only the sampled one is recorded");
        assert!(spans[0].parent_is_remote);
        assert_eq!(spans[0].parent_span_id, SpanId::from(9u64));
    }
}
