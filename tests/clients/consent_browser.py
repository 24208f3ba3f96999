"""Headless Chromium over the DevTools protocol (`cdp`) answers latchkey's OAuth consent page
as a person does, for tests/oauth.rs: argv is the authorize URL and the callback URL's
prefix; the secret comes from LATCHKEY_TEST_KEY. Types the secret, presses Allow, and prints
one JSON line with where the browser ended up.
"""

import asyncio
import json
import os
import sys

from cdp import browser_page


async def main(authorize_url, callback):
    secret = os.environ["LATCHKEY_TEST_KEY"]
    async with browser_page() as page:
        await page.call("Page.navigate", url=authorize_url)
        await page.until("the consent form", "!!document.getElementById('secret')")
        await page.evaluate(
            f"document.getElementById('secret').value = {json.dumps(secret)};"
            "document.querySelector('button.allow').click(); true")
        try:
            location = await page.until(
                "the callback", f"location.href.startsWith({json.dumps(callback)}) && location.href")
        except RuntimeError:
            location = await page.evaluate("location.href + ' ' + document.body.innerText")
    print(json.dumps({"location": location}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
