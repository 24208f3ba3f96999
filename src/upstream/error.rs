//! Why an upstream could not be reached, in the words a person uses: what `/healthz`, the log
//! and a failed call say. Typed, so that callers can tell the cases apart (a command not
//! found is not retried any differently, but it is said once, plainly).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A bare command name that no directory on `PATH` holds.
    #[error("{program}: not found on PATH (PATH={path})")]
    NotOnPath { program: String, path: String },
    #[error("{program}: no such file")]
    NoSuchFile { program: String },
    #[error("{program}: not executable (permission denied)")]
    NotExecutable { program: String },
    #[error("cannot start {program}: {source}")]
    CannotStart {
        program: String,
        source: std::io::Error,
    },
    /// The child started but did not complete `initialize`; how it then ended.
    #[error("initialize failed: {reason} (the child {ended})")]
    ChildInitialize { reason: String, ended: String },
    /// Nothing answered at `place` (`host:port`, or the socket).
    #[error("cannot connect to {place}: {kind}")]
    Unreachable {
        place: String,
        kind: std::io::ErrorKind,
    },
    /// Something answered at `place`, but not as an MCP server does.
    #[error("initialize failed at {place}: {cause}")]
    InitializeAt { place: String, cause: String },
    #[error("initialize failed: {0}")]
    Initialize(String),
    #[error("the server did not complete initialize")]
    Incomplete,
    #[error("no answer to initialize within {0:?}")]
    NoAnswer(Duration),
}
