import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/loadConfig.js";
import { startEmbedded, type Embedded } from "../../src/embedded/startEmbedded.js";
import { ControllerService } from "../../src/gen/smmf/v1/controller_pb.js";
import { InstanceSpecSchema } from "../../src/gen/smmf/v1/instance_pb.js";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { api, waitSettled } from "../helpers/controlCluster.js";

// An embedded SMMF whose worker defines upstream credentials (the key itself in a test environment
// variable), and a loopback "sink": an OpenAI-compatible server that counts the connections it gets and
// records the Authorization headers, standing for a server of an API caller who would like the key.
const KEY = `sk-cred-${randomBytes(16).toString("hex")}`;
const KEY_ENV = "SMMF_TEST_UPSTREAM_CRED_KEY";
/** Not a credential of the worker: what an upstream might quote back in an error, with details of its own. */
const OTHER_SECRET = `sk-live-${randomBytes(16).toString("hex")}`;
const DETAIL = `internal-detail-${randomBytes(4).toString("hex")}`;

let sink: Server;
let sinkOrigin: string;
let sinkMode: "ok" | "leak" = "ok";
let connections = 0;
const seenAuth: string[] = [];
const logLines: string[] = [];
let dataDir: string;
let smmf: Embedded;
let url: string;

function answer(req: IncomingMessage, res: ServerResponse): void {
  seenAuth.push(req.headers.authorization ?? "");
  req.resume();
  if (sinkMode === "leak") {
    res.writeHead(400, { "content-type": "application/json" });
    return void res.end(JSON.stringify({ error: { message: `model 'x' refused (${DETAIL}); you sent ${req.headers.authorization}; our key is ${OTHER_SECRET}` } }));
  }
  if (req.url?.endsWith("/embeddings")) {
    res.writeHead(200, { "content-type": "application/json" });
    return void res.end(JSON.stringify({ data: [{ index: 0, embedding: [0.5, 0.25, 0.125] }], usage: { prompt_tokens: 1, total_tokens: 1 } }));
  }
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const text of ["Hello", " there"]) res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: text }, text, finish_reason: null }] })}\n\n`);
  res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, text: "", finish_reason: "stop" }] })}\n\n`);
  res.end("data: [DONE]\n\n");
}

beforeAll(async () => {
  process.env[KEY_ENV] = KEY;
  sink = createServer(answer);
  sink.on("connection", () => connections++);
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
  sinkOrigin = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
  dataDir = mkdtempSync(join(tmpdir(), "smmf-cred-"));
  smmf = await startEmbedded(
    {
      ...DEFAULTS,
      port: 0,
      workerPort: 0,
      gpu: "off",
      dataDir,
      models: [],
      requestLog: "off",
      upstreamCredentials: [
        // The same key, allowed elsewhere only: the sink's port is not allowed, nor another path on it.
        { name: "elsewhere", env: KEY_ENV, allowedBaseUrls: ["https://api.openai.com/v1", `${sinkOrigin}/other`] },
        { name: "sink", env: KEY_ENV, allowedBaseUrls: [`${sinkOrigin}/v1`] },
      ],
    },
    createLogger("debug", "cred", (line) => void logLines.push(line)),
  );
  url = smmf.gateway.url;
}, 60_000);

afterAll(async () => {
  await smmf?.close();
  await new Promise((r) => sink?.close(r));
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  delete process.env[KEY_ENV];
});

const upstreamModel = (name: string, proxy: Record<string, unknown>) => ({ name, engine: "openai-compatible", replicas: 1, proxy: { baseUrl: `${sinkOrigin}/v1`, upstreamModel: "m", embeddings: true, ...proxy } });

async function modelNames(): Promise<string[]> {
  return ((await api(url, "GET", "/api/v1/models")).body.data as { name: string }[]).map((m) => m.name);
}

describe("upstream credentials are the operator's", () => {
  it("refuses, through the API, a credential whose allowed base URLs do not include base_url, and an unknown credential: the sink sees nothing", async () => {
    const before = connections;
    const refused = await api(url, "POST", "/api/v1/models", upstreamModel("stolen", { credential: "elsewhere" }));
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: "failed_precondition", param: "base_url" });
    expect(refused.body.error.message).toMatch(new RegExp(`base_url ${sinkOrigin}/v1 is not allowed for credential 'elsewhere' on worker`));

    const unknown = await api(url, "POST", "/api/v1/models", upstreamModel("stolen", { credential: "nope" }));
    expect(unknown.body.error).toMatchObject({ code: "failed_precondition", param: "credential", message: expect.stringMatching(/^unknown upstream credential 'nope' on worker /) });

    // A preset that reads OPENAI_API_KEY by default does not, for a spec from the API.
    const preset = await api(url, "POST", "/api/v1/models", { name: "stolen", engine: "openai", replicas: 1, proxy: { baseUrl: `${sinkOrigin}/v1` } });
    expect(preset.body.error).toMatchObject({ code: "failed_precondition", param: "credential" });

    expect(await modelNames()).not.toContain("stolen");
    expect(connections - before).toBe(0);
    expect(JSON.stringify([refused, unknown, preset])).not.toContain(KEY);
  });

  it("the worker itself refuses such a spec placed by the controller, before any request (the embeddings probe included)", async () => {
    const before = connections;
    const load = (proxy: Record<string, unknown>) =>
      smmf.worker.worker.load(create(InstanceSpecSchema, { model: "placed", engine: "openai-compatible", managed: true, proxy: { baseUrl: `${sinkOrigin}/v1`, embeddings: true, ...proxy } }));
    await expect(load({ credential: "elsewhere" })).rejects.toMatchObject({ code: "failed_precondition", param: "base_url" });
    await expect(load({ credential: "nope" })).rejects.toMatchObject({ code: "failed_precondition", message: expect.stringMatching(/^unknown upstream credential 'nope' on worker /) });
    await expect(load({ apiKeyEnv: KEY_ENV })).rejects.toMatchObject({ code: "failed_precondition", param: "api_key_env" });
    await expect(load({ apiKeyFile: "/etc/shadow" })).rejects.toMatchObject({ code: "failed_precondition", param: "api_key_file" });
    expect(smmf.worker.worker.list().map((i) => i.model)).not.toContain("placed");
    expect(connections - before).toBe(0);
  });

  it("refuses api_key_env and api_key_file through the API (REST and ControllerService) with invalid_argument: the sink sees nothing", async () => {
    const before = connections;
    for (const [field, proxy] of [
      ["api_key_env", { apiKeyEnv: KEY_ENV }],
      ["api_key_file", { apiKeyFile: "/etc/shadow" }],
    ] as const) {
      const rest = await api(url, "POST", "/api/v1/models", upstreamModel("stolen", proxy));
      expect(rest.status, field).toBe(400);
      expect(rest.body.error, field).toMatchObject({ code: "invalid_argument", param: field });
      expect(rest.body.error.message, field).toMatch(new RegExp(`^'${field}' cannot be set through the API: name an upstream credential .*'credential'`));

      const rpc = createClient(ControllerService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
      const err = await rpc.startModel({ spec: upstreamModel("stolen", proxy) }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code, field).toBe(Code.InvalidArgument);
      expect(err?.rawMessage, field).toContain(`'${field}' cannot be set through the API`);
    }
    expect(await modelNames()).not.toContain("stolen");
    expect(connections - before).toBe(0);
  });

  it("a credential that allows the base URL works end to end: the sink gets the key as a bearer token, the client an answer", async () => {
    const started = await api(url, "POST", "/api/v1/models", upstreamModel("allowed", { credential: "sink" }));
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    await waitSettled(url, "allowed", 1);
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 20_000 });
    const chat = await openai.chat.completions.create({ model: "allowed", messages: [{ role: "user", content: "Hi" }] });
    expect(chat.choices[0].message.content).toBe("Hello there");
    const embedded = await openai.embeddings.create({ model: "allowed", input: "x" });
    expect(embedded.data[0].embedding).toEqual([0.5, 0.25, 0.125]);
    expect(seenAuth.length).toBeGreaterThanOrEqual(3); // the probe at load, the chat, the embeddings
    expect(new Set(seenAuth)).toEqual(new Set([`Bearer ${KEY}`]));
    // The model's record names the credential, never the key.
    const record = JSON.stringify((await api(url, "GET", "/api/v1/models/allowed")).body);
    expect(record).toContain('"credential":"sink"');
    expect(record).not.toContain(KEY);
  });

  it("an upstream 400 is answered without what the upstream said; the worker's log has it, without the key or secret-looking strings", async () => {
    sinkMode = "leak";
    try {
      const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "allowed", messages: [{ role: "user", content: "Hi" }] }) });
      const text = await res.text();
      expect(res.status).toBe(400);
      expect(JSON.parse(text).error).toMatchObject({ code: "invalid_argument", message: `upstream ${sinkOrigin} rejected the request as invalid (HTTP 400)` });
      for (const leaked of [DETAIL, KEY.slice(8), OTHER_SECRET, "Bearer"]) expect(text).not.toContain(leaked);

      const logged = logLines.filter((l) => l.includes("upstream answered an error") && l.includes(DETAIL));
      expect(logged.length).toBe(1);
      expect(logged[0]).toContain("you sent Bearer [redacted]");
      expect(logged[0]).not.toContain(OTHER_SECRET);
    } finally {
      sinkMode = "ok";
    }
    expect(logLines.filter((l) => l.includes(KEY.slice(8)))).toEqual([]);
  });
});
