"""Headless Chromium over the DevTools protocol (`cdp`) and the official MCP Python SDK, for
tests/console.rs.

argv: the console URL, the MCP URL, a directory for screenshots. The key comes from
LATCHKEY_TEST_KEY. The browser signs in through the page's own form, waits for the live
feed, then the SDK calls `hello` (and tools that do not exist, one named like markup) and
the browser must show the rows, as text, without reloading. Prints one JSON line with what
the page showed; screenshots go in the directory.
"""

import asyncio
import json
import urllib.error
import urllib.request
import os
import sys

from cdp import browser_page
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

HOSTILE = '<img src=x onerror="document.title=1">'


async def call_hello(mcp_url, key):
    headers = {"Authorization": f"Bearer {key}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(mcp_url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.call_tool("hello", {"name": "Browser"})
                # Tools that do not exist: JSON-RPC errors, one with a name that is markup.
                for name in ["no-such-tool", HOSTILE]:
                    try:
                        await session.call_tool(name, {})
                    except MCPError:
                        pass


async def main(console_url, mcp_url, shots):
    key = os.environ["LATCHKEY_TEST_KEY"]
    async with browser_page() as page:
        await page.call("Page.navigate", url=console_url)
        await page.until("the sign-in form", "!!document.getElementById('secret')")
        await page.screenshot(os.path.join(shots, "console-sign-in.png"), 480, 420)
        await page.sign_in_to_console(key)
        # Set on this document: a reload would lose it.
        await page.evaluate("window.notReloaded = true")
        await call_hello(mcp_url, key)
        # The feed may bring the rows in more than one batch: wait for all three calls'.
        rows = await page.until(
            "the calls' rows",
            "(() => { const rows = [...document.querySelectorAll('#calls tr')];"
            " const cells = rows.map(r => [...r.cells].map(c => c.textContent));"
            " const tools = new Set(cells.map(c => c[3]));"
            f" return ['hello', 'no-such-tool', {json.dumps(HOSTILE)}].every(t => tools.has(t)) && cells; }})()")
        markup = await page.evaluate("!!document.querySelector('#calls img') || document.title === '1'")
        kept = await page.evaluate("window.notReloaded === true")
        # Past the rows' highlight, so the picture shows them as they stay.
        await asyncio.sleep(1.6)
        await page.screenshot(os.path.join(shots, "console-calls.png"), 1280, 520)
        html = await page.evaluate("document.documentElement.outerHTML")
        cookies = await page.call("Network.getAllCookies")
        # The tools view, once the history has the calls (written within a second).
        tools_url = console_url + "/tools"
        await page.call("Page.navigate", url=tools_url)
        bars = await page.until_after_reloads(
            "the tools view's chart",
            "document.querySelectorAll('section.tool svg.chart rect.calls').length")
        tool_names = await page.evaluate(
            "[...document.querySelectorAll('section.tool h3')].map(h => h.textContent)")
        await page.screenshot(os.path.join(shots, "console-tools.png"), 1000, 900)
        # The clients view: the SDK client's connection, step by step.
        await page.call("Page.navigate", url=console_url + "/clients")
        clients = await page.until(
            "the clients view", "document.querySelectorAll('section.client').length")
        await page.screenshot(os.path.join(shots, "console-clients.png"), 1280, 640)
        # A wrong key, refused: the refusals view counts it.
        wrong = urllib.request.Request(mcp_url, data=b"{}", method="POST",
                                       headers={"Authorization": "Bearer wrong-key",
                                                "Content-Type": "application/json"})
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(wrong)
        except urllib.error.HTTPError:
            pass
        await page.call("Page.navigate", url=console_url + "/refusals")
        refusals = await page.until(
            "the refusals view", "document.querySelectorAll('#refusals tr').length")
        await page.screenshot(os.path.join(shots, "console-refusals.png"), 1280, 420)
    print(json.dumps({"rows": rows, "not_reloaded": kept, "html": html, "markup_ran": markup,
                      "bars": bars, "tools": tool_names, "clients": clients,
                      "refusals": refusals, "cookies": cookies["cookies"]}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
