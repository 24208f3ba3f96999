"""A real MCP client, the official Python SDK (PyPI `mcp`), for tests/passthrough.rs: through
latchkey (with --sessions), calls the reference server's tools that ask the client something
in the middle of the call (elicitation, sampling, roots) and prints one JSON line with each
call's text (or error) and what the client was asked.

    python_relay_client.py URL PREFIX answer|refuse|research

`answer` declares the three capabilities and answers them; `refuse` declares none;
`research` answers them too but calls only the research tool, which the reference server
runs only as a task and which asks (elicitation) which meaning of its topic is meant. PREFIX is
put before each tool name ("" with one upstream, "everything__" with several). The key
comes from LATCHKEY_TEST_KEY, sent as a Bearer token.
"""

import asyncio
import json
import os
import sys

import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ROOT = "file:///home/ada/notes"


async def main(url: str, prefix: str, mode: str) -> None:
    headers = {"Authorization": f"Bearer {os.environ['LATCHKEY_TEST_KEY']}"}
    asked = []

    async def on_elicitation(context, params):
        asked.append(["elicitation", params.message])
        if "interpretation" in params.requested_schema.get("properties", {}):
            return types.ElicitResult(action="accept", content={"interpretation": "the sea"})
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace"})

    async def on_sampling(context, params):
        asked.append(["sampling", params.messages[0].content.text])
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="a reply from the client's model"),
            model="the-client-model",
        )

    async def on_roots(context):
        asked.append(["roots"])
        return types.ListRootsResult(roots=[types.Root(uri=ROOT, name="notes")])

    callbacks = {}
    if mode in ("answer", "research"):
        callbacks = dict(
            elicitation_callback=on_elicitation,
            sampling_callback=on_sampling,
            list_roots_callback=on_roots,
        )
    calls = [
        ("trigger-elicitation-request", {}),
        ("trigger-sampling-request", {"prompt": "what is 2+2", "maxTokens": 10}),
        ("get-roots-list", {}),
    ]
    if mode == "research":
        calls = [("simulate-research-query", {"topic": "tides", "ambiguous": True})]
    results = {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, **callbacks) as session:
                await session.initialize()
                for name, arguments in calls:
                    try:
                        result = await asyncio.wait_for(
                            session.call_tool(prefix + name, arguments), 60
                        )
                        text = "\n".join(c.text for c in result.content if c.type == "text")
                        results[name] = {"error": bool(result.is_error), "text": text}
                    except Exception as error:  # the JSON-RPC error, as the SDK raises it
                        results[name] = {"error": True, "text": f"{type(error).__name__}: {error}"}
    print(json.dumps({"results": results, "asked": asked}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
