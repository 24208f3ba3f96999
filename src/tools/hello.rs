//! `hello`: the smallest useful tool, to check a connector end to end.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use crate::mcp::handler::Latchkey;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct HelloArgs {
    /// Who to greet.
    #[serde(default = "world")]
    #[schemars(default = "world")]
    pub name: String,
}

fn world() -> String {
    "world".to_owned()
}

#[tool_router(router = hello_tools, vis = "pub(crate)")]
impl Latchkey {
    #[tool(
        description = "Say hello to someone. Returns a greeting with their name.",
        annotations(
            title = "Say hello to someone",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn hello(&self, Parameters(args): Parameters<HelloArgs>) -> String {
        format!("Hello {}!", args.name)
    }
}
