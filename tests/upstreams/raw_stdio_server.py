"""A stdio MCP server by hand (no SDK, whose stdio transport keeps stray writes off the
protocol stream), for what a real but misbehaving server writes there. It answers
`initialize` and `tools/list`; `tools/call` of `garble` first writes a JSON line that is no
MCP message and holds a token (latchkey must never log it), then answers; `tools/call` of
`stuck` writes half a line and nothing more, as a child stuck mid-write does (latchkey's
calls time out, and /healthz must say the upstream is degraded).
"""

import json
import sys

TOOLS = [
    {"name": "garble", "description": "Writes a malformed line.", "inputSchema": {"type": "object"}},
    {"name": "stuck", "description": "Never answers.", "inputSchema": {"type": "object"}},
]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    method, id_ = message.get("method"), message.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": id_, "result": {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "1"},
        }})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": id_, "result": {"tools": TOOLS}})
    elif method == "tools/call" and message["params"]["name"] == "garble":
        sys.stdout.write('{"not": "a message", "token": "garbled-secret-4d1e9b"}\n')
        send({"jsonrpc": "2.0", "id": id_, "result": {"content": [{"type": "text", "text": "garbled"}]}})
    elif method in ("tools/call", "ping"):
        sys.stdout.write('{"jsonrpc": "2.0", "id": ')
        sys.stdout.flush()
