#!/usr/bin/env python3
"""A stdio MCP server, written with the official Python SDK, that the stdio recipe runs
inside the latchkey image: latchkey starts it as its child and serves its tools behind the
key. Its tools keep notes in memory (a stand-in for your own server).
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")
notes: list[str] = []


@server.tool()
def add_note(text: str) -> str:
    """Keeps a note."""
    notes.append(text)
    return f"noted ({len(notes)} notes)"


@server.tool()
def list_notes() -> list[str]:
    """The notes kept so far, oldest first."""
    return notes


if __name__ == "__main__":
    server.run("stdio")
