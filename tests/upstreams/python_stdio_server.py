"""A real stdio MCP server, written with the official Python SDK (PyPI `mcp`), for
tests/upstream.rs: latchkey starts it as its upstream and serves its tools.

Tools: `echo` (says what it got), `slow` (sleeps, to time out or be cancelled; writes a
line to the file in SLOW_LOG when it starts and when it is cancelled), `crash` (the process exits at once),
`environment` (the names of the variables it was given), `together` (answers once that many
calls of it are in flight at once), `traceparent` (the W3C trace context
the request carried in `_meta`), `progress` (progress notifications and a log message),
`grow` (adds a tool and says the list changed), `leak` (a secret on stderr), `garble` (a
JSON line that is no message, with a secret, on stdout). A prompt `greet` and a resource
`note://hello`. Before serving, it prints a banner on stdout (not JSON-RPC: latchkey must
skip it) and a line on stderr (latchkey logs it).
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("python-upstream")


@server.tool()
def echo(text: str) -> str:
    """Says what it got."""
    return f"echo: {text}"


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then answers."""
    log = os.environ.get("SLOW_LOG")
    if log:
        with open(log, "a") as f:
            f.write("started\n")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        log = os.environ.get("SLOW_LOG")
        if log:
            with open(log, "a") as f:
                f.write("cancelled\n")
        raise
    return "done"


_in_flight = 0
_all_here = asyncio.Event()


@server.tool()
async def together(count: int) -> str:
    """Answers "together" once `count` calls of it are in flight at once, or after 20 s
    "alone: N" with the most it saw: calls queued one behind another never meet."""
    global _in_flight
    _in_flight += 1
    seen = _in_flight
    if _in_flight >= count:
        _all_here.set()
    try:
        await asyncio.wait_for(_all_here.wait(), 20)
        return "together"
    except asyncio.TimeoutError:
        return f"alone: {seen}"


@server.tool()
def crash() -> str:
    """Exits the process without answering."""
    os._exit(3)


@server.tool()
def environment() -> str:
    """The names of the environment variables it was given."""
    return " ".join(sorted(os.environ))


@server.tool()
def traceparent(ctx: Context) -> str:
    """The `traceparent` in the request's `_meta` (empty when there is none)."""
    meta = ctx.request_context.meta or {}
    return meta.get("traceparent", "")


@server.tool()
async def progress(steps: int, ctx: Context) -> str:
    """Reports progress `steps` times and logs a message (with the token from UPSTREAM_TOKEN
    in it, for latchkey to redact), then answers."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
    await ctx.info(f"progress done, token {os.environ.get('UPSTREAM_TOKEN', '')}")
    return "progressed"


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds the tool `grown` and says that the tool list changed."""
    server.add_tool(lambda: "grown", name="grown", description="Added by grow.")
    await ctx.session.send_tool_list_changed()
    return "grew"


@server.tool()
def leak() -> str:
    """Writes the token from UPSTREAM_TOKEN on stderr (latchkey must not log it)."""
    print(f"leaking {os.environ.get('UPSTREAM_TOKEN', '')} and Bearer abc123", file=sys.stderr, flush=True)
    return "leaked"


@server.tool()
def garble() -> str:
    """Writes a JSON line on stdout that is no MCP message and holds a token (latchkey must
    not log it, at any level)."""
    sys.stdout.write('{"not": "a message", "token": "garbled-secret-4d1e9b"}\n')
    sys.stdout.flush()
    return "garbled"


@server.prompt()
def greet(name: str) -> str:
    """A greeting."""
    return f"Say hello to {name}."


@server.resource("note://hello")
def note() -> str:
    """A note."""
    return "a note from upstream"


if __name__ == "__main__":
    print("python-upstream starting (this banner is not JSON-RPC)", flush=True)
    print("python-upstream: a line on stderr", file=sys.stderr, flush=True)
    server.run("stdio")
