//! The MCP server handler: what latchkey answers to `initialize`, `tools/list` and
//! `tools/call`. The tools themselves live in `tools/`.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::{ServerHandler, tool_handler};

/// One instance per session (stateful) or per request (stateless); cheap to make, since the
/// tool router is built once and shared.
#[derive(Clone)]
pub struct Latchkey {
    tools: Arc<ToolRouter<Latchkey>>,
}

impl Latchkey {
    pub fn new() -> Self {
        Self {
            tools: Arc::new(crate::tools::router()),
        }
    }
}

impl Default for Latchkey {
    fn default() -> Self {
        Self::new()
    }
}

// `name` makes serverInfo say latchkey and this crate's version (rmcp reports itself otherwise).
#[tool_handler(router = self.tools, name = "latchkey")]
impl ServerHandler for Latchkey {}
