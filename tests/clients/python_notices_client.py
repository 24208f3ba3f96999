"""A real MCP client, the official Python SDK (PyPI `mcp`), for the bridge's notification
test in tests/upstream.rs: through latchkey (with --sessions), calls the upstream's
`progress` tool asking for progress, then `grow`, waits for tools/list_changed, and lists
the tools again. Prints one JSON line with what it saw. The key comes from
LATCHKEY_TEST_KEY, sent as a Bearer token.
"""

import asyncio
import json
import os
import sys

import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str) -> None:
    headers = {"Authorization": f"Bearer {os.environ['LATCHKEY_TEST_KEY']}"}
    progress = []
    changed = asyncio.Event()

    async def on_progress(value, total, message):
        progress.append([value, total, message])

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await session.initialize()
                before = await session.list_tools()
                result = await session.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
                await session.call_tool("grow", {})
                try:
                    await asyncio.wait_for(changed.wait(), 20)
                except asyncio.TimeoutError:
                    pass
                after = await session.list_tools()
    print(
        json.dumps(
            {
                "progress": progress,
                "text": [c.text for c in result.content if c.type == "text"],
                "list_changed": changed.is_set(),
                "before": sorted(t.name for t in before.tools),
                "after": sorted(t.name for t in after.tools),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
