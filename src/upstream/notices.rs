//! What an upstream says unasked, and where it goes: list changes to whoever watches
//! ([`Notice`], a broadcast the MCP side forwards to client sessions), progress to the
//! client whose request asked for it ([`ProgressRoutes`]), log messages to latchkey's log
//! and to the client whose request is in flight.
//!
//! rmcp's client gives every request to the upstream a progress token of its own, so two
//! clients that chose the same token never see each other's progress; a route maps it
//! back to the client's token on the way down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, ElicitationCapability, FormElicitationCapability, ServerRequest,
    UrlElicitationCapability,
};
#[allow(deprecated)]
use rmcp::model::{
    CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult, ListRootsRequest,
    ListRootsResult,
};
use rmcp::service::RequestContext;
use rmcp::{ClientHandler, ErrorData as McpError};
// MCP logging is deprecated (SEP-2577), but the servers people run today still send it.
#[allow(deprecated)]
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::model::{ProgressNotificationParam, ProgressToken, ResourceUpdatedNotificationParam};
use rmcp::service::{NotificationContext, RoleClient};
use tokio::sync::broadcast;

use super::log_line::LogLines;
use super::names::Naming;
use super::relay::{Ask, Callers};

/// A list an upstream says has changed, or a resource it says was updated (its own URI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    ToolsChanged,
    PromptsChanged,
    ResourcesChanged,
    ResourceUpdated(Arc<str>),
}

/// Where a progress notification goes: the client's side sends it on.
pub type ProgressSink =
    Box<dyn Fn(ProgressNotificationParam) -> BoxFuture<'static, ()> + Send + Sync>;

type Routes = HashMap<ProgressToken, (ProgressToken, Arc<ProgressSink>)>;

/// The requests in flight that asked for progress, by the token sent upstream.
#[derive(Default)]
pub struct ProgressRoutes {
    routes: Mutex<Routes>,
}

/// Keeps a route while its request is in flight; dropping it removes the route.
pub struct ProgressRoute {
    routes: Arc<ProgressRoutes>,
    ours: ProgressToken,
}

impl Drop for ProgressRoute {
    fn drop(&mut self) {
        self.routes.lock().remove(&self.ours);
    }
}

impl ProgressRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Routes the upstream's progress for the token `ours` (the one it was sent) to `sink`,
    /// as progress for the client's token `theirs`.
    pub fn route(
        self: &Arc<Self>,
        ours: ProgressToken,
        theirs: ProgressToken,
        sink: ProgressSink,
    ) -> ProgressRoute {
        self.lock().insert(ours.clone(), (theirs, Arc::new(sink)));
        ProgressRoute {
            routes: self.clone(),
            ours,
        }
    }

    /// Sends `progress` to the client whose request it is about, with the client's token;
    /// drops it when that request is over or never asked for progress (rmcp sends a token
    /// with every request, and some servers report progress whenever they have a token).
    ///
    /// The route is made just after rmcp sends the request, with the token rmcp chose: a
    /// notification that came back before that would be dropped too, but the upstream has
    /// to read the request and answer first, and the route is made without waiting on it.
    pub(super) async fn deliver(&self, mut progress: ProgressNotificationParam) {
        let route = self.lock().get(&progress.progress_token).cloned();
        let Some((theirs, sink)) = route else {
            return;
        };
        progress.progress_token = theirs;
        sink(progress).await;
    }
}

/// latchkey's side of an upstream connection: what it does with notifications, and where
/// the upstream's requests go ([`Callers`]).
pub(super) struct Listener {
    pub(super) name: Arc<str>,
    /// What its log messages' `logger` becomes outside.
    pub(super) naming: Naming,
    pub(super) log: LogLines,
    pub(super) notices: broadcast::Sender<Notice>,
    pub(super) callers: Arc<Callers>,
    /// How long a client may take to answer a relayed request (the upstream's request
    /// timeout).
    pub(super) timeout: Duration,
    /// Whether roots are declared and relayed (`--relay-roots`).
    pub(super) relay_roots: bool,
}

impl Listener {
    /// `request` relayed to the client that can answer `ask`; its answer as `R`.
    async fn relay<R>(
        &self,
        ask: Ask,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
        answer: impl FnOnce(ClientResult) -> Option<R>,
    ) -> Result<R, McpError> {
        let result = self
            .callers
            .relay(&self.name, ask, request, self.timeout, context.ct)
            .await?;
        answer(result).ok_or_else(|| {
            McpError::internal_error("the client answered with another kind of result", None)
        })
    }

    /// The upstream's log message in latchkey's log, at the nearest level, under its name.
    #[allow(deprecated)]
    fn log_line(&self, message: &LoggingMessageNotificationParam) {
        let name = &*self.name;
        let logger = message.logger.as_deref().unwrap_or("");
        let data = match &message.data {
            serde_json::Value::String(text) => text.clone(),
            other => crate::redact::json(other).to_string(),
        };
        let data = self.log.show(data.as_bytes());
        match message.level {
            LoggingLevel::Debug => tracing::debug!(upstream = name, logger, "log: {data}"),
            LoggingLevel::Info | LoggingLevel::Notice => {
                tracing::info!(upstream = name, logger, "log: {data}")
            }
            LoggingLevel::Warning => tracing::warn!(upstream = name, logger, "log: {data}"),
            _ => tracing::error!(upstream = name, logger, "log: {data}"),
        }
    }

    fn changed(&self, notice: Notice) {
        tracing::info!(upstream = &*self.name, "upstream says {notice:?}");
        // No receiver (no client session open) is fine: the next listing is fresh anyway.
        let _ = self.notices.send(notice);
    }
}

impl ClientHandler for Listener {
    /// What latchkey can relay ([`Callers`]): upstreams offer what needs it (tools that ask
    /// the user or the model) only to a client that declares it. Sampling and roots are
    /// deprecated (SEP-2577) but are what today's servers send.
    #[allow(deprecated)]
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::builder()
            .enable_sampling()
            .enable_elicitation_with(
                ElicitationCapability::new()
                    .with_form(FormElicitationCapability::default())
                    .with_url(UrlElicitationCapability::default()),
            )
            .build();
        if self.relay_roots {
            capabilities.roots = Some(Default::default());
        }
        let mut config = ClientConfig::default();
        config.capabilities = capabilities;
        config
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let ask = match &request {
            ElicitRequestParams::UrlElicitationParams { .. } => Ask::UrlElicitation,
            _ => Ask::FormElicitation,
        };
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(request));
        self.relay(ask, request, context, |answer| match answer {
            ClientResult::ElicitResult(result) => Some(result),
            _ => None,
        })
        .await
    }

    #[allow(deprecated)]
    async fn create_message(
        &self,
        request: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(request));
        self.relay(Ask::Sampling, request, context, |answer| match answer {
            ClientResult::CreateMessageResult(result) => Some(*result),
            _ => None,
        })
        .await
    }

    #[allow(deprecated)]
    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        if !self.relay_roots {
            return Err(McpError::method_not_found::<
                rmcp::model::ListRootsRequestMethod,
            >());
        }
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        self.relay(Ask::Roots, request, context, |answer| match answer {
            ClientResult::ListRootsResult(result) => Some(result),
            _ => None,
        })
        .await
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(Notice::ToolsChanged);
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(Notice::PromptsChanged);
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(Notice::ResourcesChanged);
    }

    /// To the sessions subscribed to it (`crate::mcp::subscriptions`).
    async fn on_resource_updated(
        &self,
        updated: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        tracing::debug!(
            upstream = &*self.name,
            "upstream says a resource was updated"
        );
        let _ = self
            .notices
            .send(Notice::ResourceUpdated(updated.uri.into()));
    }

    /// The upstream's log message, in latchkey's log at the nearest level, under its name,
    /// and to the client session whose request is in flight ([`Callers::tell_log`]), its
    /// logger named like the upstream's tools.
    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        mut message: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.log_line(&message);
        message.logger = self.naming.logger(message.logger.take());
        self.callers.tell_log(message).await;
    }
}
