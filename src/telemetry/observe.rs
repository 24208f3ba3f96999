//! What sees every finished MCP operation (`telemetry::mcp`): the record each is handed, and
//! the first observer, the duration histograms.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::{KeyValue, StringValue};

use super::attribute;
use super::metrics::Metrics;
use crate::auth::AuthMethod;
use crate::clients::Client;

/// Which end of an MCP operation latchkey is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A client's request or notification, served.
    Server,
    /// A request to an upstream server, sent by the bridge.
    Client,
}

/// A finished operation, as every observer is handed it. Borrowed, and in the types the
/// histograms' attributes take without copying: this is made for every message.
#[derive(Debug)]
pub struct Finished<'a> {
    pub side: Side,
    /// `tools/call`, `initialize`, … or a custom method's name.
    pub method: &'a Cow<'static, str>,
    /// The tool called (`tools/call`).
    pub tool: Option<&'a Arc<str>>,
    /// The prompt asked for (`prompts/get`).
    pub prompt: Option<&'a Arc<str>>,
    /// Who sent it, in its own words (`clientInfo`) or its User-Agent's (server side).
    pub client: Option<&'a Arc<str>>,
    /// The upstream a client-side operation went to.
    pub upstream: Option<&'a str>,
    /// A JSON-RPC error's code, or `tool_error` for a result with `isError`.
    pub error_type: Option<&'a str>,
    /// Never answered: the client went away, or the request was cancelled.
    pub dropped: bool,
    pub duration: Duration,
    /// The sizes of the arguments and the answer as JSON, when there were any.
    pub arguments_bytes: Option<usize>,
    pub answer_bytes: Option<usize>,
    /// The trace it is a span of, when spans are exported.
    pub trace_id: Option<opentelemetry::trace::TraceId>,
    /// With `--trace-tool-io`: a tool call's arguments and result, redacted and cut.
    pub arguments: Option<&'a str>,
    pub result: Option<&'a str>,
}

/// Everything that sees finished operations, shared by every request: one reference count
/// to clone, and nothing to do when it is empty.
#[derive(Clone, Debug, Default)]
pub struct Observers(Arc<[Arc<dyn Observer>]>);

impl Observers {
    pub fn new(observers: Vec<Arc<dyn Observer>>) -> Self {
        Observers(observers.into())
    }

    /// These, and `observer` after them.
    pub fn with(&self, observer: Arc<dyn Observer>) -> Self {
        let mut all = self.0.to_vec();
        all.push(observer);
        Observers(all.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn finished(&self, operation: &Finished<'_>) {
        for observer in self.0.iter() {
            observer.finished(operation);
        }
    }
}

/// Sees every finished operation. Called on the request's own task, before its answer is
/// sent on: keep it short and never block.
pub trait Observer: Send + Sync + std::fmt::Debug {
    fn finished(&self, operation: &Finished<'_>);
}

impl Observer for Metrics {
    /// The duration histogram of `operation`'s side, by method, tool and error type.
    fn finished(&self, operation: &Finished<'_>) {
        let recorder = match operation.side {
            Side::Server => &self.mcp_operation,
            Side::Client => &self.mcp_client_operation,
        };
        // An array, not a `Vec`: this runs on every message.
        let mut attributes = [
            KeyValue::new(
                attribute::MCP_METHOD_NAME,
                StringValue::from(operation.method.clone()),
            ),
            KeyValue::new(attribute::GEN_AI_TOOL_NAME, ""),
            KeyValue::new(attribute::ERROR_TYPE, ""),
        ];
        let mut given = 1;
        if let Some(tool) = operation.tool {
            attributes[given] = KeyValue::new(attribute::GEN_AI_TOOL_NAME, tool.clone());
            given += 1;
        }
        if let Some(error) = operation.error_type {
            attributes[given] = KeyValue::new(attribute::ERROR_TYPE, error.to_owned());
            given += 1;
        }
        recorder.record(operation.duration.as_secs_f64(), &attributes[..given]);
    }
}

/// A finished HTTP request, as whoever watches requests (the console's refusals and
/// clients) is handed it: what the access log line has, and why it was refused. Never a
/// header, a query or a key: the path is the one the log shows (a key in it is gone).
pub struct Exchange<'a> {
    pub status: u16,
    /// For an error body: its `error` and `error_description`.
    pub error: Option<(&'a str, &'a str)>,
    /// The client's address, as the log line shows it.
    pub client: Option<&'a Client>,
    pub method: &'a str,
    pub path: &'a str,
    pub user_agent: Option<&'a str>,
    /// How the key came, when one was accepted (a refused one is not here).
    pub auth: Option<AuthMethod>,
    /// The accepted key's label, when the key file gives it one.
    pub key_label: Option<&'a str>,
    /// For an MCP request: its JSON-RPC method, and who the client said it is.
    pub mcp_method: Option<&'a str>,
    pub mcp_client: Option<&'a str>,
    pub duration: Duration,
}

/// Sees every finished request, on the request's own task: keep it short and never block.
pub trait ExchangeObserver: Send + Sync + std::fmt::Debug {
    fn finished(&self, exchange: &Exchange<'_>);
}
