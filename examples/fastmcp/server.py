#!/usr/bin/env python3
"""The reference FastMCP connector (../shared/anchors/fastmcp-reference) without its own key
check: latchkey in front holds the key, the TLS and the traces, so the app is only its tools.

Serves Streamable HTTP at http://HOST:PORT/mcp (argv[1], default 127.0.0.1:8000), or on a
Unix socket when argv[1] is a path. Never expose it directly: only latchkey should reach it
(loopback, a socket, or a private compose network).
"""

import sys

from fastmcp import FastMCP

mcp = FastMCP("Static token authentication demo")


@mcp.tool(annotations={"title": "Say hello to someone", "readOnlyHint": True, "destructiveHint": False})
def hello(name: str = "world") -> str:
    """Say hello to someone."""
    return f"Hello {name}! (Authenticated by latchkey.)"


if __name__ == "__main__":
    where = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8000"
    if where.startswith("/"):
        import uvicorn

        uvicorn.run(mcp.http_app(path="/mcp"), uds=where, log_level="warning")
    else:
        host, port = where.rsplit(":", 1)
        mcp.run(transport="http", host=host, port=int(port), path="/mcp", log_level="warning", show_banner=False)
