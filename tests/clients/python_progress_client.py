"""A real MCP client, the official Python SDK (PyPI `mcp`), for the heartbeat test in
tests/passthrough.rs: through latchkey (with --sessions), calls TOOL with the JSON
ARGUMENTS asking for progress, and prints one JSON line with every progress notification
(value, total, message) in the order it came and the result's text.

    python_progress_client.py URL TOOL ARGUMENTS

The key comes from LATCHKEY_TEST_KEY, sent as a Bearer token.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, tool: str, arguments: str) -> None:
    headers = {"Authorization": f"Bearer {os.environ['LATCHKEY_TEST_KEY']}"}
    progress = []

    async def on_progress(value, total, message):
        progress.append([value, total, message])

    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool(
                    tool, json.loads(arguments), progress_callback=on_progress
                )
    text = [c.text for c in result.content if c.type == "text"]
    print(json.dumps({"progress": progress, "text": text}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
