//! A request for a method MCP defines whose params rmcp could not read (`tools/call` with no
//! params, or `arguments: "x"`) reaches the handler as a custom request, which rmcp answers
//! -32601 "method not found": wrong, and misleading for whoever debugs the client. It is
//! -32602 invalid params. But a method protocol 2026-07-28 removed, asked on 2026-07-28,
//! is not found there whatever its params: -32601 (rmcp then answers HTTP 404).

use rmcp::ErrorData as McpError;
use rmcp::model::{CustomRequest, CustomResult, ErrorCode, ProtocolVersion};

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

/// The requests protocol 2026-07-28 removed (its lifecycle has no handshake, no session
/// log level and no `resources/subscribe`: `subscriptions/listen` replaces it).
const REMOVED_IN_2026_07_28: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Whether `version` is 2026-07-28 or later (ISO dates compare as strings).
pub fn is_2026_07_28_or_later(version: Option<&ProtocolVersion>) -> bool {
    version.is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// Not found: `method` was removed in 2026-07-28.
pub fn removed(method: &str) -> McpError {
    McpError::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("method not found: {method} was removed in protocol 2026-07-28"),
        None,
    )
}

/// What a custom request of a client on protocol `version` gets: invalid params for a
/// method MCP defines, else not found.
pub fn answer(
    request: &CustomRequest,
    version: Option<&ProtocolVersion>,
) -> Result<CustomResult, McpError> {
    let method = request.method.as_str();
    if is_2026_07_28_or_later(version) && REMOVED_IN_2026_07_28.contains(&method) {
        return Err(removed(method));
    }
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
