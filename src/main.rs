//! The `latchkey` binary: parse the command line, run, and turn any error into one line.

use std::process::ExitCode;

use latchkey::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_with_default_command();
    match latchkey::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
