"""Screenshots of console views, in headless Chromium over the DevTools protocol (`cdp`),
for tests/console.rs (and the pictures in docs/).

argv: the console URL, a directory for screenshots, then NAME=PATH=SELECTOR... : each view
at the console URL + PATH, once SELECTOR finds something on it, is saved as NAME.png. The
key comes from LATCHKEY_TEST_KEY; the browser signs in through the page's own form. Prints
one JSON object: each NAME and how many elements SELECTOR found.
"""

import asyncio
import json
import os
import sys

from cdp import browser_page


async def main(console_url, shots, views):
    key = os.environ["LATCHKEY_TEST_KEY"]
    found = {}
    async with browser_page() as page:
        await page.call("Page.navigate", url=console_url)
        await page.sign_in_to_console(key)
        for view in views:
            name, path, selector = view.split("=", 2)
            await page.call("Page.navigate", url=console_url + path)
            found[name] = await page.until(
                f"the {name} view", f"document.querySelectorAll({json.dumps(selector)}).length")
            await page.screenshot(os.path.join(shots, f"{name}.png"), 1280, 640)
    print(json.dumps(found))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
