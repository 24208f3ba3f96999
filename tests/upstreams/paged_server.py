"""A stdio MCP server on FastMCP (PyPI `fastmcp`) that lists its tools two to a page, for
the paginated listing test in tests/passthrough.rs: tools `page_1` to `page_5`.
"""

from fastmcp import FastMCP

server = FastMCP("paged", list_page_size=2)

for n in range(1, 6):

    def tool(n: int = n) -> str:
        return f"page tool {n}"

    server.tool(tool, name=f"page_{n}", description=f"Tool {n} of 5")

if __name__ == "__main__":
    server.run(show_banner=False)
