//! The two histograms latchkey records (no-ops when no meter provider is installed).

use opentelemetry::metrics::Histogram;

#[derive(Clone, Debug)]
pub struct Metrics {
    /// `mcp.server.operation.duration`, seconds, by method, tool and error type.
    pub mcp_operation: Histogram<f64>,
    /// `http.server.request.duration`, seconds, by method, route, status and transport.
    pub http_request: Histogram<f64>,
}

impl Metrics {
    /// On the global meter provider (set up by `otlp` when metrics are exported).
    pub fn new() -> Self {
        Self::from_meter(&opentelemetry::global::meter("latchkey"))
    }

    pub fn from_meter(meter: &opentelemetry::metrics::Meter) -> Self {
        Self {
            mcp_operation: meter
                .f64_histogram("mcp.server.operation.duration")
                .with_unit("s")
                .with_description(
                    "Duration of MCP requests and notifications handled by the server",
                )
                .with_boundaries(vec![
                    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ])
                .build(),
            http_request: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                ])
                .build(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
