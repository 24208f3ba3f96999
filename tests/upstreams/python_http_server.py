"""A real Streamable HTTP MCP server, written with the official Python SDK (PyPI `mcp`),
for tests/upstream.rs: latchkey fronts it with `--upstream`. It answers only requests that
carry `Authorization: Bearer $UPSTREAM_TOKEN` (its own key, which latchkey sends with
`--upstream-header`), and records every request's headers, one JSON line each, in the file
named by HEADERS_LOG (so the test can check that latchkey's own key never reaches it).

Usage: python_http_server.py PORT
"""

import asyncio
import json
import os
import sys

import uvicorn
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse

from mcp.server.mcpserver import MCPServer

server = MCPServer("python-http-upstream")


@server.tool()
def echo(text: str) -> str:
    """Says what it got."""
    return f"echo over http: {text}"


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then answers."""
    await asyncio.sleep(seconds)
    return "done"


class TokenCheck(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        with open(os.environ["HEADERS_LOG"], "a") as log:
            log.write(json.dumps(dict(request.headers)) + "\n")
        if request.headers.get("authorization") != f"Bearer {os.environ['UPSTREAM_TOKEN']}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return await call_next(request)


if __name__ == "__main__":
    app = server.streamable_http_app(stateless_http=True, json_response=True)
    app.add_middleware(TokenCheck)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
