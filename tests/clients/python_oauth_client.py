"""The official Python SDK's OAuth client (PyPI `mcp`, `OAuthClientProvider`) against
latchkey --oauth, for tests/oauth.rs.

argv: MCP URL, a JSON file where the client keeps its tokens and registration between runs.
Options: --refresh (after the first call, wait until the access token has expired and call
again in the same session, which makes the SDK refresh it), --cimd CERT KEY (serve the client's metadata document over HTTPS on localhost and
use its URL as client_id instead of registering), --no-consent (fail if the consent page is
asked for: the stored tokens must do). The secret for the consent page comes from
LATCHKEY_TEST_KEY. The consent page is answered over HTTP as a browser would: GET the
authorize URL, read the CSRF field, POST it back with the secret and the cookie.

Prints one JSON line: the text `hello` returned, whether consent was asked, how the client
identified itself, and what the consent page said (its title).
"""

import asyncio
import http.server
import json
import os
import re
import ssl
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

CALLBACK = "http://127.0.0.1:9/callback"


class FileStorage:
    def __init__(self, path):
        self.path = path

    def _load(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _save(self, data):
        with open(self.path, "w") as f:
            json.dump(data, f)

    async def get_tokens(self):
        data = self._load().get("tokens")
        return OAuthToken.model_validate(data) if data else None

    async def set_tokens(self, tokens):
        data = self._load()
        data["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        self._save(data)

    async def get_client_info(self):
        data = self._load().get("client")
        return OAuthClientInformationFull.model_validate(data) if data else None

    async def set_client_info(self, client_info):
        data = self._load()
        data["client"] = client_info.model_dump(mode="json", exclude_none=True)
        self._save(data)


def serve_metadata_document(cert, key):
    """An HTTPS server on localhost with the client's metadata document; returns its URL."""
    holder = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(
                {
                    "client_id": holder["url"],
                    "client_name": "Python SDK test client (CIMD)",
                    "redirect_uris": [CALLBACK],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "none",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    holder["url"] = f"https://localhost:{server.server_address[1]}/client.json"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder["url"]


async def main():
    args = sys.argv[1:]
    url, store = args[0], args[1]
    no_consent = "--no-consent" in args
    again = "--refresh" in args
    metadata_url = None
    if "--cimd" in args:
        i = args.index("--cimd")
        metadata_url = serve_metadata_document(args[i + 1], args[i + 2])
    seen = {"consent": False, "consent_title": None}
    answer = {}

    async def redirect_handler(authorize_url):
        if no_consent:
            raise RuntimeError("consent was asked for although tokens were stored")
        seen["consent"] = True
        async with httpx2.AsyncClient() as browser:
            page = await browser.get(authorize_url)
            assert page.status_code == 200, (page.status_code, page.text)
            seen["consent_title"] = re.search(r"<h1>(.*?)</h1>", page.text).group(1)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
            sent = await browser.post(
                action,
                data={"csrf": csrf, "secret": os.environ["LATCHKEY_TEST_KEY"], "decision": "allow"},
            )
            assert sent.status_code == 303, (sent.status_code, sent.text)
            location = sent.headers["location"]
        assert location.startswith(CALLBACK + "?"), location
        query = parse_qs(urlparse(location).query)
        answer.update({name: values[0] for name, values in query.items()})

    async def callback_handler():
        return AuthorizationCodeResult(code=answer["code"], state=answer.get("state"), iss=answer.get("iss"))

    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="Python SDK test client",
            redirect_uris=[CALLBACK],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=FileStorage(store),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=metadata_url,
    )
    async with create_mcp_http_client(auth=provider) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("hello", {"name": "OAuth"})
                refresh_before = FileStorage(store)._load()["tokens"].get("refresh_token")
                if again:
                    # The thing under test is expiry itself: wait for the clock, then call.
                    await asyncio.sleep(max(0.0, provider.context.token_expiry_time - time.time()) + 0.5)
                    result = await session.call_tool("hello", {"name": "OAuth"})
    stored = FileStorage(store)._load()
    print(
        json.dumps(
            {
                "text": [c.text for c in result.content if c.type == "text"],
                "consent": seen["consent"],
                "consent_title": seen["consent_title"],
                "client_id": stored.get("client", {}).get("client_id"),
                "iss": answer.get("iss"),
                "refreshed": stored["tokens"].get("refresh_token") != refresh_before,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
