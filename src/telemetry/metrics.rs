//! The histograms latchkey records (no-ops when no meter provider is installed).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Histogram};

#[derive(Clone, Debug)]
pub struct Metrics {
    /// `mcp.server.operation.duration`, seconds, by method, tool and error type.
    pub mcp_operation: Recorder,
    /// `http.server.request.duration`, seconds, by method, route, status and transport.
    pub http_request: Recorder,
    /// `mcp.client.operation.duration`, seconds: calls to an upstream server, by method, tool
    /// and error type.
    pub mcp_client_operation: Recorder,
}

/// Bound histograms per thread, at most this many (then a record looks its attributes up).
const MAX_BOUND: usize = 64;

/// A histogram bound to attributes: which recorder's, to which attributes.
struct Bound {
    recorder: usize,
    attributes: Vec<KeyValue>,
    histogram: BoundHistogram<f64>,
}

thread_local! {
    /// The histograms bound so far on this thread.
    static BOUND: RefCell<Vec<Bound>> = const { RefCell::new(Vec::new()) };
}

/// A histogram that records through histograms bound to each attribute set it has seen.
///
/// Why: a plain `record` hashes every attribute (SipHash) and looks the set up in the SDK's
/// map under a lock; measured with callgrind, the two records of a `tools/call` cost 3,200
/// instructions that way. Requests repeat a handful of sets (method, route, status), so each
/// worker thread keeps the SDK's bound histogram for each and finds it by comparing the
/// attributes, which is much cheaper than hashing them.
#[derive(Clone, Debug)]
pub struct Recorder {
    histogram: Histogram<f64>,
    /// Tells this recorder's bound histograms from another's (tests make several).
    id: usize,
}

impl Recorder {
    fn new(histogram: Histogram<f64>) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Recorder {
            histogram,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn record(&self, value: f64, attributes: &[KeyValue]) {
        BOUND.with_borrow_mut(|bound| {
            if let Some(seen) = bound
                .iter()
                .find(|b| b.recorder == self.id && b.attributes == attributes)
            {
                seen.histogram.record(value);
            } else if bound.len() < MAX_BOUND {
                let histogram = self.histogram.bind(attributes);
                histogram.record(value);
                bound.push(Bound {
                    recorder: self.id,
                    attributes: attributes.to_vec(),
                    histogram,
                });
            } else {
                self.histogram.record(value, attributes);
            }
        });
    }
}

impl Metrics {
    /// On the global meter provider (set up by `otlp` when metrics are exported).
    pub fn new() -> Self {
        Self::from_meter(&opentelemetry::global::meter("latchkey"))
    }

    pub fn from_meter(meter: &opentelemetry::metrics::Meter) -> Self {
        Self {
            mcp_operation: Recorder::new(
                meter
                    .f64_histogram("mcp.server.operation.duration")
                    .with_unit("s")
                    .with_description(
                        "Duration of MCP requests and notifications handled by the server",
                    )
                    .with_boundaries(vec![
                        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
                        300.0,
                    ])
                    .build(),
            ),
            mcp_client_operation: Recorder::new(
                meter
                    .f64_histogram("mcp.client.operation.duration")
                    .with_unit("s")
                    .with_description("Duration of MCP requests sent to an upstream server")
                    .with_boundaries(vec![
                        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
                        300.0,
                    ])
                    .build(),
            ),
            http_request: Recorder::new(
                meter
                    .f64_histogram("http.server.request.duration")
                    .with_unit("s")
                    .with_description("Duration of HTTP server requests")
                    .with_boundaries(vec![
                        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                        10.0,
                    ])
                    .build(),
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use super::{MAX_BOUND, Metrics};

    /// Counts per attribute set of each histogram, bound or not, as the exporter sees them.
    fn counts(exporter: &InMemoryMetricExporter, name: &str) -> Vec<(Vec<KeyValue>, u64)> {
        let mut counts = Vec::new();
        for resource in exporter.get_finished_metrics().unwrap() {
            for metric in resource.scope_metrics().flat_map(|s| s.metrics()) {
                if metric.name() != name {
                    continue;
                }
                if let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() {
                    for point in histogram.data_points() {
                        counts.push((point.attributes().cloned().collect(), point.count()));
                    }
                }
            }
        }
        counts
    }

    #[test]
    fn every_record_lands_under_its_own_attributes() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = Metrics::from_meter(&provider.meter("test"));
        let ok = [KeyValue::new("http.response.status_code", 200)];
        let refused = [KeyValue::new("http.response.status_code", 401)];
        for _ in 0..3 {
            metrics.http_request.record(0.001, &ok);
        }
        metrics.http_request.record(0.001, &refused);
        // More attribute sets than are kept bound: the rest are recorded all the same.
        for n in 0..MAX_BOUND + 10 {
            metrics
                .mcp_operation
                .record(0.001, &[KeyValue::new("gen_ai.tool.name", format!("t{n}"))]);
        }
        provider.force_flush().unwrap();

        let http = counts(&exporter, "http.server.request.duration");
        let count = |attributes: &[KeyValue]| {
            http.iter()
                .find(|(a, _)| a.as_slice() == attributes)
                .map(|(_, c)| *c)
        };
        assert_eq!(count(&ok), Some(3), "{http:?}");
        assert_eq!(count(&refused), Some(1), "{http:?}");
        let mcp = counts(&exporter, "mcp.server.operation.duration");
        assert_eq!(mcp.len(), MAX_BOUND + 10, "{mcp:?}");
        assert!(mcp.iter().all(|(_, c)| *c == 1), "{mcp:?}");
    }
}
