"""A stdio MCP server by hand (no SDK) that wedges: it answers `initialize` and
`tools/list`, then answers each `tools/call` with half a line and nothing more, as a child
stuck mid-write does. latchkey's calls time out; /healthz must say it is degraded.
"""

import json
import sys

TOOL = {"name": "stuck", "description": "Never answers.", "inputSchema": {"type": "object"}}


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
            "serverInfo": {"name": "wedged", "version": "1"},
        }})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": id_, "result": {"tools": [TOOL]}})
    elif method == "tools/call":
        sys.stdout.write('{"jsonrpc": "2.0", "id": ')
        sys.stdout.flush()
    elif method == "ping":
        sys.stdout.write('{"jsonrpc": "2.0", "id": ')
        sys.stdout.flush()
