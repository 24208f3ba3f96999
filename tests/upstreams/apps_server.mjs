// An MCP Apps server on the official SDKs (npm `@modelcontextprotocol/ext-apps` over
// `@modelcontextprotocol/sdk`, installed by .ci/run into target/test-node), for
// tests/passthrough.rs: a tool whose UI is a `ui://` resource (`registerAppTool` writes
// `_meta.ui.resourceUri` and the flat `ui/resourceUri`; ChatGPT's `openai/outputTemplate`
// is added as ChatGPT's apps do), the UI resource itself, a tool only the app calls, and an
// `echo` whose name the other upstream's tools share. Run: node apps_server.mjs (stdio).
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  RESOURCE_MIME_TYPE,
  registerAppResource,
  registerAppTool,
} from "@modelcontextprotocol/ext-apps/server";
import { z } from "zod";

const UI = "ui://clock/app.html";
const server = new McpServer({ name: "clock-app", version: "1.0.0" });

registerAppTool(
  server,
  "show-clock",
  {
    description: "Shows a clock in the client's UI",
    inputSchema: { zone: z.string() },
    _meta: { ui: { resourceUri: UI }, "openai/outputTemplate": UI },
  },
  async ({ zone }) => ({
    content: [
      { type: "text", text: `the time in ${zone}` },
      { type: "resource_link", uri: UI, name: "clock", mimeType: RESOURCE_MIME_TYPE },
    ],
    structuredContent: { zone, time: "12:00" },
    _meta: { ui: { resourceUri: UI }, "clock/zone": zone },
  }),
);

registerAppTool(
  server,
  "tick",
  {
    description: "What the clock app calls to refresh itself",
    _meta: { ui: { resourceUri: UI, visibility: ["app"] } },
  },
  async () => ({ content: [{ type: "text", text: "tock" }] }),
);

registerAppResource(server, "clock", UI, { description: "The clock's UI" }, async () => ({
  contents: [
    {
      uri: UI,
      mimeType: RESOURCE_MIME_TYPE,
      text: "<!doctype html><title>clock</title><script>/* calls tick */</script>",
      _meta: { ui: { csp: { connectDomains: [] }, prefersBorder: true } },
    },
  ],
}));

server.registerTool(
  "echo",
  { description: "Echoes its message", inputSchema: { message: z.string() } },
  async ({ message }) => ({ content: [{ type: "text", text: `clock echo: ${message}` }] }),
);

await server.connect(new StdioServerTransport());
