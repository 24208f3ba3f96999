//! What sees every finished MCP operation (`telemetry::mcp`): the record each is handed, and
//! the first observer, the duration histograms.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::{KeyValue, StringValue};

use super::attribute;
use super::metrics::Metrics;

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
    /// The upstream a client-side operation went to.
    pub upstream: Option<&'a str>,
    /// A JSON-RPC error's code, or `tool_error` for a result with `isError`.
    pub error_type: Option<&'a str>,
    pub duration: Duration,
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
