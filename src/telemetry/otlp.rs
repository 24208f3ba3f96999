//! OTLP export, configured only by the standard `OTEL_*` variables.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is set (metrics: `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
//! Protocol http/protobuf by default, gRPC with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`; headers,
//! timeout, resource attributes and service name come from their usual variables. With
//! nothing set, no exporter exists and nothing is paid. Spans are `trace`'s; over
//! http/protobuf they go out through `span_export` (why: there), over gRPC through the SDK's
//! batch processor and `opentelemetry-otlp`, as metrics do.

use std::sync::Arc;

use anyhow::Context as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanProcessor as _};

use crate::redact;
use crate::telemetry::env;
use crate::telemetry::span_export::EncodingSink;
use crate::telemetry::trace::{SdkSink, SpanSink, Tracer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    HttpProtobuf,
    Grpc,
}

/// The protocol for one signal (`TRACES` or `METRICS`), from its variable or the general one.
fn protocol(signal: &str) -> anyhow::Result<Protocol> {
    let name = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
    let (var, value) = match env::var(&name) {
        Some(value) => (name, value),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
            env::var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_default(),
        ),
    };
    match value.trim() {
        "" | "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "grpc" => Ok(Protocol::Grpc),
        other => anyhow::bail!("{var}={other:?} is not supported: use http/protobuf or grpc"),
    }
}

/// `service.name` is `latchkey` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` says.
fn resource() -> Resource {
    let builder = Resource::builder();
    let named = env::var("OTEL_SERVICE_NAME").is_some()
        || env::var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
            a.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let builder = if named {
        builder
    } else {
        builder.with_service_name("latchkey")
    };
    builder
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

pub struct Providers {
    tracer: Tracer,
    meter: Option<SdkMeterProvider>,
    description: String,
}

impl Providers {
    /// `None` when no OTLP endpoint is configured.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let traces_endpoint = env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env::var("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let Some(endpoint) = traces_endpoint else {
            return Ok(None);
        };
        // As it may be shown: a password or token in the URL stays out of logs and errors.
        let endpoint = redact::url_for_display(&endpoint);
        let resource = resource();
        let traces_protocol = protocol("TRACES")?;
        let sink: Arc<dyn SpanSink> = match traces_protocol {
            Protocol::HttpProtobuf => Arc::new(
                EncodingSink::from_env(&resource)
                    .with_context(|| format!("cannot set up OTLP trace export to {endpoint}"))?,
            ),
            Protocol::Grpc => {
                let exporter = SpanExporter::builder()
                    .with_tonic()
                    .build()
                    .with_context(|| format!("cannot set up OTLP trace export to {endpoint}"))?;
                let mut processor = BatchSpanProcessor::builder(exporter).build();
                processor.set_resource(&resource);
                Arc::new(SdkSink::new(processor))
            }
        };
        let tracer = Tracer::new(sink);

        let metrics_on = env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || env::var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_some();
        let meter = if metrics_on {
            let metrics = match protocol("METRICS")? {
                Protocol::HttpProtobuf => MetricExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .build(),
                Protocol::Grpc => MetricExporter::builder().with_tonic().build(),
            }
            .context("cannot set up OTLP metric export")?;
            let meter = SdkMeterProvider::builder()
                .with_periodic_exporter(metrics)
                .with_resource(resource)
                .build();
            opentelemetry::global::set_meter_provider(meter.clone());
            Some(meter)
        } else {
            None
        };
        let protocol = match traces_protocol {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        };
        let description = format!(
            "{endpoint} ({protocol}; traces{})",
            if meter.is_some() { ", metrics" } else { "" }
        );
        Ok(Some(Providers {
            tracer,
            meter,
            description,
        }))
    }

    pub fn tracer(&self) -> Tracer {
        self.tracer
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Flushes and stops the exporters (spans and metrics still buffered are sent).
    pub fn shutdown(self) {
        if let Err(e) = self.tracer.shutdown() {
            tracing::warn!("flushing traces at shutdown: {e}");
        }
        if let Some(meter) = self.meter
            && let Err(e) = meter.shutdown()
        {
            tracing::warn!("flushing metrics at shutdown: {e}");
        }
    }
}
