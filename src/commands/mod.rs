//! The commands besides `serve` (which is `startup`).

pub mod healthcheck;
pub mod keygen;
pub mod oauth;
pub mod url;
