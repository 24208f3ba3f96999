//! A tool its upstream runs only as a task (2025-11-25 tasks, `execution.taskSupport:
//! "required"`, as the TypeScript SDK and the servers on it have them), called for a client
//! that cannot know: rmcp's types drop `execution`, so neither latchkey nor its clients see
//! it, and a plain call is refused. Refused so, the call is made again as a task and the
//! task's result awaited with `tasks/result`, which the upstream answers when the task ends
//! (and on whose stream it asks what it needs, `crate::upstream::relay`): the client gets
//! the tool's result as for any call, and its cancelling the call cancels the task.
//!
//! Deliberately absent: tasks the client itself asks for (rmcp drops the request's `task`),
//! and a task's status notifications (they concern latchkey's task, not the client's call).

use rmcp::Peer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest, CustomRequest,
    ErrorCode, ProgressToken, ServerResult,
};
use rmcp::service::{RoleClient, ServiceError};
use serde_json::{Value, json};

use super::cancel_on_drop;

/// Where a task's result says which task it is (2025-11-25): about latchkey's task, not
/// the client's call, so it is not passed on.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// What the TypeScript SDK answers a plain call with, as a tool error (not the -32601 error
/// 2025-11-25 asks for): "MCP error -32601: Tool x requires task augmentation (…)".
const REFUSAL: &str = "requires task augmentation";

/// Whether `answer` is an upstream's refusal to run a tool but as a task: the JSON-RPC
/// error -32601 that 2025-11-25 asks for, or the TypeScript SDK's tool error saying so.
pub fn refused(answer: &Result<CallToolResponse, ServiceError>) -> bool {
    match answer {
        Err(ServiceError::McpError(error)) => error.code == ErrorCode::METHOD_NOT_FOUND,
        Ok(CallToolResponse::Complete(result)) => {
            result.is_error == Some(true)
                && result.content.iter().any(|content| {
                    content
                        .as_text()
                        .is_some_and(|text| text.text.contains(REFUSAL))
                })
        }
        Ok(_) | Err(_) => false,
    }
}

/// `params` called on `peer` as a task, and the task's result; `None` when the upstream
/// would not make it a task (the caller keeps the refusal). `route` gets the progress token
/// the task's request carries (an upstream reports a task's progress with it until the
/// task ends) and what it returns is kept until then.
pub async fn run<Route>(
    peer: &Peer<RoleClient>,
    params: CallToolRequestParams,
    route: impl FnOnce(ProgressToken) -> Route,
) -> Option<Result<CallToolResponse, ServiceError>> {
    let created = cancel_on_drop::send(peer, task_request(params), route).await;
    match created.ok()? {
        // An upstream that ignored `task` and ran the tool: its answer is the call's.
        ServerResult::CallToolResult(result) => Some(Ok(CallToolResponse::Complete(result))),
        created => {
            let id = task_id(created)?;
            // Quoted: the id is the upstream's word.
            tracing::info!("the upstream runs the call as its task {id:?}");
            Some(task_result(peer, id).await)
        }
    }
}

/// The call as 2025-11-25 makes it a task: `task` beside the name and arguments, with the
/// upstream's default time to live. The request's `_meta` goes where rmcp adds its own.
fn task_request(mut params: CallToolRequestParams) -> ClientRequest {
    let meta = params.meta.take();
    let mut call = serde_json::to_value(params).unwrap_or_else(|_| json!({}));
    if let Some(call) = call.as_object_mut() {
        call.insert("task".to_owned(), json!({}));
    }
    let mut request = CustomRequest::new("tools/call", Some(call));
    if let Some(meta) = meta {
        request.extensions.insert(meta);
    }
    ClientRequest::CustomRequest(request)
}

/// The id of the task an upstream made: `{"task": {"taskId": …}}`, which rmcp parses as
/// none of its own results (its tasks, SEP-2663's, say `resultType: "task"`).
fn task_id(created: ServerResult) -> Option<String> {
    let created = serde_json::to_value(created).ok()?;
    Some(created.get("task")?.get("taskId")?.as_str()?.to_owned())
}

/// `tasks/result` for the task `id`: the upstream answers it when the task ends, with the
/// tool's result. Dropped before that, it cancels the task.
async fn task_result(
    peer: &Peer<RoleClient>,
    id: String,
) -> Result<CallToolResponse, ServiceError> {
    let mut cancel = CancelTaskOnDrop(Some((peer.clone(), id.clone())));
    let request = CustomRequest::new("tasks/result", Some(json!({ "taskId": id })));
    let request = ClientRequest::CustomRequest(request);
    let answer = cancel_on_drop::send(peer, request, |_| ()).await;
    cancel.0 = None;
    let mut result = match answer? {
        ServerResult::CallToolResult(result) => result,
        other => serde_json::to_value(other)
            .and_then(serde_json::from_value::<CallToolResult>)
            .map_err(|_| ServiceError::UnexpectedResponse)?,
    };
    if let Some(meta) = &mut result.meta {
        meta.remove(RELATED_TASK);
        if meta.is_empty() {
            result.meta = None;
        }
    }
    Ok(CallToolResponse::Complete(result))
}

/// Sends the upstream `tasks/cancel` for a task whose result is no longer awaited.
struct CancelTaskOnDrop(Option<(Peer<RoleClient>, String)>);

impl Drop for CancelTaskOnDrop {
    fn drop(&mut self) {
        if let Some((peer, id)) = self.0.take() {
            let request = CustomRequest::new("tasks/cancel", Some(json!({ "taskId": id })));
            tokio::spawn(async move {
                match peer
                    .send_request(ClientRequest::CustomRequest(request))
                    .await
                {
                    Ok(answer) => {
                        let answer = serde_json::to_value(answer).unwrap_or_default();
                        let status = answer.get("status").and_then(Value::as_str);
                        let status = status.unwrap_or("not said");
                        // Quoted: what the upstream says is not the log's own text.
                        tracing::info!("cancelled the upstream's task {id:?}: it is {status:?}");
                    }
                    Err(error) => tracing::warn!("cancelling the upstream's task {id:?}: {error}"),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ContentBlock as Content, ErrorData};

    #[test]
    fn a_refusal_is_the_error_or_the_typescript_sdks_tool_error_and_nothing_else() {
        let sdk = CallToolResult::error(vec![Content::text(
            "MCP error -32601: Tool research requires task augmentation (taskSupport: 'required')",
        )]);
        assert!(refused(&Ok(CallToolResponse::Complete(sdk))));
        let error = ErrorData::new(ErrorCode::METHOD_NOT_FOUND, "task required", None);
        assert!(refused(&Err(ServiceError::McpError(error))));

        let failed = CallToolResult::error(vec![Content::text("disk full")]);
        assert!(!refused(&Ok(CallToolResponse::Complete(failed))));
        let said = CallToolResult::success(vec![Content::text(REFUSAL)]);
        assert!(!refused(&Ok(CallToolResponse::Complete(said))));
        let invalid = ErrorData::invalid_params("unknown tool", None);
        assert!(!refused(&Err(ServiceError::McpError(invalid))));
    }

    #[test]
    fn the_task_request_keeps_name_arguments_and_meta_and_asks_for_a_task() {
        let mut params = CallToolRequestParams::new("research");
        params.arguments = Some(json!({ "topic": "x" }).as_object().cloned().unwrap());
        let mut meta = rmcp::model::RequestMetaObject::new();
        meta.insert("traceparent".to_owned(), json!("00-…"));
        params.meta = Some(meta);
        let request = serde_json::to_value(task_request(params)).unwrap();
        assert_eq!(request["method"], "tools/call");
        assert_eq!(request["params"]["name"], "research");
        assert_eq!(request["params"]["arguments"], json!({ "topic": "x" }));
        assert_eq!(request["params"]["task"], json!({}));
        assert_eq!(request["params"]["_meta"]["traceparent"], "00-…");
    }

    #[test]
    fn the_task_id_is_read_from_what_rmcp_could_not_parse() {
        let created = serde_json::from_value::<ServerResult>(json!({
            "task": { "taskId": "t1", "status": "working", "ttl": 300000,
                      "createdAt": "2026-12-04T16:58:54.190Z",
                      "lastUpdatedAt": "2026-12-04T16:58:54.211Z" }
        }))
        .unwrap();
        assert_eq!(task_id(created).as_deref(), Some("t1"));
        assert_eq!(task_id(ServerResult::empty(())), None);
    }
}
