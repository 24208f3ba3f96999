//! latchkey: one person's tools, reachable from ChatGPT, Claude and any remote MCP client,
//! behind an API key.
//!
//! A request passes through `gate`, which calls, in order: `auth::take_credentials` (the key
//! leaves the request), `routes::Paths` (which route, which checks, what of the path may be
//! logged), `host_origin` (DNS-rebinding guard), `cors` (preflights), `auth::check` (and,
//! with `--oauth`, `oauth::OAuth::check` for access tokens); then `routes::mcp` (rmcp) and
//! the `tools` answer, or `oauth`'s endpoints.

pub mod activity;
pub mod address_file;
pub mod auth;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod configuration;
pub mod connections;
pub mod console;
pub mod cors;
pub mod doctor;
pub mod error_response;
pub mod file_modes;
pub mod gate;
pub mod history;
pub mod host_origin;
pub mod html;
pub mod intake;
pub mod json_text;
pub mod keys;
pub mod listen;
pub mod lockout;
pub mod mcp;
pub mod oauth;
pub mod redact;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod upstream;
pub mod url;

use cli::{Cli, Command};

/// The exit status an error ends `latchkey` with: 1, or 2 when `latchkey doctor` could not
/// examine its URL at all.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    commands::doctor::exit_status(error)
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) if args.check_config => {
            let telemetry = telemetry::init(args.log_format)?;
            let checked = commands::check_config::run(&args).await;
            telemetry.shutdown();
            checked
        }
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
        Command::Watch(args) => commands::watch::run(args).await,
        Command::Oauth(command) => commands::oauth::run(command),
        Command::Doctor(args) => commands::doctor::run(args).await,
    }
}
