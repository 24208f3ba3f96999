//! Where the console is served, under the base path.

/// The console's paths, under the base path.
pub const CONSOLE: &str = "/console";
pub const SIGN_IN: &str = "/console/sign-in";
pub const SIGN_OUT: &str = "/console/sign-out";
pub const EVENTS: &str = "/console/events";
pub const TOOLS: &str = "/console/tools";
pub const REFUSALS: &str = "/console/refusals";
pub const UPSTREAMS: &str = "/console/upstreams";
pub const CLIENTS: &str = "/console/clients";
pub const CHANGES: &str = "/console/changes";
pub const APPROVE: &str = "/console/approve";
pub const REVOKE: &str = "/console/revoke";
pub const UNLOCK: &str = "/console/unlock";
pub const SCRIPT: &str = "/console/console.js";
pub const STYLE: &str = "/console/console.css";
/// Every path above: the Host/Origin guard, no key (the console signs in itself).
pub const PATHS: [&str; 14] = [
    CONSOLE, SIGN_IN, SIGN_OUT, EVENTS, TOOLS, CLIENTS, REVOKE, UPSTREAMS, CHANGES, APPROVE,
    REFUSALS, UNLOCK, SCRIPT, STYLE,
];
/// The feed `latchkey watch` reads, behind the key.
pub const ACTIVITY: &str = "/activity";
