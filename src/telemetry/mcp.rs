//! Every MCP operation latchkey takes part in, observed once when it finishes: a request or
//! notification it serves (`Side::Server`, `mcp::span`) or a request the bridge sends to an
//! upstream (`Side::Client`, `mcp::bridge`). An [`Operation`] owns its span (when spans are
//! exported) and, when it ends, hands one [`Finished`] record to every [`Observer`]: the duration
//! histograms (`mcp.server.operation.duration`, `mcp.client.operation.duration`) are the
//! first, and whatever else wants to see operations (a console) subscribes the same way,
//! not through a second code path.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, Status};

use super::attribute;
pub use super::observe::{Finished, Observer, Observers, Side};
use super::trace::Span;

/// What a message served names, as its operation keeps it.
pub struct Served {
    pub method: Cow<'static, str>,
    pub tool: Option<Arc<str>>,
    pub prompt: Option<Arc<str>>,
    /// Who sent it, by what it says of itself.
    pub client: Option<Arc<str>>,
    /// Its arguments' size as JSON.
    pub arguments_bytes: Option<usize>,
    /// Its arguments as recorded (`--trace-tool-io`): redacted, cut.
    pub arguments: Option<String>,
}

/// One operation: its span (when exported), open until it ends (or, dropped unanswered,
/// with what is known).
pub struct Operation {
    span: Option<Span>,
    start: Instant,
    observers: Observers,
    side: Side,
    method: Cow<'static, str>,
    tool: Option<Arc<str>>,
    prompt: Option<Arc<str>>,
    client: Option<Arc<str>>,
    upstream: Option<Arc<str>>,
    error_type: Option<String>,
    arguments_bytes: Option<usize>,
    answer_bytes: Option<usize>,
    arguments: Option<String>,
    result: Option<String>,
    ended: bool,
    answered: bool,
}

impl Operation {
    /// The operation of `method` (naming `tool`), whose span `span` has started.
    pub fn new(
        observers: &Observers,
        side: Side,
        span: Option<Span>,
        method: Cow<'static, str>,
        tool: Option<Arc<str>>,
    ) -> Self {
        let named = Served {
            method,
            tool,
            prompt: None,
            client: None,
            arguments_bytes: None,
            arguments: None,
        };
        Operation::open(observers, side, span, named)
    }

    /// The operation of a message served, `named` as it says (built at once: through a
    /// builder, each of four steps moved the operation, 250 bytes, a request).
    pub fn served(observers: &Observers, span: Option<Span>, named: Served) -> Self {
        Operation::open(observers, Side::Server, span, named)
    }

    fn open(observers: &Observers, side: Side, span: Option<Span>, named: Served) -> Self {
        Operation {
            span,
            start: Instant::now(),
            observers: observers.clone(),
            side,
            method: named.method,
            tool: named.tool,
            prompt: named.prompt,
            client: named.client,
            upstream: None,
            error_type: None,
            arguments_bytes: named.arguments_bytes,
            answer_bytes: None,
            arguments: named.arguments,
            result: None,
            ended: false,
            answered: false,
        }
    }

    /// The operation went to `upstream` (client side).
    pub fn to_upstream(mut self, upstream: Arc<str>) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// Its result as recorded (`--trace-tool-io`): redacted, cut.
    pub fn record_result(&mut self, result: String) {
        self.result = Some(result);
    }

    /// The span's context, when there is a span.
    pub fn context(&self) -> Option<&SpanContext> {
        self.span.as_ref().map(Span::context)
    }

    /// An attribute for the span alone (the record's fields are fixed).
    pub fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(span) = &mut self.span {
            span.set_attribute(attribute);
        }
    }

    /// Whether anything sees it: with neither span nor observer, its sizes are not counted.
    pub fn is_observed(&self) -> bool {
        self.span.is_some() || !self.observers.is_empty()
    }

    /// A notification was handled (it has no answer), or an answer nobody measures came.
    pub fn handled(&mut self) {
        self.answered = true;
    }

    /// The answer came, `bytes` long as JSON.
    pub fn answered(&mut self, bytes: usize) {
        self.answered = true;
        self.answer_bytes = Some(bytes);
        self.set_attribute(KeyValue::new("latchkey.result.bytes", bytes as i64));
    }

    /// It failed: `error_type` on the span and the record, `description` as the status.
    pub fn fail(&mut self, error_type: String, description: String) {
        self.answered = true;
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new(attribute::ERROR_TYPE, error_type.clone()));
            span.set_status(Status::error(description));
        }
        self.error_type = Some(error_type);
    }

    /// A JSON-RPC error: its code is the error type.
    pub fn failed_with(&mut self, error: &rmcp::ErrorData) {
        let code = error.code.0.to_string();
        self.set_attribute(KeyValue::new(
            attribute::RPC_RESPONSE_STATUS_CODE,
            code.clone(),
        ));
        self.fail(code, error.message.to_string());
    }

    /// Ends the span and hands the record to every observer, once.
    pub fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if let Some(span) = &mut self.span {
            span.end();
        }
        let finished = Finished {
            side: self.side,
            method: &self.method,
            tool: self.tool.as_ref(),
            prompt: self.prompt.as_ref(),
            client: self.client.as_ref(),
            upstream: self.upstream.as_deref(),
            error_type: self.error_type.as_deref(),
            dropped: !self.answered,
            duration: self.start.elapsed(),
            arguments_bytes: self.arguments_bytes,
            answer_bytes: self.answer_bytes,
            trace_id: self.context().map(|c| c.trace_id()),
            arguments: self.arguments.as_deref(),
            result: self.result.as_deref(),
        };
        self.observers.finished(&finished);
    }
}

impl Drop for Operation {
    /// A notification's span, or a request's whose answer never came (its client went away
    /// and rmcp dropped the handler's future), ends here with what is known.
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::SpanKind;

    use super::*;
    use crate::telemetry::Export;
    use crate::telemetry::metrics::Metrics;
    use crate::telemetry::trace::{Start, Tracer};

    /// Keeps what it is handed, as text.
    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<String>>);

    impl Observer for Kept {
        fn finished(&self, operation: &Finished<'_>) {
            self.0.lock().unwrap().push(format!(
                "{:?} {} {:?} {:?} {:?}",
                operation.side,
                operation.method,
                operation.tool.map(|t| &**t),
                operation.upstream,
                operation.error_type
            ));
        }
    }

    #[test]
    fn each_operation_is_handed_to_every_observer_once_ended_or_dropped() {
        let kept = Arc::new(Kept::default());
        let (tracer, spans) = Tracer::in_memory();
        let metrics = Metrics::from_meter(&opentelemetry::global::meter("test"));
        let export = Export::new(tracer, metrics).with_observer(kept.clone());
        let start = |name: &'static str| {
            export.tracer.start(Start {
                name: name.into(),
                kind: SpanKind::Server,
                attributes: Vec::new(),
                parent: None,
                links: Vec::new(),
            })
        };
        let mut call = Operation::new(
            export.observers(),
            Side::Client,
            Some(start("tools/call hello")),
            "tools/call".into(),
            Some("hello".into()),
        )
        .to_upstream("docs".into());
        call.fail("-32603".into(), "it broke".into());
        call.end();
        call.end();
        drop(call);
        drop(Operation::new(
            export.observers(),
            Side::Server,
            Some(start("notifications/initialized")),
            "notifications/initialized".into(),
            None,
        ));
        assert_eq!(
            *kept.0.lock().unwrap(),
            [
                r#"Client tools/call Some("hello") Some("docs") Some("-32603")"#,
                "Server notifications/initialized None None None",
            ]
        );
        assert_eq!(spans.get_finished_spans().unwrap().len(), 2);
    }
}
