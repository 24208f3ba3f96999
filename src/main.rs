//! The `latchkey` binary: parse the command line, run, and turn any error into one line.

use std::process::ExitCode;

use latchkey::cli::Cli;

/// mimalloc rather than glibc's malloc: a request allocates and frees a few hundred small
/// blocks across threads, which glibc made a fifth of all the work (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_with_default_command();
    match latchkey::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: error: {e:#}");
            ExitCode::from(latchkey::exit_status(&e))
        }
    }
}
