//! The MCP server handler when latchkey fronts upstream servers: tools, prompts, resources
//! and completions are the upstreams', each request forwarded over its upstream's one
//! connection (`crate::upstream`). With several upstreams, a listing's page holds every
//! ready upstream's next page (`super::cursor`), named as `crate::upstream::names` says
//! (and the resource references inside, `super::references`), and a request goes to the
//! upstream its name or URI names (unprefixed, the one that offers it: `super::unprefixed`).
//! What an upstream asks or says in between goes to the client it concerns: its requests
//! mid-call (`crate::upstream::relay`), its progress (with latchkey's heartbeats,
//! `super::heartbeat`), its list changes and resource updates (`super::notices`,
//! `super::subscriptions`, or a 2026-07-28 client's listen stream, `super::listen`).
//!
//! A request that takes longer than the upstream's timeout fails, and so does one whose
//! client cancels it or goes away; in each case rmcp's client tells the upstream with
//! `notifications/cancelled` (it cancels a request whose answer is no longer awaited).

use std::future::Future;
use std::sync::Arc;

use opentelemetry::trace::SpanKind;
use opentelemetry::{KeyValue, StringValue};
use rmcp::model::{
    CallToolRequest, ClientRequest, ProgressToken, Prompt, Reference, Resource, ResourceTemplate,
    ServerResult, Tool, ToolsCapability,
};
use rmcp::model::{
    CallToolRequestMethod, CallToolRequestParams, CallToolResponse, CompleteRequestMethod,
    CompleteRequestParams, CompleteResult, ConstString, GetPromptRequestMethod,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsRequestMethod,
    ListPromptsResult, ListResourceTemplatesRequestMethod, ListResourceTemplatesResult,
    ListResourcesRequestMethod, ListResourcesResult, ListToolsRequestMethod, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestMethod, ReadResourceRequestParams,
    ReadResourceResponse, RequestParamsMeta, ServerCapabilities, ServerConfig,
};
use rmcp::model::{
    ErrorCode, InitializeRequestParams, InitializeResult, SetLevelRequestMethod,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
// MCP logging is deprecated (SEP-2577), but the servers people run today still offer it.
#[allow(deprecated)]
use rmcp::model::SetLevelRequestParams;
use rmcp::service::{
    NotificationContext, RequestContext, RoleClient, RoleServer, ServiceError, SubscriptionContext,
};
use rmcp::{ErrorData as McpError, Peer, ServerHandler};
use tokio_util::sync::CancellationToken;

use super::as_task;
use super::cancel_on_drop;
use super::cursor;
use super::heartbeat::{self, Heard};
use super::listen;
use super::malformed;
use super::notices;
use super::references;
use super::result_type::Completed;
use super::subscriptions::Subscribed;
use super::unprefixed;
use crate::telemetry::Export;
use crate::telemetry::attribute;
use crate::telemetry::mcp::{Operation, Side};
use crate::telemetry::trace::{ServerSpan, Start, traceparent};
use crate::upstream::inventory::Page;
use crate::upstream::relay::Calling;
use crate::upstream::{Upstream, Upstreams};

/// One per request (stateless) or session: a clone of the upstreams' handle.
#[derive(Clone)]
pub struct Bridge {
    upstreams: Upstreams,
    /// With export on: each request to the upstream is a CLIENT span and a metric.
    export: Option<Export>,
    /// With sessions, each client session hears of the upstreams' list changes.
    sessions: bool,
    /// The resources this session subscribed to.
    subscribed: Arc<Subscribed>,
    /// Cancelled at shutdown: ends every `subscriptions/listen` stream.
    shutdown: CancellationToken,
}

impl Bridge {
    pub fn new(
        upstreams: Upstreams,
        export: Option<Export>,
        sessions: bool,
        shutdown: CancellationToken,
    ) -> Self {
        Bridge {
            upstreams,
            export,
            sessions,
            subscribed: Arc::default(),
            shutdown,
        }
    }

    /// Passes the client's `_meta` on to the upstream (rmcp takes it out of the params),
    /// but for the protocol's own keys, which belong to each connection, and the progress
    /// token, which rmcp's client sets for each request it sends.
    fn pass_meta(context: &RequestContext<RoleServer>, params: &mut impl RequestParamsMeta) {
        if context.meta.is_empty() {
            return;
        }
        let mut meta = context.meta.clone();
        meta.retain(|key, _| !key.starts_with(PROTOCOL_META_PREFIX) && key != "progressToken");
        params.set_meta(meta);
    }

    /// Starts the CLIENT span of a request to `method` (naming `tool`, for `tools/call`) and
    /// puts its W3C trace context in the request's `_meta`, so that a traced upstream
    /// continues the trace.
    fn call(
        &self,
        upstream: &Upstream,
        context: &RequestContext<RoleServer>,
        method: &'static str,
        tool: Option<&str>,
        params: &mut impl RequestParamsMeta,
    ) -> Option<Operation> {
        let export = self.export.as_ref()?;
        let tool = tool.map(Arc::<str>::from);
        let upstream_name = Arc::<str>::from(upstream.name());
        let mut attributes = vec![
            KeyValue::new(attribute::MCP_METHOD_NAME, method),
            KeyValue::new(
                "latchkey.upstream.name",
                StringValue::from(upstream_name.clone()),
            ),
        ];
        if let Some(tool) = &tool {
            attributes.push(KeyValue::new(attribute::GEN_AI_TOOL_NAME, tool.clone()));
            attributes.push(KeyValue::new(
                attribute::GEN_AI_OPERATION_NAME,
                "execute_tool",
            ));
        }
        let span = export.tracer.start(Start {
            name: match &tool {
                Some(tool) => format!("{method} {tool}").into(),
                None => method.into(),
            },
            kind: SpanKind::Client,
            attributes,
            parent: context
                .extensions
                .get::<ServerSpan>()
                .map(|server| server.0.clone()),
            links: Vec::new(),
        });
        let sent = span.context();
        if sent.is_valid() {
            params.set_traceparent(&traceparent(sent));
            let state = sent.trace_state().header();
            if !state.is_empty() {
                params.set_tracestate(&state);
            }
        }
        Some(
            Operation::new(
                export.observers(),
                Side::Client,
                Some(span),
                method.into(),
                tool,
            )
            .to_upstream(upstream_name),
        )
    }

    /// [`Bridge::call`] for a listing, whose params are optional: with export on they are
    /// sent, to carry the trace context.
    fn call_listing(
        &self,
        upstream: &Upstream,
        context: &RequestContext<RoleServer>,
        method: &'static str,
        request: &mut Option<PaginatedRequestParams>,
    ) -> Option<Operation> {
        self.export.as_ref()?;
        self.call(
            upstream,
            context,
            method,
            None,
            request.get_or_insert_with(Default::default),
        )
    }

    /// `request`'s answer, or the error that names the upstream: when it fails, takes longer
    /// than the timeout, or the client cancels first.
    async fn forward<T>(
        &self,
        upstream: &Upstream,
        context: &RequestContext<RoleServer>,
        call: Option<Operation>,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, McpError>
    where
        T: Completed,
    {
        let timeout = upstream.request_timeout();
        // rmcp's client futures are large (kilobytes): boxed, the handler's future that
        // rmcp's server moves into a task per request stays small (bench/instructions).
        let request = Box::pin(request);
        let answer = tokio::select! {
            answer = tokio::time::timeout(timeout, request) => {
                upstream.answered(answer.is_ok());
                match answer {
                    Ok(Ok(mut answer)) => {
                        answer.complete();
                        Ok(answer)
                    }
                    Ok(Err(e)) => Err(upstream.error(e)),
                    Err(_) => Err(upstream.timed_out(timeout)),
                }
            }
            _ = context.ct.cancelled() => Err(McpError::invalid_request(
                "the request was cancelled",
                None,
            )),
        };
        if let Some(mut call) = call {
            if let Err(error) = &answer {
                call.failed_with(error);
            }
            call.end();
        }
        answer
    }

    /// One listing `method` for the client: with one upstream, its page as it is (cursor and
    /// all); with several, every ready upstream's first page (or the next pages the cursor
    /// names), with a cursor for their next pages. `adapt` filters and renames an
    /// upstream's items.
    async fn list<L, F, Fut>(
        &self,
        context: &RequestContext<RoleServer>,
        method: &'static str,
        request: Option<PaginatedRequestParams>,
        fetch: F,
        adapt: impl Fn(&Upstream, &mut Vec<L::Item>, Page),
    ) -> Result<L, McpError>
    where
        L: Listing,
        F: Fn(Peer<RoleClient>, Option<PaginatedRequestParams>) -> Fut + Copy,
        Fut: Future<Output = Result<L, ServiceError>>,
    {
        if let Some(upstream) = self.upstreams.only() {
            let first = request.as_ref().is_none_or(|r| r.cursor.is_none());
            let mut listed = self.page(upstream, context, method, fetch, request).await?;
            let page = Page {
                first,
                last: listed.next_cursor().is_none(),
            };
            adapt(upstream, listed.items(), page);
            return Ok(listed);
        }
        let pages = match request.and_then(|r| r.cursor) {
            None => self.upstreams.iter().map(|u| (u, None)).collect(),
            Some(cursor) => self.next_pages(&cursor)?,
        };
        let answers = futures::future::join_all(pages.into_iter().map(|(upstream, cursor)| {
            let first = cursor.is_none();
            let request = cursor.map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
            async move {
                let answer = self.page(upstream, context, method, fetch, request).await;
                (upstream, first, answer)
            }
        }))
        .await;
        gathered(method, answers, adapt)
    }

    /// With sessions, lists this client's request (a call, a prompt, a read: what an
    /// upstream asks something in the middle of) so that the upstream's requests meanwhile
    /// can be relayed to it. Not a stateless client (it cannot be reached mid-request), nor
    /// one on 2026-07-28 or later (the protocol has no server-to-client requests there;
    /// rmcp refuses to send them), nor listings and the like, whose stream closes at once.
    fn calling(
        &self,
        upstream: &Upstream,
        context: &RequestContext<RoleServer>,
    ) -> Option<Calling> {
        if !self.sessions || malformed::is_2026_07_28_or_later(context.protocol_version().as_ref())
        {
            return None;
        }
        Some(upstream.calling(
            context.peer.clone(),
            context.id.clone(),
            context.client_capabilities().unwrap_or_default(),
        ))
    }

    /// Passes what the upstreams announce on to this session until it ends, then lets go
    /// of its subscriptions: started once, at `initialized` or at the first subscription
    /// (rmcp does not wait for `initialized`, and a session that never sent it must not
    /// keep an upstream subscribed for ever).
    fn watch(&self, peer: Peer<RoleServer>) {
        if self.subscribed.start_watching() {
            tokio::spawn(notices::pass_on(
                self.upstreams.clone(),
                peer,
                self.subscribed.clone(),
            ));
        }
    }

    /// One request `method` with `params` to `upstream` (its `_meta` the client's, its
    /// trace context, its timeout), sent by `send`.
    async fn upstream_request<P, T, Fut>(
        &self,
        upstream: &Upstream,
        context: &RequestContext<RoleServer>,
        method: &'static str,
        params: &mut P,
        send: impl FnOnce(Peer<RoleClient>, P) -> Fut,
    ) -> Result<T, McpError>
    where
        P: RequestParamsMeta + Clone,
        T: Completed,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let connection = upstream.ready_connection().await?;
        Self::pass_meta(context, params);
        let call = self.call(upstream, context, method, None, params);
        self.forward(
            upstream,
            context,
            call,
            send(connection.peer, params.clone()),
        )
        .await
    }

    /// The upstream a tool name names, and its own name for it. An unprefixed name asked
    /// before every upstream listed its tools lists them first, as a client would have.
    async fn tool<'a>(
        &self,
        name: &'a str,
        context: &RequestContext<RoleServer>,
    ) -> Result<(&Upstream, &'a str), McpError> {
        if let Some(found) = self.upstreams.by_tool_name(name) {
            return found;
        }
        let mut cursor = None;
        for _ in 0..unprefixed::MAX_PAGES {
            let request = cursor.map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
            match ServerHandler::list_tools(self, request, context.clone()).await {
                Ok(page) if page.next_cursor.is_some() => cursor = page.next_cursor,
                _ => break,
            }
        }
        self.upstreams.by_tool_name(name).unwrap_or_else(|| {
            Err(McpError::invalid_params(
                format!("unknown tool {name:?} (not every upstream has listed its tools yet)"),
                None,
            ))
        })
    }

    /// The upstream a prompt name names, and its own name for it: prefixed, or (with
    /// several upstreams) the one whose prompts list it (`super::unprefixed`).
    async fn prompt<'a>(
        &self,
        name: &'a str,
        context: &RequestContext<RoleServer>,
    ) -> Result<(&Upstream, &'a str), McpError> {
        match self.upstreams.by_prefixed_name(name) {
            Some(found) => Ok(found),
            None => unless_cancelled(context, unprefixed::prompt(&self.upstreams, name))
                .await
                .map(|upstream| (upstream, name)),
        }
    }

    /// [`Self::prompt`] for a resource URI; with `completing`, a completion's reference
    /// (a URI template, most often).
    async fn resource<'a>(
        &self,
        uri: &'a str,
        completing: bool,
        context: &RequestContext<RoleServer>,
    ) -> Result<(&Upstream, &'a str), McpError> {
        if let Some(found) = self.upstreams.by_prefixed_uri(uri) {
            return Ok(found);
        }
        let upstreams = &self.upstreams;
        let found = if completing {
            unless_cancelled(context, unprefixed::completed(upstreams, uri)).await
        } else {
            unless_cancelled(context, unprefixed::resource(upstreams, uri)).await
        };
        found.map(|upstream| (upstream, uri))
    }

    /// The upstreams a cursor of several (`super::cursor`) names, each with its cursor.
    fn next_pages(&self, cursor: &str) -> Result<Vec<(&Upstream, Option<String>)>, McpError> {
        cursor::decode(cursor)?
            .into_iter()
            .map(|(name, cursor)| {
                let upstream = self
                    .upstreams
                    .iter()
                    .find(|u| u.name() == name)
                    .ok_or_else(|| {
                        McpError::invalid_params("invalid cursor: not one latchkey gave", None)
                    })?;
                Ok((upstream, Some(cursor)))
            })
            .collect()
    }

    /// One page of one upstream's listing `method`, a traced request.
    async fn page<L, F, Fut>(
        &self,
        upstream: &Upstream,
        context: &RequestContext<RoleServer>,
        method: &'static str,
        fetch: F,
        mut request: Option<PaginatedRequestParams>,
    ) -> Result<L, McpError>
    where
        F: Fn(Peer<RoleClient>, Option<PaginatedRequestParams>) -> Fut,
        L: Completed,
        Fut: Future<Output = Result<L, ServiceError>>,
    {
        let connection = upstream.ready_connection().await?;
        let call = self.call_listing(upstream, context, method, &mut request);
        self.forward(upstream, context, call, fetch(connection.peer, request))
            .await
    }
}

/// One page of several upstreams' pages (each `first` or not): their items adapted, the
/// cursor of their next pages; an upstream that failed is left out (logged), and when every
/// one failed, the first error answers.
fn gathered<L: Listing>(
    method: &str,
    answers: Vec<(&Upstream, bool, Result<L, McpError>)>,
    adapt: impl Fn(&Upstream, &mut Vec<L::Item>, Page),
) -> Result<L, McpError> {
    let mut items = Vec::new();
    let mut next = Vec::new();
    let mut first_error = None;
    let mut any = false;
    for (upstream, first, answer) in answers {
        match answer {
            Ok(mut listed) => {
                any = true;
                let cursor = listed.next_cursor();
                let page = Page {
                    first,
                    last: cursor.is_none(),
                };
                adapt(upstream, listed.items(), page);
                items.append(listed.items());
                next.extend(cursor.map(|cursor| (upstream.name(), cursor)));
            }
            Err(error) => {
                // Left out, logged; when every upstream fails, the first error answers.
                tracing::warn!(
                    upstream = upstream.name(),
                    "{method} left it out: {}",
                    error.message
                );
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) if !any => Err(error),
        _ => Ok(L::page(items, cursor::encode(&next))),
    }
}

/// What the four listings' results share (rmcp's own trait for it is private).
trait Listing: Completed {
    type Item;
    fn items(&mut self) -> &mut Vec<Self::Item>;
    fn next_cursor(&self) -> Option<String>;
    /// A page of `items`, and the cursor of the next.
    fn page(items: Vec<Self::Item>, next_cursor: Option<String>) -> Self;
}

/// Listings, each `name -> Result, method, adapt;`: [`Bridge::list`] of the upstreams'
/// items, each upstream's adapted (filtered, renamed) by `adapt`.
macro_rules! bridged_listings {
    ($($name:ident -> $result:ty, $method:expr, $adapt:path;)*) => {$(
        fn $name(
            &self,
            request: Option<PaginatedRequestParams>,
            context: RequestContext<RoleServer>,
        ) -> impl Future<Output = Result<$result, McpError>> + Send + '_ {
            Box::pin(async move {
                self.list(
                    &context,
                    $method,
                    request,
                    |peer, request| async move { peer.$name(request).await },
                    $adapt,
                )
                .await
            })
        }
    )*};
}

macro_rules! listing {
    ($($result:ty => $item:ty, $field:ident;)*) => {$(
        impl Listing for $result {
            type Item = $item;
            fn items(&mut self) -> &mut Vec<$item> {
                &mut self.$field
            }
            fn next_cursor(&self) -> Option<String> {
                self.next_cursor.clone()
            }
            fn page(items: Vec<$item>, next_cursor: Option<String>) -> Self {
                let mut page = <$result>::with_all_items(items);
                page.next_cursor = next_cursor;
                page
            }
        }
    )*};
}

listing! {
    ListToolsResult => Tool, tools;
    ListPromptsResult => Prompt, prompts;
    ListResourcesResult => Resource, resources;
    ListResourceTemplatesResult => ResourceTemplate, resource_templates;
}

/// `tools/call` to the upstream, its progress notifications routed to the client as
/// progress for the client's token `theirs` (what `call_tool_once` does, but for knowing
/// the progress token rmcp sends), run as a task if the upstream will run it only so
/// (`super::as_task`). Dropped before the answer, it cancels the call upstream.
async fn call_tool_with_progress(
    upstream: &Upstream,
    peer: &Peer<RoleClient>,
    params: CallToolRequestParams,
    theirs: ProgressToken,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ServiceError> {
    let heard = Heard::new();
    let route = |ours: ProgressToken| {
        let hearing = heard.clone();
        let client = context.peer.clone();
        upstream.progress.route(
            ours,
            theirs.clone(),
            Box::new(move |progress| {
                hearing.progress(&progress);
                let client = client.clone();
                Box::pin(async move {
                    let _ = client.notify_progress(progress).await;
                })
            }),
        )
    };
    let again = params.clone();
    let answer = async {
        let answer = call_tool_routed(peer, params, &route).await;
        if !as_task::refused(&answer) {
            return answer;
        }
        as_task::run(peer, again, &route).await.unwrap_or(answer)
    };
    match upstream.heartbeat() {
        None => answer.await,
        Some(every) => {
            let client = &context.peer;
            heartbeat::beat_until(answer, every, &heard, client, &theirs, upstream.name()).await
        }
    }
}

/// `tools/call` to the upstream with `route` given the progress token rmcp sends.
async fn call_tool_routed<Route>(
    peer: &Peer<RoleClient>,
    params: CallToolRequestParams,
    route: impl FnOnce(ProgressToken) -> Route,
) -> Result<CallToolResponse, ServiceError> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let answer = cancel_on_drop::send(peer, request, route).await;
    match answer? {
        ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
        ServerResult::InputRequiredResult(result) => Ok(CallToolResponse::InputRequired(result)),
        ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

/// `tools/call` to the upstream as rmcp makes it, run as a task if the upstream will run
/// it only so (`super::as_task`). The copy of `params` kept for that costs every call about
/// 1,500 instructions (+0.7%, bench/instructions); nothing says beforehand which tools need
/// it, since rmcp drops the listing's `execution`.
async fn call_tool(
    peer: &Peer<RoleClient>,
    params: CallToolRequestParams,
) -> Result<CallToolResponse, ServiceError> {
    let again = params.clone();
    let answer = peer.call_tool_once(params).await;
    if !as_task::refused(&answer) {
        return answer;
    }
    // Boxed: inline, the task's futures made every call's future larger (+1.0% a call
    // instead of +0.7%, bench/instructions).
    Box::pin(as_task::run(peer, again, |_| ()))
        .await
        .unwrap_or(answer)
}

/// `lookup`'s answer, unless the client cancels its request first: a lookup lists every
/// upstream, which nothing else would stop.
async fn unless_cancelled<T>(
    context: &RequestContext<RoleServer>,
    lookup: impl Future<Output = Result<T, McpError>>,
) -> Result<T, McpError> {
    tokio::select! {
        found = lookup => found,
        _ = context.ct.cancelled() => Err(McpError::internal_error(
            "the client cancelled the request",
            None,
        )),
    }
}

/// The `_meta` keys of the protocol itself (version, client info and capabilities, log
/// level), which latchkey's own connection to the upstream sets.
const PROTOCOL_META_PREFIX: &str = "io.modelcontextprotocol/";

// Each request's future is boxed: rmcp's server moves the handler's future into a task per
// request, and without the box that future is as large as the largest method's state,
// kilobytes of rmcp client futures copied on every request (bench/instructions).
impl ServerHandler for Bridge {
    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, McpError> {
        malformed::answer(&request, context.protocol_version().as_ref())
    }

    /// The upstreams' capabilities and instructions, under latchkey's name; before they
    /// are ready, tools only.
    fn get_info(&self) -> ServerConfig {
        let mut ours = ServerCapabilities::builder().enable_tools().build();
        let mut instructions = Vec::new();
        for upstream in self.upstreams.iter() {
            let Ok(connection) = upstream.connection() else {
                continue;
            };
            let theirs = &connection.info.capabilities;
            if let Some(tools) = &theirs.tools {
                let ours = ours.tools.get_or_insert_with(ToolsCapability::default);
                ours.list_changed = ours.list_changed.or(tools.list_changed);
            }
            if ours.prompts.is_none() {
                ours.prompts = theirs.prompts.clone();
            }
            if let Some(resources) = &theirs.resources {
                let ours = ours.resources.get_or_insert_with(Default::default);
                ours.list_changed = ours.list_changed.or(resources.list_changed);
                // A 2026-07-28 client's listen stream takes updates in either mode; a
                // session's subscriptions need sessions (`initialize` says so).
                ours.subscribe = ours.subscribe.or(resources.subscribe);
            }
            #[allow(deprecated)]
            if ours.logging.is_none() {
                ours.logging = theirs.logging.clone();
            }
            if ours.completions.is_none() {
                ours.completions = theirs.completions.clone();
            }
            if let Some(theirs) = &connection.info.instructions {
                instructions.push(match &upstream.naming.prefix {
                    Some(prefix) => format!("{prefix}: {theirs}"),
                    None => theirs.clone(),
                });
            }
        }
        let config = ServerConfig::new(ours)
            .with_server_info(Implementation::new("latchkey", env!("CARGO_PKG_VERSION")));
        if instructions.is_empty() {
            config
        } else {
            config.with_instructions(instructions.join("\n\n"))
        }
    }

    /// Without sessions, no subscription of an `initialize`d client's could reach it: the
    /// capability is not offered (2026-07-28 clients, which `server/discover`, can listen).
    fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<InitializeResult, McpError>> + Send + '_ {
        context.peer.set_peer_info(request.clone());
        let mut answer = self.negotiate_initialize(&request);
        if let Ok(result) = &mut answer
            && !self.sessions
            && let Some(resources) = &mut result.capabilities.resources
        {
            resources.subscribe = None;
        }
        std::future::ready(answer)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(listen::accepted(&self.upstreams, requested))
    }

    /// A 2026-07-28 client's listen stream (`super::listen`), with or without sessions.
    fn listen(
        &self,
        context: SubscriptionContext,
    ) -> impl Future<Output = Result<(), McpError>> + Send + '_ {
        let (upstreams, shutdown) = (self.upstreams.clone(), self.shutdown.clone());
        Box::pin(async move {
            listen::listen(upstreams, context, shutdown).await;
            Ok(())
        })
    }

    /// With sessions, a session's subscription to a resource: the upstream's updates to it
    /// reach this client until it unsubscribes or its session ends. The upstream itself is
    /// subscribed once, for the first session (`resources/subscribe`, not deprecated in the
    /// protocol versions latchkey's upstream connections speak).
    #[allow(deprecated)]
    fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + Send + '_ {
        Box::pin(async move {
            if !self.sessions {
                return Err(McpError::invalid_request(
                    "resources/subscribe needs a client session: latchkey runs without \
                     --sessions, so no update could reach this client",
                    None,
                ));
            }
            let (upstream, own) = self.resource(&request.uri, false, &context).await?;
            if !upstream.offers_subscriptions() {
                return Err(McpError::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!(
                        "upstream {:?} does not offer resource subscriptions",
                        upstream.name()
                    ),
                    None,
                ));
            }
            self.watch(context.peer.clone());
            // Held as latchkey names it, whatever URI the client subscribed with.
            let uri = upstream.naming.uri(own).into_owned();
            // In a task of its own: a client that cancels or goes away mid-way cannot leave
            // the session's set and the upstream's count apart.
            let (upstreams, subscribed) = (self.upstreams.clone(), self.subscribed.clone());
            let task = tokio::spawn(async move {
                let (upstream, own) = upstreams.by_uri(&uri)?;
                if !subscribed.add(&uri, &request.uri)? {
                    return Ok(());
                }
                let answer = upstream.subscribe(own).await;
                if answer.is_err() {
                    subscribed.remove(&uri);
                }
                answer
            });
            task.await
                .unwrap_or_else(|_| Err(McpError::internal_error("the subscription failed", None)))
        })
    }

    #[allow(deprecated)]
    fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + Send + '_ {
        Box::pin(async move {
            // A URI the session subscribed with unprefixed is held as latchkey names it; one
            // it subscribed with in the other form is found as subscribing finds it.
            let uri = match self.upstreams.by_prefixed_uri(&request.uri) {
                Some(_) => request.uri,
                None => match self.subscribed.subscribed_as(&request.uri) {
                    Some(uri) => uri,
                    None => {
                        let (upstream, own) = self.resource(&request.uri, false, &context).await?;
                        upstream.naming.uri(own).into_owned()
                    }
                },
            };
            let (upstreams, subscribed) = (self.upstreams.clone(), self.subscribed.clone());
            let task = tokio::spawn(async move {
                if subscribed.remove(&uri)
                    && let Ok((upstream, own)) = upstreams.by_uri(&uri)
                {
                    upstream.unsubscribe(own).await;
                }
            });
            let _ = task.await;
            Ok(())
        })
    }

    /// To every upstream that offers logging (the level holds for every client: each
    /// upstream has one connection). Not on 2026-07-28, which removed it.
    #[allow(deprecated)]
    fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + Send + '_ {
        Box::pin(async move {
            if malformed::is_2026_07_28_or_later(context.protocol_version().as_ref()) {
                return Err(malformed::removed(SetLevelRequestMethod::VALUE));
            }
            let logging = self.upstreams.iter().filter(|upstream| {
                upstream
                    .connection()
                    .is_ok_and(|c| c.info.capabilities.logging.is_some())
            });
            let answers = futures::future::join_all(logging.map(|upstream| {
                let mut theirs = request.clone();
                let context = &context;
                async move {
                    self.upstream_request(
                        upstream,
                        context,
                        SetLevelRequestMethod::VALUE,
                        &mut theirs,
                        |peer, params| async move { peer.set_level(params).await },
                    )
                    .await
                }
            }))
            .await;
            match answers.iter().find(|a| a.is_ok()) {
                Some(_) => Ok(()),
                None => Err(answers
                    .into_iter()
                    .find_map(Result::err)
                    .unwrap_or_else(McpError::method_not_found::<SetLevelRequestMethod>)),
            }
        })
    }

    /// The client's roots changed: every upstream may ask again.
    async fn on_roots_list_changed(&self, _: NotificationContext<RoleServer>) {
        for upstream in self.upstreams.iter().filter(|u| u.relays_roots()) {
            if let Ok(connection) = upstream.connection() {
                let _ = connection.peer.notify_roots_list_changed().await;
            }
        }
    }

    /// With sessions: from now until the session ends, the upstreams' list changes reach
    /// this client.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if self.sessions {
            self.watch(context.peer);
        }
    }

    bridged_listings! {
        list_tools -> ListToolsResult, ListToolsRequestMethod::VALUE, adapt_tools;
        list_prompts -> ListPromptsResult, ListPromptsRequestMethod::VALUE, adapt_prompts;
        list_resources -> ListResourcesResult, ListResourcesRequestMethod::VALUE, adapt_resources;
        list_resource_templates -> ListResourceTemplatesResult,
            ListResourceTemplatesRequestMethod::VALUE, adapt_templates;
    }

    fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, McpError>> + Send + '_ {
        Box::pin(async move {
            let asked = std::mem::take(&mut request.name);
            let (upstream, own) = self.tool(&asked, &context).await?;
            if !upstream.offers_tool(own) {
                return Err(McpError::invalid_params(
                    format!("unknown tool {asked:?}"),
                    None,
                ));
            }
            if upstream.withholds(own) {
                return Err(McpError::invalid_params(
                    format!(
                        "tool {asked:?} is new or changed and awaits approval in latchkey's \
                         console (--pin-tools)"
                    ),
                    None,
                ));
            }
            let connection = upstream.ready_connection().await?;
            request.name = own.to_owned().into();
            Self::pass_meta(&context, &mut request);
            let _calling = self.calling(upstream, &context);
            let call = self.call(
                upstream,
                &context,
                CallToolRequestMethod::VALUE,
                Some(own),
                &mut request,
            );
            let mut answer = match context.meta.get_progress_token() {
                None => {
                    let request = call_tool(&connection.peer, request);
                    self.forward(upstream, &context, call, request).await
                }
                Some(theirs) => {
                    // Boxed: with the heartbeat's notification in it, this future is
                    // kilobytes, and unboxed it made every call's future that large
                    // (+8,700 instructions of memcpy a call, bench/instructions).
                    let request = Box::pin(call_tool_with_progress(
                        upstream,
                        &connection.peer,
                        request,
                        theirs,
                        &context,
                    ));
                    self.forward(upstream, &context, call, request).await
                }
            };
            if let Ok(CallToolResponse::Complete(result)) = &mut answer {
                references::call_result(&upstream.naming, result);
            }
            answer
        })
    }

    fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetPromptResponse, McpError>> + Send + '_ {
        Box::pin(async move {
            let asked = std::mem::take(&mut request.name);
            let (upstream, own) = self.prompt(&asked, &context).await?;
            let connection = upstream.ready_connection().await?;
            request.name = own.to_owned();
            Self::pass_meta(&context, &mut request);
            let _calling = self.calling(upstream, &context);
            let call = self.call(
                upstream,
                &context,
                GetPromptRequestMethod::VALUE,
                None,
                &mut request,
            );
            let mut answer = self
                .forward(
                    upstream,
                    &context,
                    call,
                    connection.peer.get_prompt_once(request),
                )
                .await;
            if let Ok(GetPromptResponse::Complete(prompt)) = &mut answer {
                references::prompt(&upstream.naming, prompt);
            }
            answer
        })
    }

    fn read_resource(
        &self,
        mut request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceResponse, McpError>> + Send + '_ {
        Box::pin(async move {
            let asked = std::mem::take(&mut request.uri);
            let (upstream, own) = self.resource(&asked, false, &context).await?;
            let connection = upstream.ready_connection().await?;
            request.uri = own.to_owned();
            Self::pass_meta(&context, &mut request);
            let _calling = self.calling(upstream, &context);
            let call = self.call(
                upstream,
                &context,
                ReadResourceRequestMethod::VALUE,
                None,
                &mut request,
            );
            let mut read = self
                .forward(
                    upstream,
                    &context,
                    call,
                    connection.peer.read_resource_once(request),
                )
                .await?;
            if let ReadResourceResponse::Complete(read) = &mut read {
                for contents in &mut read.contents {
                    references::contents(&upstream.naming, contents);
                }
            }
            Ok(read)
        })
    }

    fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CompleteResult, McpError>> + Send + '_ {
        Box::pin(async move {
            let upstream = match &mut request.r#ref {
                Reference::Prompt(prompt) => {
                    let asked = std::mem::take(&mut prompt.name);
                    let (upstream, own) = self.prompt(&asked, &context).await?;
                    prompt.name = own.to_owned();
                    upstream
                }
                Reference::Resource(resource) => {
                    let asked = std::mem::take(&mut resource.uri);
                    let (upstream, own) = self.resource(&asked, true, &context).await?;
                    resource.uri = own.to_owned();
                    upstream
                }
                _ => {
                    return Err(McpError::invalid_params(
                        "a completion reference is ref/prompt or ref/resource",
                        None,
                    ));
                }
            };
            let connection = upstream.ready_connection().await?;
            let call = self.call(
                upstream,
                &context,
                CompleteRequestMethod::VALUE,
                None,
                &mut request,
            );
            self.forward(upstream, &context, call, connection.peer.complete(request))
                .await
        })
    }
}

/// The tools the upstream offers (its allow/deny entries that name no tool warned), renamed;
/// a whole listing is compared with the last (`upstream::inventory`), and with
/// `--pin-tools` a tool not as approved is withheld.
fn adapt_tools(upstream: &Upstream, tools: &mut Vec<Tool>, page: Page) {
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for problem in upstream.unmatched_tool_entries(&names) {
        tracing::warn!(upstream = upstream.name(), "{problem}");
    }
    let inventory = upstream.inventory();
    inventory.observe(upstream.name(), tools, page);
    let offered: Vec<bool> = tools
        .iter()
        .map(|tool| {
            upstream.offers_tool(&tool.name) && inventory.offers(upstream.name(), tool, tools)
        })
        .collect();
    let mut offered = offered.into_iter();
    tools.retain(|_| offered.next().unwrap_or(false));
    if upstream.naming.prefix.is_some() {
        for tool in tools {
            tool.name = upstream.naming.name(&tool.name).into_owned().into();
            references::tool(&upstream.naming, tool);
        }
    }
}

/// An upstream's prompts, renamed.
fn adapt_prompts(upstream: &Upstream, prompts: &mut Vec<Prompt>, _: Page) {
    for prompt in prompts {
        upstream.naming.rename(&mut prompt.name);
    }
}

/// An upstream's resources, names and URIs renamed.
fn adapt_resources(upstream: &Upstream, resources: &mut Vec<Resource>, _: Page) {
    for resource in resources {
        upstream.naming.rename(&mut resource.name);
        references::resource(&upstream.naming, resource);
    }
}

/// An upstream's resource templates, names and URI templates renamed.
fn adapt_templates(upstream: &Upstream, templates: &mut Vec<ResourceTemplate>, _: Page) {
    for template in templates {
        upstream.naming.rename(&mut template.name);
        upstream.naming.rename_uri(&mut template.uri_template);
    }
}
