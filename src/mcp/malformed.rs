//! A request for a method MCP defines whose params rmcp could not read (`tools/call` with no
//! params, or `arguments: "x"`) reaches the handler as a custom request, which rmcp answers
//! -32601 "method not found": wrong, and misleading for whoever debugs the client. It is
//! -32602 invalid params.

use rmcp::ErrorData as McpError;
use rmcp::model::{CustomRequest, CustomResult, ErrorCode};

/// The requests MCP defines (clients to servers), by method name.
const KNOWN: [&str; 13] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
];

/// What a custom request gets: invalid params for a method MCP defines, else not found.
pub fn answer(request: &CustomRequest) -> Result<CustomResult, McpError> {
    let method = request.method.as_str();
    if KNOWN.contains(&method) {
        return Err(McpError::invalid_params(
            format!("the params of {method} are missing or not of the shape MCP defines"),
            None,
        ));
    }
    Err(McpError::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("method not found: {method}"),
        None,
    ))
}
