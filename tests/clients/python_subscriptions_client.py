"""A real MCP client, the official Python SDK (PyPI `mcp`), for the subscription test in
tests/passthrough.rs: two sessions through latchkey (with --sessions) to the reference
server. Session A sets the log level to `error`, subscribes to QUIET, sets it to `info`
and subscribes to MINE; session B subscribes to THEIRS; A starts the server's simulated
updates (TOGGLE) and both wait for an update of each resource they hold; then A
unsubscribes from MINE. Prints one JSON line, the URIs each session was told of, then keeps
both sessions open until its standard input ends (so the test can tell an unsubscribe from
the end of a session).

    python_subscriptions_client.py URL MINE THEIRS QUIET TOGGLE

The key comes from LATCHKEY_TEST_KEY, sent as a Bearer token.
"""

import asyncio
import json
import os
import sys
from contextlib import AsyncExitStack

import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def session(stack, url, told):
    headers = {"Authorization": f"Bearer {os.environ['LATCHKEY_TEST_KEY']}"}

    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            told.add(str(message.params.uri))

    http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
    read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
    opened = await stack.enter_async_context(ClientSession(read, write, message_handler=on_message))
    await opened.initialize()
    return opened


async def until(condition):
    while not condition():
        await asyncio.sleep(0.05)


async def main(url, mine, theirs, quiet, toggle):
    told_a, told_b = set(), set()
    async with AsyncExitStack() as stack:
        a = await session(stack, url, told_a)
        b = await session(stack, url, told_b)
        await a.set_logging_level("error")
        await a.subscribe_resource(quiet)
        await a.set_logging_level("info")
        await a.subscribe_resource(mine)
        await b.subscribe_resource(theirs)
        await a.call_tool(toggle, {})
        await asyncio.wait_for(until(lambda: {mine, quiet} <= told_a and theirs in told_b), 30)
        await a.unsubscribe_resource(mine)
        await a.call_tool(toggle, {})
        print(json.dumps({"a": sorted(told_a), "b": sorted(told_b)}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
