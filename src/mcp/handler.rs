//! The MCP server handler: what latchkey answers to `initialize`, `tools/list` and
//! `tools/call`. The tools themselves live in `tools/`.

use std::sync::{Arc, LazyLock};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::{ServerHandler, tool_handler};

/// One instance per session (stateful) or per request (stateless): cheap to make, since
/// every instance shares one tool router (building it generates the tools' JSON schemas).
#[derive(Clone)]
pub struct Latchkey {
    tools: Arc<ToolRouter<Latchkey>>,
}

static TOOLS: LazyLock<Arc<ToolRouter<Latchkey>>> =
    LazyLock::new(|| Arc::new(crate::tools::router()));

impl Latchkey {
    pub fn new() -> Self {
        Self {
            tools: TOOLS.clone(),
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
impl ServerHandler for Latchkey {
    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CustomResult, rmcp::ErrorData> {
        super::malformed::answer(&request, context.protocol_version().as_ref())
    }
}
