"""Client metadata documents that must be refused, over HTTPS on localhost, for tests/oauth.rs.

argv: certificate and key (PEM). Prints its port on one line, then serves until killed:
  /client.json    a valid document (its client_id is its own URL)
  /redirect.json  302 to /client.json (latchkey follows no redirect)
  /big.json       a valid document padded past 16 KiB
  /other.json     a document whose client_id is another URL
  /slow.json      a valid document, after 8 s (latchkey gives up after 5 s)
"""

import http.server
import json
import ssl
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        base = f"https://localhost:{self.server.server_address[1]}"
        url = base + self.path
        doc = {"client_id": url, "client_name": "Refused", "redirect_uris": ["http://127.0.0.1:9/callback"]}
        if self.path == "/redirect.json":
            self.send_response(302)
            self.send_header("Location", base + "/client.json")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/big.json":
            doc["padding"] = "x" * 20_000
        if self.path == "/other.json":
            doc["client_id"] = base + "/client.json"
        if self.path == "/slow.json":
            time.sleep(8)
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
