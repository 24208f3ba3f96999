"""A real MCP client, the official Python SDK (PyPI `mcp`), for the log test in
tests/conformance.rs: through latchkey (with --sessions), sets the log level to debug, calls
TOOL, then waits (at most 20 s) for the log message LAST to arrive, and prints one JSON line
with every log message in the order it came. Log messages come on the session's GET
stream, so they may follow the call's result. Each message is printed as {"logger", "data"}.

    python_logging_client.py URL TOOL LAST

The key comes from LATCHKEY_TEST_KEY, sent as a Bearer token.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, tool: str, last: str) -> None:
    headers = {"Authorization": f"Bearer {os.environ['LATCHKEY_TEST_KEY']}"}
    logged = []
    heard_last = asyncio.Event()

    async def on_log(params):
        logged.append({"logger": params.logger, "data": params.data})
        if params.data == last:
            heard_last.set()

    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, logging_callback=on_log) as session:
                await session.initialize()
                await session.set_logging_level("debug")
                await session.call_tool(tool, {})
                try:
                    await asyncio.wait_for(heard_last.wait(), 20)
                except TimeoutError:
                    pass
    print(json.dumps(logged))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
