//! latchkey: one person's tools, reachable from ChatGPT, Claude and any remote MCP client,
//! behind an API key.
//!
//! A request passes through, in order: `auth::take_credentials` (the key leaves the
//! request), `routes` (which route, which checks), `host_origin` (DNS-rebinding guard),
//! `auth::require_key`, then `routes::mcp` (rmcp) and the `tools`.

pub mod auth;
pub mod cli;
pub mod commands;
pub mod configuration;
pub mod error_response;
pub mod gate;
pub mod host_origin;
pub mod keys;
pub mod listen;
pub mod routes;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod url;

use cli::{Cli, Command};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let telemetry = telemetry::init(args.log_format)?;
            let served = match startup::start(*args, telemetry.export()).await {
                Ok(server) => server.run_until_signalled().await,
                Err(e) => Err(e),
            };
            telemetry.shutdown();
            served
        }
        Command::Keygen(args) => commands::keygen::run(args),
        Command::Healthcheck(args) => commands::healthcheck::run(args).await,
        Command::Url(args) => commands::url::run(args),
    }
}
