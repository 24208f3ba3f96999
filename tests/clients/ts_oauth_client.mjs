// The official TypeScript SDK's OAuth client (npm `@modelcontextprotocol/sdk`) against
// latchkey --oauth, for tests/oauth.rs.
//
// argv: MCP URL, certificate and key (PEM) for an HTTPS server on localhost that serves this
// client's metadata document, whose URL is its client_id (CIMD); with `--register` instead
// of the two files, the client registers (DCR). The consent page is answered over HTTP as a
// browser would (GET, read the CSRF field, POST with the cookie); the secret comes from
// LATCHKEY_TEST_KEY. Prints one JSON line: what `hello` returned and how the client
// identified itself.
import { readFileSync } from "node:fs";
import https from "node:https";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const CALLBACK = "http://127.0.0.1:9/ts-callback";
const [url, cert, key] = process.argv.slice(2);
const register = cert === "--register";

let metadataUrl;
if (!register) {
  const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({
      client_id: metadataUrl,
      client_name: "TypeScript SDK test client (CIMD)",
      redirect_uris: [CALLBACK],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  metadataUrl = `https://localhost:${server.address().port}/client.json`;
  server.unref();
}

const seen = { consent_title: null, code: null, iss: null };
const saved = {};
const provider = {
  get redirectUrl() { return CALLBACK; },
  get clientMetadata() {
    return {
      client_name: "TypeScript SDK test client",
      redirect_uris: [CALLBACK],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  clientMetadataUrl: metadataUrl,
  state: () => "ts-state-1234",
  clientInformation: () => saved.client,
  saveClientInformation: (info) => { saved.client = info; },
  tokens: () => saved.tokens,
  saveTokens: (tokens) => { saved.tokens = tokens; },
  saveCodeVerifier: (verifier) => { saved.verifier = verifier; },
  codeVerifier: () => saved.verifier,
  redirectToAuthorization: async (authorizeUrl) => {
    const page = await fetch(authorizeUrl, { redirect: "manual" });
    const html = await page.text();
    if (page.status !== 200) throw new Error(`consent page ${page.status}: ${html}`);
    seen.consent_title = html.match(/<h1>(.*?)<\/h1>/)[1];
    const csrf = html.match(/name="csrf" value="([^"]+)"/)[1];
    const action = html.match(/<form method="post" action="([^"]+)"/)[1];
    const cookie = page.headers.get("set-cookie").split(";")[0];
    const answer = await fetch(action, {
      method: "POST",
      redirect: "manual",
      headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf, secret: process.env.LATCHKEY_TEST_KEY, decision: "allow" }),
    });
    if (answer.status !== 303) throw new Error(`consent answer ${answer.status}: ${await answer.text()}`);
    const back = new URL(answer.headers.get("location"));
    seen.code = back.searchParams.get("code");
    seen.iss = back.searchParams.get("iss");
    seen.state = back.searchParams.get("state");
  },
};

async function connect() {
  const client = new Client({ name: "ts-oauth-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await client.connect(transport);
  return { client, transport };
}

let connection;
try {
  connection = await connect();
} catch (error) {
  if (!(error instanceof UnauthorizedError) || !seen.code) throw error;
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await transport.finishAuth(seen.code);
  connection = await connect();
}
const result = await connection.client.callTool({ name: "hello", arguments: { name: "TypeScript" } });
await connection.client.close();
console.log(JSON.stringify({
  text: result.content.filter((c) => c.type === "text").map((c) => c.text),
  client_id: saved.client?.client_id,
  consent_title: seen.consent_title,
  iss: seen.iss,
  state: seen.state,
  token_prefix: saved.tokens?.access_token?.slice(0, 4),
}));
