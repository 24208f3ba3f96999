//! `latchkey serve --check-config`: what a deployment can run first. Reads the keys as
//! `serve` would, starts every upstream and lists its tools, and says what is wrong — an
//! upstream that cannot start, an allow or deny entry that names none of its tools — then
//! exits: 0 when nothing is, 1 otherwise. Nothing is served.

use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::upstream::{Upstream, Upstreams};

pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let keys = args.keys.sources()?.load()?;
    let configs = args.upstream.configs()?;
    let stop = CancellationToken::new();
    let upstreams = Upstreams::start(configs, None, &stop);
    let mut problems = Vec::new();
    let mut checked = 0;
    for upstream in upstreams.iter().flat_map(Upstreams::iter) {
        checked += 1;
        for problem in check(upstream).await {
            problems.push(format!("upstream {:?}: {problem}", upstream.name()));
        }
    }
    stop.cancel();
    for upstream in upstreams.iter().flat_map(Upstreams::iter) {
        upstream.stopped().await;
    }
    for problem in &problems {
        eprintln!("latchkey: {problem}");
    }
    match problems.len() {
        0 => {
            println!(
                "configuration ok: {} key(s), {checked} upstream(s) started and their tools listed",
                keys.len()
            );
            Ok(())
        }
        n => anyhow::bail!("{n} problem(s) in the configuration (above)"),
    }
}

/// What is wrong with one upstream, once it is ready (or has failed to be).
async fn check(upstream: &Upstream) -> Vec<String> {
    let connection = match upstream.ready_connection().await {
        Ok(connection) => connection,
        Err(e) => return vec![e.message.into_owned()],
    };
    match connection.peer.list_all_tools().await {
        Ok(tools) => {
            let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
            upstream.unmatched_tool_entries(&names)
        }
        Err(e) => vec![format!("cannot list its tools: {e}")],
    }
}
