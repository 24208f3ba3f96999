"""A real MCP client, the official Python SDK (PyPI `mcp`), for tests/clients.rs.

Connects to the URL in argv[1] with the key from LATCHKEY_TEST_KEY as a Bearer token (never
on the command line), lists the tools, calls `hello`, and closes the session as the SDK
does (a DELETE when the server gave a session). Prints one JSON line with what it saw; the
SDK's own warnings go to stderr, where the test looks for them.
"""

import asyncio
import json
import logging
import os
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str) -> None:
    headers = {"Authorization": f"Bearer {os.environ['LATCHKEY_TEST_KEY']}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                result = await session.call_tool("hello", {"name": "Python"})
    print(
        json.dumps(
            {
                "server": init.server_info.name,
                "tools": [tool.name for tool in tools.tools],
                "text": [c.text for c in result.content if c.type == "text"],
                "is_error": bool(result.is_error),
            }
        )
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(sys.argv[1]))
