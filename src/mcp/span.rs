//! One SERVER span per MCP request or notification, on the OpenTelemetry MCP semantic
//! conventions: `tools/call hello` with `mcp.method.name`, `gen_ai.tool.name`,
//! `jsonrpc.request.id`, `mcp.protocol.version`, `mcp.session.id` (not on protocol
//! 2026-07-28, which has no sessions), `client.address`/`client.port`, and `error.type` on
//! failure. Each is a `telemetry::mcp::Operation`: ending, it is handed to the observers.
//!
//! [`Traced`] wraps the server handler as rmcp calls it, so the span is made from the message
//! rmcp has already parsed and the result the handler returns: nothing is read twice. The
//! HTTP request's parts ride along in the request context (rmcp puts them there), and with
//! them the HTTP span the gate started, which is this span's parent — or, when the client
//! propagated its own trace context in `params._meta`, its link. Always installed: with no
//! exporter there is no span, but the operation is still handed to the observers (the
//! console's activity) and its method noted for the access log line (`http::McpNote`).
//!
//! rmcp's HTTP service takes a `ServerHandler`, not any `Service`, so `Traced` is one: every
//! method of rmcp 3.11's `ServerHandler` is passed on to the inner handler, the operations
//! from one table (`traced_requests!`, `traced_notifications!`); a method left out would
//! silently answer with rmcp's default, and `tests/architecture.rs` fails when rmcp has one
//! this file does not name. `subscriptions/listen` is a stream, not an operation, and gets no
//! span.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::StringValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rmcp::ErrorData as McpError;
use rmcp::ServerHandler;
// The pass-through below names most of rmcp's model types.
use rmcp::model::*;
use rmcp::service::{
    MaybeSendFuture, NotificationContext, RequestContext, RoleServer, SubscriptionContext,
};

use crate::redact;
use crate::telemetry::Export;
use crate::telemetry::attribute;
use crate::telemetry::http::{HttpSpan, McpNote, Noted};
use crate::telemetry::mcp::{Observers, Operation, Served, Side};
use crate::telemetry::trace::{ServerSpan, Span, Start};

/// The protocol version from which there are no sessions (and no `mcp.session.id`).
const STATELESS_PROTOCOL: &str = "2026-07-28";

/// What the operations need: the exporter (spans are made only with one), who observes
/// them, and whether tool arguments and results are recorded.
#[derive(Clone, Debug)]
pub struct McpTracing {
    pub export: Option<Export>,
    /// The export's observers, or without export the console's.
    pub observers: Observers,
    /// `--trace-tool-io`: record arguments and results (redacted) on the span.
    pub tool_io: bool,
}

/// A server handler whose every request and notification is a span.
#[derive(Clone)]
pub struct Traced<S> {
    inner: S,
    tracing: McpTracing,
}

impl McpTracing {
    /// Whether anything looks at operations: a span exporter or an observer.
    fn is_observed(&self) -> bool {
        self.export.is_some() || !self.observers.is_empty()
    }
}

impl<S> Traced<S> {
    pub fn new(inner: S, tracing: McpTracing) -> Self {
        Self { inner, tracing }
    }
}

/// Requests, each `name(params: Type) -> Answer, method, detail, inspect;`: an operation
/// starts with the `detail` of the params, the inner handler answers, and `inspect` records
/// the answer on the span.
macro_rules! traced_requests {
    ($($name:ident($($param:ident: $params:ty)?) -> $answer:ty,
        $method:expr, $detail:expr, $inspect:expr;)*) => {$(
        fn $name(
            &self,
            $($param: $params,)?
            mut context: RequestContext<RoleServer>,
        ) -> impl Future<Output = Result<$answer, McpError>> + MaybeSendFuture + '_ {
            let operation = self.request($method, &mut context, $detail);
            traced(
                operation,
                self.tracing.tool_io,
                self.inner.$name($($param,)? context),
                $inspect,
            )
        }
    )*};
}

/// Notifications, each `name(params: Type), method;`: a span while the handler handles it.
macro_rules! traced_notifications {
    ($($name:ident($($param:ident: $params:ty)?), $method:expr;)*) => {$(
        fn $name(
            &self,
            $($param: $params,)?
            context: NotificationContext<RoleServer>,
        ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
            let operation = self.notification($method, &context);
            notified(operation, self.inner.$name($($param,)? context))
        }
    )*};
}

// Deprecated methods are passed on too: clients on older protocols still call them.
#[allow(deprecated)]
impl<S: ServerHandler> ServerHandler for Traced<S> {
    traced_requests! {
        ping() -> (), PingRequestMethod::VALUE, Detail::default(), inspect_size;
        initialize(request: InitializeRequestParams) -> InitializeResult,
            InitializeResultMethod::VALUE, Detail::initialize(&request), inspect_size;
        discover() -> DiscoverResult, DiscoverRequestMethod::VALUE, Detail::default(), inspect_size;
        complete(request: CompleteRequestParams) -> CompleteResult,
            CompleteRequestMethod::VALUE, Detail::default(), inspect_size;
        set_level(request: SetLevelRequestParams) -> (),
            SetLevelRequestMethod::VALUE, Detail::default(), inspect_size;
        get_prompt(request: GetPromptRequestParams) -> GetPromptResponse,
            GetPromptRequestMethod::VALUE, Detail::prompt(&request), inspect_prompt;
        list_prompts(request: Option<PaginatedRequestParams>) -> ListPromptsResult,
            ListPromptsRequestMethod::VALUE, Detail::default(), inspect_size;
        list_resources(request: Option<PaginatedRequestParams>) -> ListResourcesResult,
            ListResourcesRequestMethod::VALUE, Detail::default(), inspect_size;
        list_resource_templates(request: Option<PaginatedRequestParams>)
            -> ListResourceTemplatesResult,
            ListResourceTemplatesRequestMethod::VALUE, Detail::default(), inspect_size;
        read_resource(request: ReadResourceRequestParams) -> ReadResourceResponse,
            ReadResourceRequestMethod::VALUE, Detail::default(), inspect_read;
        subscribe(request: SubscribeRequestParams) -> (),
            SubscribeRequestMethod::VALUE, Detail::default(), inspect_size;
        unsubscribe(request: UnsubscribeRequestParams) -> (),
            UnsubscribeRequestMethod::VALUE, Detail::default(), inspect_size;
        call_tool(request: CallToolRequestParams) -> CallToolResponse,
            CallToolRequestMethod::VALUE, Detail::call(&request), inspect_call;
        list_tools(request: Option<PaginatedRequestParams>) -> ListToolsResult,
            ListToolsRequestMethod::VALUE, Detail::default(), inspect_size;
        on_custom_request(request: CustomRequest) -> CustomResult,
            request.method.clone(), Detail::default(), inspect_size;
        get_task(request: GetTaskParams) -> GetTaskResult,
            GetTaskMethod::VALUE, Detail::default(), inspect_size;
        update_task(request: UpdateTaskParams) -> (),
            UpdateTaskMethod::VALUE, Detail::default(), inspect_size;
        cancel_task(request: CancelTaskParams) -> (),
            CancelTaskMethod::VALUE, Detail::default(), inspect_size;
        list_skills(request: Option<PaginatedRequestParams>) -> ListSkillsResult,
            ListSkillsRequestMethod::VALUE, Detail::default(), inspect_size;
        get_skill(request: GetSkillRequestParams) -> GetSkillResult,
            GetSkillRequestMethod::VALUE, Detail::default(), inspect_size;
        read_resource_directory(request: ReadResourceDirectoryRequestParams)
            -> ReadResourceDirectoryResult,
            ReadResourceDirectoryRequestMethod::VALUE, Detail::default(), inspect_size;
    }

    traced_notifications! {
        on_cancelled(notification: CancelledNotificationParam), CancelledNotificationMethod::VALUE;
        on_progress(notification: ProgressNotificationParam), ProgressNotificationMethod::VALUE;
        on_initialized(), InitializedNotificationMethod::VALUE;
        on_roots_list_changed(), RootsListChangedNotificationMethod::VALUE;
        on_custom_notification(notification: CustomNotification), notification.method.clone();
    }

    // What is not an operation is passed on as it is.

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, McpError> {
        self.inner.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    fn listen(
        &self,
        context: SubscriptionContext,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.listen(context)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }
}

impl<S> Traced<S> {
    /// The operation of a request to `method`.
    fn request(
        &self,
        method: impl Into<Cow<'static, str>>,
        context: &mut RequestContext<RoleServer>,
        detail: Detail<'_>,
    ) -> Operation {
        if !self.tracing.is_observed() {
            return self.noted_only(method.into(), detail.target, &context.extensions);
        }
        // `initialize` says its version and client in its params; later messages in `_meta`
        // (2026-07-28) or through the session's handshake. The version is the span's only,
        // and asking rmcp for either decodes and clones: not without a span.
        let exporting = self.tracing.export.is_some();
        // The session's handshake, borrowed: rmcp's `client_info()` clones it (about 350
        // instructions a request, bench/instructions).
        let peer = detail
            .initialize
            .is_none()
            .then(|| context.peer.peer_info())
            .flatten();
        let (protocol, client) = match detail.initialize {
            Some(init) => (
                exporting.then(|| init.protocol_version.to_string()),
                Some(Cow::Borrowed(&init.client_info)),
            ),
            None => (
                exporting
                    .then(|| context.protocol_version())
                    .flatten()
                    .map(|v| v.to_string()),
                context.meta.client_info().map(Cow::Owned).or_else(|| {
                    let peer = &peer.as_deref()?.client_info;
                    (!is_rmcp_placeholder(peer)).then_some(Cow::Borrowed(peer))
                }),
            ),
        };
        let operation = start(
            &self.tracing,
            Message {
                method: method.into(),
                target: detail.target,
                request_id: Some(&context.id),
                arguments: detail.arguments,
                protocol,
                client,
                meta: Some(&context.meta),
                extensions: &context.extensions,
            },
        );
        if let Some(span) = operation.context() {
            context.extensions.insert(ServerSpan(span.clone()));
        }
        operation
    }

    /// With neither span nor observer: the access line's note, and an operation that records
    /// nothing (no client, sizes or protocol looked up).
    fn noted_only(
        &self,
        method: Cow<'static, str>,
        target: Option<(&'static str, &str)>,
        extensions: &Extensions,
    ) -> Operation {
        note(
            mcp_note(extensions.get::<http::request::Parts>()),
            &method,
            target.map(|(key, name)| (key, Arc::from(name))).as_ref(),
            None,
        );
        Operation::new(&self.tracing.observers, Side::Server, None, method, None)
    }

    /// The operation of a notification of `method`.
    fn notification(
        &self,
        method: impl Into<Cow<'static, str>>,
        context: &NotificationContext<RoleServer>,
    ) -> Operation {
        if !self.tracing.is_observed() {
            return self.noted_only(method.into(), None, &context.extensions);
        }
        start(
            &self.tracing,
            Message {
                method: method.into(),
                target: None,
                request_id: None,
                arguments: None,
                protocol: context
                    .peer
                    .peer_info()
                    .map(|info| info.protocol_version.to_string()),
                client: None,
                meta: Some(&context.meta),
                extensions: &context.extensions,
            },
        )
    }
}

/// The client rmcp makes up where none said who it is (stateless mode, where each request is
/// its own session): rmcp itself, which would name latchkey's dependency as the caller.
fn is_rmcp_placeholder(client: &rmcp::model::Implementation) -> bool {
    static PLACEHOLDER: std::sync::LazyLock<rmcp::model::Implementation> =
        std::sync::LazyLock::new(rmcp::model::Implementation::default);
    client.name == PLACEHOLDER.name && client.version == PLACEHOLDER.version
}

/// What a request's params add to its span.
#[derive(Default)]
struct Detail<'a> {
    /// The tool or prompt named, with its attribute.
    target: Option<(&'static str, &'a str)>,
    arguments: Option<&'a JsonObject>,
    initialize: Option<&'a InitializeRequestParams>,
}

impl<'a> Detail<'a> {
    fn call(params: &'a CallToolRequestParams) -> Self {
        Detail {
            target: Some((attribute::GEN_AI_TOOL_NAME, &params.name)),
            arguments: params.arguments.as_ref(),
            initialize: None,
        }
    }

    fn prompt(params: &'a GetPromptRequestParams) -> Self {
        Detail {
            target: Some((attribute::GEN_AI_PROMPT_NAME, &params.name)),
            ..Detail::default()
        }
    }

    fn initialize(params: &'a InitializeRequestParams) -> Self {
        Detail {
            initialize: Some(params),
            ..Detail::default()
        }
    }
}

/// How an answer is recorded on its operation; the flag is `--trace-tool-io`.
type Inspect<T> = fn(&mut Operation, &T, bool);

/// The handler's answer, recorded on `operation` (by `inspect`) when it comes.
async fn traced<T>(
    mut operation: Operation,
    tool_io: bool,
    answer: impl Future<Output = Result<T, McpError>>,
    inspect: Inspect<T>,
) -> Result<T, McpError> {
    let result = answer.await;
    match &result {
        Ok(answer) => inspect(&mut operation, answer, tool_io),
        Err(error) => operation.failed_with(error),
    }
    operation.end();
    result
}

/// A notification handled; its span ends with it.
async fn notified(mut operation: Operation, handled: impl Future<Output = ()>) {
    handled.await;
    operation.handled();
}

/// Any answer: its size.
fn inspect_size<T: serde::Serialize>(operation: &mut Operation, answer: &T, _: bool) {
    answered(operation, || json_len(answer));
}

/// The answer came: its size, measured only when something sees it.
fn answered(operation: &mut Operation, size: impl FnOnce() -> usize) {
    if operation.is_observed() {
        operation.answered(size());
    } else {
        operation.handled();
    }
}

/// A prompt: its size, when complete (one that asks the client for input has none yet).
fn inspect_prompt(operation: &mut Operation, answer: &GetPromptResponse, tool_io: bool) {
    if let GetPromptResponse::Complete(prompt) = answer {
        inspect_size(operation, prompt, tool_io);
    }
}

/// A resource read: its size, when complete.
fn inspect_read(operation: &mut Operation, answer: &ReadResourceResponse, tool_io: bool) {
    if let ReadResourceResponse::Complete(read) = answer {
        inspect_size(operation, read, tool_io);
    }
}

/// A tool's answer: its size, its result (with `--trace-tool-io`), and whether it failed.
fn inspect_call(operation: &mut Operation, answer: &CallToolResponse, tool_io: bool) {
    let CallToolResponse::Complete(call) = answer else {
        return;
    };
    answered(operation, || {
        super::json_size::of_call_result(call).unwrap_or_else(|| json_len(call))
    });
    if tool_io
        && operation.is_observed()
        && let Ok(value) = serde_json::to_value(call)
    {
        let recorded = redact::json(&value).to_string();
        operation.set_attribute(KeyValue::new(
            attribute::GEN_AI_TOOL_CALL_RESULT,
            recorded.clone(),
        ));
        operation.record_result(cut(recorded));
    }
    if call.is_error == Some(true) {
        operation.fail(
            "tool_error".to_owned(),
            "the tool reported an error (isError)".to_owned(),
        );
    }
}

/// What a message is about, for its span's name and attributes.
struct Message<'a> {
    /// One of rmcp's `…Method::VALUE`s (or a custom method's name).
    method: Cow<'static, str>,
    /// The tool or prompt named (`tools/call`, `prompts/get`).
    target: Option<(&'static str, &'a str)>,
    request_id: Option<&'a NumberOrString>,
    arguments: Option<&'a JsonObject>,
    protocol: Option<String>,
    client: Option<Cow<'a, Implementation>>,
    /// `_meta` of the message, for a propagated trace context.
    meta: Option<&'a MetaObject>,
    extensions: &'a Extensions,
}

/// The operation of `message`: with export on, its SERVER span started, with the
/// attributes it has; without, only what the observers are handed. Inlined into its two
/// callers, so that the message is built where it is used rather than moved (a 200-byte copy
/// a request; BENCHMARKS.md, the console's fourth round).
#[inline(always)]
fn start(tracing: &McpTracing, mut message: Message<'_>) -> Operation {
    let parts = message.extensions.get::<http::request::Parts>();
    // Shared by the span's attribute and the record's.
    let target = message
        .target
        .map(|(key, target)| (key, Arc::<str>::from(target)));
    let access_note = mcp_note(parts);
    let client = client_name(message.client.as_deref(), access_note, parts);
    note(
        access_note,
        &message.method,
        target.as_ref(),
        client.as_ref(),
    );
    let observed = tracing.is_observed();
    let arguments_bytes = message
        .arguments
        .filter(|_| observed)
        .map(super::json_size::of_object);
    // With --trace-tool-io, redacted once for the span and the observers both.
    let recorded = message
        .arguments
        .filter(|_| observed && tracing.tool_io)
        .map(|arguments| redact::json(&serde_json::Value::Object(arguments.clone())).to_string());
    let recorded_arguments = recorded.clone().map(cut);
    let span = tracing.export.as_ref().map(|export| {
        let mut attributes = Vec::with_capacity(14);
        attributes.push(KeyValue::new(
            attribute::MCP_METHOD_NAME,
            StringValue::from(message.method.clone()),
        ));
        message_attributes(&mut attributes, &mut message, target.as_ref(), parts);
        tool_io_attributes(&mut attributes, arguments_bytes, recorded);
        client_attributes(&mut attributes, message.client.take(), &client, parts);
        span_of(export, &message, attributes)
    });
    let named = |kind: &str| {
        target
            .as_ref()
            .filter(|(key, _)| *key == kind)
            .map(|(_, name)| name.clone())
    };
    Operation::served(
        &tracing.observers,
        span,
        Served {
            method: message.method,
            tool: named(attribute::GEN_AI_TOOL_NAME),
            prompt: named(attribute::GEN_AI_PROMPT_NAME),
            client,
            arguments_bytes,
            arguments: recorded_arguments,
        },
    )
}

/// The most of a recorded argument or result the observers keep (the span keeps it whole).
const MAX_RECORDED: usize = 4096;

/// `text` cut to [`MAX_RECORDED`] bytes, at a character, marked when cut.
fn cut(mut text: String) -> String {
    if text.len() > MAX_RECORDED {
        let mut end = MAX_RECORDED;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Tells the access record (`http::McpNote`, when the gate left one) what the message was.
#[allow(
    clippy::ptr_arg,
    reason = "the note keeps the Cow: a known method is not copied"
)]
fn note(
    access_note: Option<&McpNote>,
    method: &Cow<'static, str>,
    target: Option<&(&'static str, Arc<str>)>,
    client: Option<&Arc<str>>,
) {
    if let Some(note) = access_note {
        note.set(Noted {
            method: method.clone(),
            target: target.map(|(key, name)| (log_field(key), name.clone())),
            client: client.cloned(),
        });
    }
}

/// The access record's note (`http::McpNote`), when the gate left one in the request.
fn mcp_note(parts: Option<&http::request::Parts>) -> Option<&McpNote> {
    parts?.extensions.get::<McpNote>()
}

/// The access log's field for a target's attribute.
fn log_field(attribute: &str) -> &'static str {
    if attribute == attribute::GEN_AI_PROMPT_NAME {
        "prompt"
    } else {
        "tool"
    }
}

/// The SERVER span of `message`. A client that propagates its context (`traceparent` in
/// `params._meta`) is the parent; the HTTP request's span, otherwise the parent, is linked.
fn span_of(export: &Export, message: &Message<'_>, attributes: Vec<KeyValue>) -> Span {
    let http = message
        .extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<HttpSpan>());
    let name = match message.target {
        Some((_, target)) => Cow::Owned(format!("{} {target}", message.method)),
        None => message.method.clone(),
    };
    let (parent, links) = match (message.meta.and_then(propagated_context), http) {
        (Some(parent), http) => (
            Some(parent),
            http.iter().map(|h| h.context.clone()).collect(),
        ),
        (None, http) => (http.map(|h| h.context.clone()), Vec::new()),
    };
    export.tracer.start(Start {
        name,
        kind: SpanKind::Server,
        attributes,
        parent,
        links,
    })
}

/// The arguments' size and, with `--trace-tool-io`, the arguments themselves (redacted).
fn tool_io_attributes(
    attributes: &mut Vec<KeyValue>,
    arguments_bytes: Option<usize>,
    recorded: Option<String>,
) {
    if let Some(bytes) = arguments_bytes {
        attributes.push(KeyValue::new("latchkey.arguments.bytes", bytes as i64));
    }
    if let Some(recorded) = recorded {
        attributes.push(KeyValue::new(
            attribute::GEN_AI_TOOL_CALL_ARGUMENTS,
            recorded,
        ));
    }
}

/// The protocol version, session, request id and target of `message`.
fn message_attributes(
    attributes: &mut Vec<KeyValue>,
    message: &mut Message<'_>,
    target: Option<&(&'static str, Arc<str>)>,
    parts: Option<&http::request::Parts>,
) {
    let stateless = message.protocol.as_deref() >= Some(STATELESS_PROTOCOL);
    if let Some(protocol) = message.protocol.take() {
        attributes.push(KeyValue::new(attribute::MCP_PROTOCOL_VERSION, protocol));
    }
    if !stateless
        && let Some(session) = parts
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new(attribute::MCP_SESSION_ID, session.to_owned()));
    }
    if let Some(id) = message.request_id {
        attributes.push(KeyValue::new(attribute::JSONRPC_REQUEST_ID, id.to_string()));
    }
    if let Some((key, target)) = target {
        attributes.push(KeyValue::new(*key, target.clone()));
        if message.method == CallToolRequestMethod::VALUE {
            attributes.push(KeyValue::new(
                attribute::GEN_AI_OPERATION_NAME,
                "execute_tool",
            ));
        }
    }
}

/// The longest client name kept: a User-Agent can be anything up to the header limit.
const MAX_CLIENT_NAME: usize = 128;

/// Who the client says it is (`clientInfo`), or what its User-Agent says (as the access
/// record's note has it, else from the headers).
fn client_name(
    client: Option<&Implementation>,
    access_note: Option<&McpNote>,
    parts: Option<&http::request::Parts>,
) -> Option<Arc<str>> {
    let name = match (client, access_note) {
        (Some(client), _) => client.name.as_str(),
        (None, Some(note)) => note.user_agent()?,
        (None, None) => parts
            .and_then(|p| p.headers.get(http::header::USER_AGENT))
            .and_then(|v| v.to_str().ok())?,
    };
    let mut end = name.len().min(MAX_CLIENT_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Some(Arc::from(&name[..end]))
}

/// Who the client is: what it said of itself (or its User-Agent), and where it is.
fn client_attributes(
    attributes: &mut Vec<KeyValue>,
    client: Option<Cow<'_, Implementation>>,
    name: &Option<Arc<str>>,
    parts: Option<&http::request::Parts>,
) {
    match client {
        Some(client) => {
            let client = client.into_owned();
            attributes.push(KeyValue::new("latchkey.client.name", client.name));
            attributes.push(KeyValue::new("latchkey.client.version", client.version));
        }
        // What the client did not say of itself, its User-Agent may.
        None => {
            if let Some(name) = name {
                attributes.push(KeyValue::new("latchkey.client.name", name.clone()));
            }
        }
    }
    let http = parts.and_then(|p| p.extensions.get::<HttpSpan>());
    if let Some(http) = http {
        attributes.push(KeyValue::new(attribute::NETWORK_TRANSPORT, http.transport));
        if let Some(address) = &http.client_address {
            attributes.push(KeyValue::new(attribute::CLIENT_ADDRESS, address.clone()));
        }
        if let Some(port) = http.client_port {
            attributes.push(KeyValue::new(attribute::CLIENT_PORT, i64::from(port)));
        }
    }
}

/// The context a client propagated in `_meta` (W3C `traceparent`, `tracestate`).
fn propagated_context(meta: &MetaObject) -> Option<SpanContext> {
    let traceparent = meta.get_traceparent()?;
    let mut carrier = std::collections::HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(tracestate) = meta.get_tracestate() {
        carrier.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    let context = cx.span().span_context().clone();
    context.is_valid().then_some(context)
}

/// The length of `value` written as JSON, without keeping what is written. (Counted by a
/// serializer of its own instead, a tool's answer cost as much: the cost is serde's walk
/// of rmcp's types, not the writing.)
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Real requests through the gate and rmcp's HTTP service to a traced stand-in handler, with
/// spans and metrics kept in memory.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::header;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::trace::{SpanKind, Status};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use opentelemetry_sdk::trace::SpanData;
    use tower::{Layer, ServiceExt};

    use super::*;
    use crate::telemetry::metrics::Metrics;
    use crate::telemetry::trace::Tracer;

    const KEY: &str = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";

    /// Tools whose answers the tests choose: `hello` succeeds, `fails` reports an error with
    /// a secret-looking value in its result, anything else is not found.
    #[derive(Clone)]
    struct StandIn;

    impl ServerHandler for StandIn {
        async fn call_tool(
            &self,
            request: CallToolRequestParams,
            _: RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, McpError> {
            match &*request.name {
                "hello" => {
                    Ok(CallToolResult::success(vec![ContentBlock::text("Hello Ada!")]).into())
                }
                "fails" => {
                    let mut result = CallToolResult::error(vec![ContentBlock::text("no")]);
                    result.structured_content = Some(serde_json::json!({"token": "t0k"}));
                    Ok(result.into())
                }
                _ => Err(McpError::invalid_params("tool not found", None)),
            }
        }
    }

    fn attr(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    /// POSTs `body` (with `headers`) through the gate to the traced stand-in; returns the MCP
    /// spans, after checking the HTTP span and the duration metric.
    async fn spans_for(body: &str, headers: &[(&str, &str)], tool_io: bool) -> Vec<SpanData> {
        let (tracer, exporter) = Tracer::in_memory();
        let metric_exporter = InMemoryMetricExporter::default();
        let meters = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metric_exporter.clone()).build())
            .build();
        let export = Export::new(tracer, Metrics::from_meter(&meters.meter("test")));
        let tracing = McpTracing {
            observers: export.observers().clone(),
            export: Some(export.clone()),
            tool_io,
        };
        // The server's own rmcp settings and gate, around the stand-in handler.
        let options = crate::routes::mcp::McpOptions {
            sessions: None,
            shutdown: Default::default(),
            max_body: 1 << 20,
            tracing: tracing.clone(),
            upstreams: None,
        };
        let endpoint = crate::routes::mcp::rmcp_endpoint(&options, move || {
            Traced::new(StandIn, tracing.clone())
        });
        let router = axum::Router::new().route("/mcp", endpoint);
        let args = crate::startup::test_args(&["--api-key", KEY]);
        let key = crate::keys::KeyEntry::Plain(KEY.into()).into();
        let keys = Arc::new(arc_swap::ArcSwap::from_pointee(crate::keys::KeySet::new(
            &[key],
        )));
        let lockout = Arc::new(crate::lockout::Lockout::new(0, Default::default()));
        let paths = crate::routes::Paths::new(&Default::default(), false, false);
        let app =
            crate::startup::gate(&args, paths, keys, lockout, None, Some(export)).layer(router);
        let mut request = axum::http::Request::post("/mcp")
            .header(header::HOST, "localhost")
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let answer = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(status.is_success(), "{status}: {answer:?}");
        meters.force_flush().unwrap();
        let names: Vec<String> = metric_exporter
            .get_finished_metrics()
            .unwrap()
            .iter()
            .flat_map(|r| r.scope_metrics())
            .flat_map(|s| s.metrics())
            .map(|m| m.name().to_owned())
            .collect();
        assert!(
            names.iter().any(|n| n == "mcp.server.operation.duration"),
            "{names:?}"
        );
        let (http, mcp): (Vec<SpanData>, Vec<SpanData>) = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .partition(|s| s.name == "POST /mcp");
        assert_eq!(http.len(), 1, "one HTTP span");
        let http = &http[0];
        // The MCP span hangs under the HTTP span, or is linked to it when the client
        // propagated its own parent.
        for span in &mcp {
            let linked = span
                .links
                .iter()
                .any(|l| l.span_context.span_id() == http.span_context.span_id());
            let child = span.parent_span_id == http.span_context.span_id();
            assert!(linked != child, "{span:?}");
            assert_eq!(
                child,
                span.span_context.trace_id() == http.span_context.trace_id()
            );
        }
        mcp
    }

    const V2025: [(&str, &str); 1] = [("mcp-protocol-version", "2025-06-18")];

    fn call(tool: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"name":"Ada","password":"hunter2"}}}}}}"#
        )
    }

    #[tokio::test]
    async fn tools_call_span_follows_the_conventions() {
        let headers = [V2025[0], ("mcp-session-id", "s-1")];
        let spans = spans_for(&call("hello"), &headers, false).await;
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        assert_eq!(span.name, "tools/call hello");
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(attr(span, "mcp.method.name").as_deref(), Some("tools/call"));
        assert_eq!(attr(span, "gen_ai.tool.name").as_deref(), Some("hello"));
        assert_eq!(
            attr(span, "gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        assert_eq!(attr(span, "jsonrpc.request.id").as_deref(), Some("7"));
        assert_eq!(
            attr(span, "mcp.protocol.version").as_deref(),
            Some("2025-06-18")
        );
        assert_eq!(attr(span, "mcp.session.id").as_deref(), Some("s-1"));
        assert_eq!(
            attr(span, "latchkey.arguments.bytes").as_deref(),
            Some("35")
        );
        assert!(attr(span, "latchkey.result.bytes").is_some());
        assert_eq!(attr(span, "error.type"), None);
        assert_eq!(span.status, Status::Unset);
        // Without --trace-tool-io, neither arguments nor results are recorded.
        assert_eq!(attr(span, "gen_ai.tool.call.arguments"), None);
        assert_eq!(attr(span, "gen_ai.tool.call.result"), None);
    }

    #[tokio::test]
    async fn tool_errors_and_rpc_errors_mark_the_span() {
        let spans = spans_for(&call("fails"), &V2025, false).await;
        assert_eq!(attr(&spans[0], "error.type").as_deref(), Some("tool_error"));
        assert!(matches!(spans[0].status, Status::Error { .. }));

        let spans = spans_for(&call("nope"), &V2025, false).await;
        assert_eq!(spans[0].name, "tools/call nope");
        assert_eq!(attr(&spans[0], "error.type").as_deref(), Some("-32602"));
        assert_eq!(
            attr(&spans[0], "rpc.response.status_code").as_deref(),
            Some("-32602")
        );
        assert_eq!(spans[0].status, Status::error("tool not found"));
    }

    #[tokio::test]
    async fn tool_io_is_recorded_redacted_when_asked() {
        let spans = spans_for(&call("fails"), &V2025, true).await;
        let arguments = attr(&spans[0], "gen_ai.tool.call.arguments").unwrap();
        assert!(
            arguments.contains("Ada") && arguments.contains("REDACTED"),
            "{arguments}"
        );
        assert!(!arguments.contains("hunter2"), "{arguments}");
        let result = attr(&spans[0], "gen_ai.tool.call.result").unwrap();
        assert!(result.contains("REDACTED"), "{result}");
        assert!(!result.contains("t0k"), "{result}");
    }

    #[tokio::test]
    async fn traceparent_in_meta_becomes_the_parent() {
        let list = r#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}"#;
        let spans = spans_for(list, &V2025, false).await;
        let span = &spans[0];
        assert_eq!(span.name, "tools/list");
        assert_eq!(
            span.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(span.parent_span_id.to_string(), "b7ad6b7169203331");
        assert_eq!(attr(span, "jsonrpc.request.id").as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn a_2026_07_28_request_has_its_version_and_client_and_no_session() {
        let request = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"hello","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"probe","version":"9.1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        let headers = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "hello"),
            ("mcp-session-id", "s-1"),
        ];
        let spans = spans_for(request, &headers, false).await;
        let span = &spans[0];
        assert_eq!(span.name, "tools/call hello");
        assert_eq!(
            attr(span, "mcp.protocol.version").as_deref(),
            Some("2026-07-28")
        );
        assert_eq!(attr(span, "latchkey.client.name").as_deref(), Some("probe"));
        assert_eq!(
            attr(span, "latchkey.client.version").as_deref(),
            Some("9.1")
        );
        assert_eq!(
            attr(span, "mcp.session.id"),
            None,
            "no sessions in 2026-07-28"
        );
        assert_eq!(attr(span, "network.transport").as_deref(), Some("tcp"));
    }
}
