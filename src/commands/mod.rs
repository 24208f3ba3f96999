//! The commands besides `serve` (which is `startup`), and `serve --check-config`.

pub mod check_config;
pub mod doctor;
pub mod healthcheck;
pub mod keygen;
pub mod oauth;
pub mod url;
pub mod watch;
