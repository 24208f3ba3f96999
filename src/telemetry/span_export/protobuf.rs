//! The OTLP protobuf encoder: an `ExportTraceServiceRequest` written in one pass, each span
//! into a buffer of the thread that ended it, lengths filled in place (see the parent
//! module for why); `tests` check it against `opentelemetry-proto`'s conversion.

use std::time::SystemTime;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;

use crate::telemetry::trace::FinishedSpan;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// `SpanFlags`: the flags say whether the parent was remote.
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// A protobuf message being written.
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
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

    pub(super) fn span(&mut self, span: &FinishedSpan) {
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
pub(super) fn resource_message(resource: &Resource) -> Vec<u8> {
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
pub(super) struct Prefix {
    bytes: Vec<u8>,
    /// Where the `ScopeSpans` length is.
    scope_length_at: usize,
}

impl Prefix {
    pub(super) fn new(resource: &[u8]) -> Self {
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
pub(super) struct Pending {
    pub(super) body: Vec<u8>,
    pub(super) count: usize,
}

impl Pending {
    pub(super) fn new(prefix: &Prefix, capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity.max(prefix.bytes.len() + 4096));
        body.extend_from_slice(&prefix.bytes);
        Pending { body, count: 0 }
    }

    /// Adds a span written by [`Writer::span`].
    pub(super) fn add(&mut self, span: &[u8]) {
        let mut head = Head::default();
        head.varint(2 << 3 | LEN as usize);
        head.varint(span.len());
        self.body.extend_from_slice(head.bytes());
        self.body.extend_from_slice(span);
        self.count += 1;
    }

    /// The `ExportTraceServiceRequest`: lengths filled in, the resource's schema URL last.
    pub(super) fn seal(mut self, prefix: &Prefix, schema_url: Option<&str>) -> Vec<u8> {
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
pub(super) const SCOPE: &str = "latchkey";

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
