//! The MCP server handler when latchkey fronts an upstream server: tools, prompts,
//! resources and completions are the upstream's, each request forwarded over its one
//! connection (`crate::upstream`).
//!
//! A request that takes longer than the upstream's timeout fails, and so does one whose
//! client cancels it or goes away; in each case rmcp's client tells the upstream with
//! `notifications/cancelled` (it cancels a request whose answer is no longer awaited).

use std::future::Future;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer, ServiceError};
use rmcp::{ErrorData as McpError, ServerHandler};

use crate::upstream::Upstream;

/// One per request (stateless) or session: a clone of the upstream's handle.
#[derive(Clone)]
pub struct Bridge {
    upstream: Upstream,
}

impl Bridge {
    pub fn new(upstream: Upstream) -> Self {
        Bridge { upstream }
    }

    /// `request`'s answer, or the error that names the upstream: when it fails, takes longer
    /// than the timeout, or the client cancels first.
    async fn forward<T>(
        &self,
        context: &RequestContext<RoleServer>,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, McpError> {
        let timeout = self.upstream.request_timeout();
        tokio::select! {
            answer = tokio::time::timeout(timeout, request) => match answer {
                Ok(answer) => answer.map_err(|e| self.upstream.error(e)),
                Err(_) => Err(self.upstream.timed_out(timeout)),
            },
            _ = context.ct.cancelled() => Err(McpError::invalid_request(
                "the request was cancelled",
                None,
            )),
        }
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
        self.forward(&context, connection.peer.list_tools(request))
            .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let connection = self.upstream.connection()?;
        self.forward(&context, connection.peer.call_tool_once(request))
            .await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let connection = self.upstream.connection()?;
        self.forward(&context, connection.peer.list_prompts(request))
            .await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let connection = self.upstream.connection()?;
        self.forward(&context, connection.peer.get_prompt_once(request))
            .await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let connection = self.upstream.connection()?;
        self.forward(&context, connection.peer.list_resources(request))
            .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let connection = self.upstream.connection()?;
        self.forward(&context, connection.peer.list_resource_templates(request))
            .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let connection = self.upstream.connection()?;
        self.forward(&context, connection.peer.read_resource_once(request))
            .await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let connection = self.upstream.connection()?;
        self.forward(&context, connection.peer.complete(request))
            .await
    }
}
