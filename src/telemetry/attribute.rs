//! Attribute names of the OpenTelemetry conventions latchkey records.
//!
//! The stable ones come from `opentelemetry-semantic-conventions`; its `gen_ai.*` and `mcp.*`
//! names are deprecated there (moved to the GenAI conventions' own repository, which has no
//! Rust crate), so they are written here, once.

pub use opentelemetry_semantic_conventions::attribute::{
    CLIENT_ADDRESS, CLIENT_PORT, ERROR_TYPE, JSONRPC_REQUEST_ID, NETWORK_TRANSPORT,
    RPC_RESPONSE_STATUS_CODE,
};

pub const MCP_METHOD_NAME: &str = "mcp.method.name";
pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
pub const MCP_SESSION_ID: &str = "mcp.session.id";
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
pub const GEN_AI_PROMPT_NAME: &str = "gen_ai.prompt.name";
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
pub const GEN_AI_TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
