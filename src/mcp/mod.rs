//! MCP itself, as rmcp serves it: the server handler (`handler`, whose tools live in
//! `crate::tools`; or `bridge`, forwarding to an upstream server) and the span every message gets when traces are exported (`span`), made
//! around the handler where rmcp has already parsed the message.

mod as_task;
pub mod bridge;
mod cancel_on_drop;
mod cursor;
pub mod handler;
pub mod heartbeat;
mod json_size;
mod listen;
pub mod malformed;
mod notices;
pub mod references;
mod result_type;
pub mod span;
pub mod subscriptions;
mod unprefixed;
