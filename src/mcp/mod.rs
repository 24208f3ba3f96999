//! MCP itself, as rmcp serves it: the server handler (`handler`, whose tools live in
//! `crate::tools`) and the span every message gets when traces are exported (`span`), made
//! around the handler where rmcp has already parsed the message.

pub mod handler;
pub mod span;
