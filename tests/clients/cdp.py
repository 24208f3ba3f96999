"""Headless Chromium (Debian's) driven over the DevTools protocol with the already pinned
`websockets`: what tests/clients/console_browser.py, console_shots.py and consent_browser.py
share. The
browser runs in a profile of its own and a process group of its own, both gone afterwards.
"""

import asyncio
import base64
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from contextlib import asynccontextmanager

import websockets

PATIENCE = 30

# What Runtime.evaluate says when the page navigated while it ran (a submitted form, a
# reload): not an answer yet, so a wait looks again.
NAVIGATING = ("Inspected target navigated or closed", "Execution context was destroyed",
              "Cannot find context with specified id")


class Page:
    def __init__(self, socket):
        self.socket = socket
        self.next_id = 0

    async def call(self, method, **params):
        self.next_id += 1
        await self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def look(self, expression):
        """`expression`'s value, or None while the page navigates."""
        try:
            return await self.evaluate(expression)
        except RuntimeError as error:
            if any(said in str(error) for said in NAVIGATING):
                return None
            raise

    async def until(self, what, expression):
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            value = await self.look(expression)
            if value:
                return value
            await asyncio.sleep(0.05)
        html = await self.evaluate("document.documentElement.outerHTML")
        raise RuntimeError(f"timed out waiting for {what}:\n{html}")

    async def sign_in_to_console(self, secret):
        """On the console's sign-in page: types `secret` into its own form, submits it, and
        waits until the calls view's live feed is connected."""
        await self.until("the sign-in form", "!!document.getElementById('secret')")
        await self.evaluate(
            f"document.getElementById('secret').value = {json.dumps(secret)};"
            "document.querySelector('form').submit(); true")
        await self.until("the live feed", "document.getElementById('status')?.textContent === 'live'")

    async def until_after_reloads(self, what, expression):
        """Like `until`, reloading the page between looks (for what the server has later)."""
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            value = await self.look(expression)
            if value:
                return value
            await self.call("Page.reload")
        html = await self.evaluate("document.documentElement.outerHTML")
        raise RuntimeError(f"timed out waiting for {what}:\n{html}")

    async def screenshot(self, path, width, height):
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=False)
        shot = await self.call("Page.captureScreenshot", format="png")
        with open(path, "wb") as out:
            out.write(base64.b64decode(shot["data"]))


def launch(profile):
    browser = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
         "--no-first-run", "--disable-background-networking", "--hide-scrollbars",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HOME": profile},
        # Its own process group: the browser's helpers end with it, before its profile goes.
        start_new_session=True,
    )
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + PATIENCE
    while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
        if time.monotonic() > deadline or browser.poll() is not None:
            raise RuntimeError("chromium did not open its DevTools port")
        time.sleep(0.05)
    port = open(port_file).read().split("\n")[0]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
    target = json.loads(opener.open(request, timeout=PATIENCE).read())
    return browser, target["webSocketDebuggerUrl"]


def wait_for_group_to_end(group):
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise RuntimeError("chromium's processes did not end")


@asynccontextmanager
async def browser_page():
    """A page of a fresh headless Chromium, closed (and its profile removed) afterwards."""
    with tempfile.TemporaryDirectory() as profile:
        browser, socket_url = launch(profile)
        try:
            async with websockets.connect(socket_url, max_size=None, proxy=None) as socket:
                page = Page(socket)
                await page.call("Page.enable")
                yield page
        finally:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()
            wait_for_group_to_end(browser.pid)
