//! The MCP server handler when latchkey fronts an upstream server: tools, prompts,
//! resources and completions are the upstream's, each request forwarded over its one
//! connection (`crate::upstream`).
//!
//! A request that takes longer than the upstream's timeout fails, and so does one whose
//! client cancels it or goes away; in each case rmcp's client tells the upstream with
//! `notifications/cancelled` (it cancels a request whose answer is no longer awaited).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{KeyValue, StringValue};
use rmcp::model::{
    CallToolRequestMethod, CallToolRequestParams, CallToolResponse, CompleteRequestMethod,
    CompleteRequestParams, CompleteResult, ConstString, GetPromptRequestMethod,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsRequestMethod,
    ListPromptsResult, ListResourceTemplatesRequestMethod, ListResourceTemplatesResult,
    ListResourcesRequestMethod, ListResourcesResult, ListToolsRequestMethod, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestMethod, ReadResourceRequestParams,
    ReadResourceResponse, RequestParamsMeta, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer, ServiceError};
use rmcp::{ErrorData as McpError, ServerHandler};

use crate::telemetry::Export;
use crate::telemetry::trace::{ServerSpan, Span, Start, traceparent};
use crate::upstream::Upstream;

/// One per request (stateless) or session: a clone of the upstream's handle.
#[derive(Clone)]
pub struct Bridge {
    upstream: Upstream,
    /// With export on: each request to the upstream is a CLIENT span and a metric.
    export: Option<Export>,
}

/// A request to the upstream, traced: its CLIENT span, under the SERVER span of the client's
/// request, and what `mcp.client.operation.duration` records.
struct Call {
    span: Span,
    start: Instant,
    export: Export,
    method: &'static str,
    tool: Option<Arc<str>>,
}

impl Call {
    /// Ends the span and records the duration, with the error's JSON-RPC code, if any.
    fn end(mut self, error: Option<&McpError>) {
        let error_type = error.map(|e| e.code.0.to_string());
        if let (Some(error), Some(code)) = (error, &error_type) {
            self.span
                .set_attribute(KeyValue::new("error.type", code.clone()));
            self.span
                .set_status(Status::error(error.message.to_string()));
        }
        self.span.end();
        let mut attributes = vec![KeyValue::new("mcp.method.name", self.method)];
        if let Some(tool) = self.tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool));
        }
        if let Some(code) = error_type {
            attributes.push(KeyValue::new("error.type", code));
        }
        self.export
            .metrics
            .mcp_client_operation
            .record(self.start.elapsed().as_secs_f64(), &attributes);
    }
}

impl Bridge {
    pub fn new(upstream: Upstream, export: Option<Export>) -> Self {
        Bridge { upstream, export }
    }

    /// Starts the CLIENT span of a request to `method` (naming `tool`, for `tools/call`) and
    /// puts its W3C trace context in the request's `_meta`, so that a traced upstream
    /// continues the trace.
    fn call(
        &self,
        context: &RequestContext<RoleServer>,
        method: &'static str,
        tool: Option<&str>,
        params: &mut impl RequestParamsMeta,
    ) -> Option<Call> {
        let export = self.export.as_ref()?;
        let tool = tool.map(Arc::<str>::from);
        let mut attributes = vec![
            KeyValue::new("mcp.method.name", method),
            KeyValue::new(
                "latchkey.upstream.name",
                StringValue::from(self.upstream.name().to_owned()),
            ),
        ];
        if let Some(tool) = &tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool.clone()));
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
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
        Some(Call {
            span,
            start: Instant::now(),
            export: export.clone(),
            method,
            tool,
        })
    }

    /// [`Bridge::call`] for a listing, whose params are optional: with export on they are
    /// sent, to carry the trace context.
    fn call_listing(
        &self,
        context: &RequestContext<RoleServer>,
        method: &'static str,
        request: &mut Option<PaginatedRequestParams>,
    ) -> Option<Call> {
        self.export.as_ref()?;
        self.call(
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
        context: &RequestContext<RoleServer>,
        call: Option<Call>,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, McpError> {
        let timeout = self.upstream.request_timeout();
        let answer = tokio::select! {
            answer = tokio::time::timeout(timeout, request) => match answer {
                Ok(answer) => answer.map_err(|e| self.upstream.error(e)),
                Err(_) => Err(self.upstream.timed_out(timeout)),
            },
            _ = context.ct.cancelled() => Err(McpError::invalid_request(
                "the request was cancelled",
                None,
            )),
        };
        if let Some(call) = call {
            call.end(answer.as_ref().err());
        }
        answer
    }
}

impl ServerHandler for Bridge {
    /// The upstream's capabilities and instructions, under latchkey's name; before it is
    /// ready, tools only.
    fn get_info(&self) -> ServerConfig {
        let (capabilities, instructions) = match self.upstream.connection() {
            Ok(connection) => {
                let theirs = &connection.info.capabilities;
                let mut ours = ServerCapabilities::default();
                ours.tools = theirs.tools.clone();
                ours.prompts = theirs.prompts.clone();
                ours.resources = theirs.resources.clone();
                ours.completions = theirs.completions.clone();
                (ours, connection.info.instructions.clone())
            }
            Err(_) => (ServerCapabilities::builder().enable_tools().build(), None),
        };
        let config = ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("latchkey", env!("CARGO_PKG_VERSION")));
        match instructions {
            Some(instructions) => config.with_instructions(instructions),
            None => config,
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let connection = self.upstream.connection()?;
        let mut request = request;
        let call = self.call_listing(&context, ListToolsRequestMethod::VALUE, &mut request);
        self.forward(&context, call, connection.peer.list_tools(request))
            .await
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let connection = self.upstream.connection()?;
        let tool = request.name.clone();
        let call = self.call(
            &context,
            CallToolRequestMethod::VALUE,
            Some(&tool),
            &mut request,
        );
        self.forward(&context, call, connection.peer.call_tool_once(request))
            .await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let connection = self.upstream.connection()?;
        let mut request = request;
        let call = self.call_listing(&context, ListPromptsRequestMethod::VALUE, &mut request);
        self.forward(&context, call, connection.peer.list_prompts(request))
            .await
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let connection = self.upstream.connection()?;
        let call = self.call(&context, GetPromptRequestMethod::VALUE, None, &mut request);
        self.forward(&context, call, connection.peer.get_prompt_once(request))
            .await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let connection = self.upstream.connection()?;
        let mut request = request;
        let call = self.call_listing(&context, ListResourcesRequestMethod::VALUE, &mut request);
        self.forward(&context, call, connection.peer.list_resources(request))
            .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let connection = self.upstream.connection()?;
        let mut request = request;
        let call = self.call_listing(
            &context,
            ListResourceTemplatesRequestMethod::VALUE,
            &mut request,
        );
        self.forward(
            &context,
            call,
            connection.peer.list_resource_templates(request),
        )
        .await
    }

    async fn read_resource(
        &self,
        mut request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let connection = self.upstream.connection()?;
        let call = self.call(
            &context,
            ReadResourceRequestMethod::VALUE,
            None,
            &mut request,
        );
        self.forward(&context, call, connection.peer.read_resource_once(request))
            .await
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let connection = self.upstream.connection()?;
        let call = self.call(&context, CompleteRequestMethod::VALUE, None, &mut request);
        self.forward(&context, call, connection.peer.complete(request))
            .await
    }
}
