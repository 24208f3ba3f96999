//! The tools latchkey serves, one per file.
//!
//! To add a tool: write `src/tools/<name>.rs` with a `#[tool_router(router = <name>_tools)]`
//! block on `impl Latchkey` (see `hello.rs`), then add one line to the list below.

use rmcp::handler::server::router::tool::ToolRouter;

use crate::mcp::handler::Latchkey;

/// Declares the tool modules and joins their routers into one.
macro_rules! tools {
    ($($module:ident => $router:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every tool latchkey serves.
        pub fn router() -> ToolRouter<Latchkey> {
            let mut router = ToolRouter::new();
            $(router += Latchkey::$router();)*
            router
        }
    };
}

tools! {
    hello => hello_tools,
}
