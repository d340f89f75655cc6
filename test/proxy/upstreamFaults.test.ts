import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/loadConfig.js";
import type { ModelConfig } from "../../src/config/SmmfConfig.js";
import { startEmbedded, type Embedded } from "../../src/embedded/startEmbedded.js";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// A loopback upstream the test controls (fault by fault), beside a good upstream (a second SMMF), behind
// one gateway: "solo" has only the faulty upstream, "mixed" has both (round-robin, so every other request
// meets the fault first).
type Mode = "ok" | "429" | "500" | "reset-before" | "reset-during" | "stall" | "malformed" | "invalid-json" | "echo-key";
let mode: Mode = "ok";
let hits = 0;
const KEY = `sk-test-${randomBytes(12).toString("hex")}`;
const seenAuth: string[] = [];
const logLines: string[] = [];
let fake: Server;
let good: TestServer;
let gateway: Embedded;
let openai: OpenAI;

function sse(res: ServerResponse, chunks: string[], end = true): void {
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const c of chunks) res.write(`data: ${c}\n\n`);
  if (end) res.end("data: [DONE]\n\n");
}

const chunk = (text: string, finish: string | null = null) => JSON.stringify({ choices: [{ index: 0, delta: { content: text }, text, finish_reason: finish }] });

function handle(req: IncomingMessage, res: ServerResponse): void {
  hits++;
  seenAuth.push(req.headers.authorization ?? "");
  req.resume();
  switch (mode) {
    case "ok":
      if (req.url?.endsWith("/embeddings")) {
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end(JSON.stringify({ data: [{ index: 0, embedding: [0.5, 0.25] }], usage: { prompt_tokens: 2, total_tokens: 2 } }));
      }
      return sse(res, [chunk("Hello"), chunk(" there"), chunk("", "stop"), JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2 } })]);
    case "429":
      res.writeHead(429, { "content-type": "application/json", "retry-after": "7" });
      return void res.end(JSON.stringify({ error: { message: "slow down", type: "rate_limit_error" } }));
    case "500":
      res.writeHead(500, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ error: { message: "the GPU caught fire" } }));
    case "reset-before":
      return void req.socket.destroy();
    case "reset-during":
      sse(res, [chunk("Hello"), chunk(" there")], false);
      return void setTimeout(() => req.socket.destroy(), 50);
    case "stall":
      return sse(res, [chunk("Hello")], false); // and then nothing
    case "malformed":
      res.writeHead(200, { "content-type": "text/event-stream" });
      return void res.end("data: {this is not json\n\n");
    case "invalid-json":
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end("{ nope");
    case "echo-key":
      res.writeHead(400, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ error: { message: `bad request from ${req.headers.authorization}` } }));
  }
}

beforeAll(async () => {
  process.env.UPSTREAM_TEST_KEY = KEY;
  fake = createServer(handle);
  await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
  const fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}/v1`;
  good = await startTestServer();
  const toFake: Omit<ModelConfig, "name"> = { engine: "openai-compatible", file: "", baseUrl: fakeUrl, upstreamModel: "fake", apiKeyEnv: "UPSTREAM_TEST_KEY", readTimeoutMs: 500, connectTimeoutMs: 1000 };
  const models: ModelConfig[] = [
    { name: "solo", ...toFake, embeddings: true },
    { name: "mixed", ...toFake },
    { name: "mixed", engine: "vllm", file: "", baseUrl: `${good.url}/v1`, upstreamModel: "stories260K" },
  ];
  const logger = createLogger("debug", "faults", (line) => void logLines.push(line));
  gateway = await startEmbedded({ ...DEFAULTS, port: 0, workerPort: 0, gpu: "off", models, modelPolicies: { mixed: "round-robin" } }, logger);
  openai = new OpenAI({ baseURL: `${gateway.gateway.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 20_000 });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await good?.close();
  await new Promise((r) => fake?.close(r));
  delete process.env.UPSTREAM_TEST_KEY;
});

async function errorOf(p: Promise<unknown>): Promise<{ status?: number; code?: string; message: string; headers?: Headers }> {
  const err = (await p.then(
    () => new Error("expected a failure"),
    (e: unknown) => e,
  )) as InstanceType<typeof OpenAI.APIError>;
  return { status: err.status, code: err.code ?? undefined, message: err.message, headers: err.headers as Headers | undefined };
}

async function streamText(model: string): Promise<string> {
  let text = "";
  for await (const c of await openai.completions.create({ model, prompt: "Hi", max_tokens: 8, stream: true })) text += c.choices[0]?.text ?? "";
  return text;
}

/** Waits out the gateway's ejection of the faulty instance (two failures in a row take it out for a while). */
async function untilPickable(model: string): Promise<void> {
  await expect
    .poll(async () => {
      const { data } = (await (await fetch(`${gateway.gateway.url}/api/v1/instances`)).json()) as { data: { model: string; pickable: boolean }[] };
      return data.filter((i) => i.model === model).every((i) => i.pickable);
    }, { timeout: 20_000, interval: 100 })
    .toBe(true);
}

async function stillServes(): Promise<void> {
  mode = "ok";
  await untilPickable("solo");
  const r = await openai.completions.create({ model: "solo", prompt: "Hi", max_tokens: 8 });
  expect(r.choices[0].text).toBe("Hello there");
  expect(r.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 2 });
}

describe("OpenAI-compatible upstream engine: faults", () => {
  it("sends the API key from the worker's environment, as a bearer token", async () => {
    await stillServes();
    expect(seenAuth.at(-1)).toBe(`Bearer ${KEY}`);
  });

  it("upstream 429: the gateway retries on another instance; with none left the client gets 429 with Retry-After", async () => {
    mode = "429";
    hits = 0;
    for (let i = 0; i < 6; i++) expect((await openai.completions.create({ model: "mixed", prompt: "Once", max_tokens: 3 })).usage?.completion_tokens).toBe(3);
    expect(hits).toBeGreaterThanOrEqual(2); // round-robin: every other request meets the 429 first
    // Each of those was a retry, counted on /metrics.
    const text = await (await fetch(`${gateway.gateway.url}/metrics`)).text();
    expect(promValue(promSamples(text), "smmf_gateway_retries_total", { model: "mixed" })).toBe(hits);
    const err = await errorOf(openai.completions.create({ model: "solo", prompt: "Hi", max_tokens: 8 }));
    expect(err).toMatchObject({ status: 429, code: "resource_exhausted" });
    expect(err.headers?.get("retry-after")).toBe("7");
    await stillServes();
  });

  it("upstream 500 and a connection reset before the response: retried elsewhere, else 503", async () => {
    for (const m of ["500", "reset-before"] as const) {
      await untilPickable("mixed");
      mode = m;
      hits = 0;
      for (let i = 0; i < 4; i++) expect((await openai.completions.create({ model: "mixed", prompt: "Once", max_tokens: 3 })).usage?.completion_tokens).toBe(3);
      expect(hits, m).toBeGreaterThanOrEqual(1);
      await untilPickable("solo");
      const err = await errorOf(openai.completions.create({ model: "solo", prompt: "Hi", max_tokens: 8 }));
      expect(err.status, m).toBe(503);
      expect(err.message, m).toMatch(m === "500" ? /failed \(HTTP 500\)$/ : /reset the connection/);
      // What the upstream said is the worker's to log, not the client's to read.
      expect(err.message, m).not.toContain("the GPU caught fire");
      if (m === "500") expect(logLines.some((l) => l.includes("upstream answered an error") && l.includes("the GPU caught fire"))).toBe(true);
      await stillServes();
    }
  });

  it("a reset during the stream, a stalled stream and malformed stream data end the client's stream with a clear error", async () => {
    const cases: [Mode, RegExp][] = [
      ["reset-during", /reset the connection|ended the stream before it finished/],
      ["stall", /sent nothing for 500 ms/],
      ["malformed", /malformed stream data/],
    ];
    for (const [m, message] of cases) {
      await untilPickable("solo");
      mode = m;
      const started = Date.now();
      const err = await errorOf(streamText("solo"));
      expect(err.message, m).toMatch(message);
      expect(Date.now() - started, m).toBeLessThan(5_000);
      await untilPickable("solo");
      const plain = await errorOf(openai.completions.create({ model: "solo", prompt: "Hi", max_tokens: 8 }));
      expect(plain.status, m).toBe(503);
      await stillServes();
    }
  });

  it("invalid JSON from the upstream (embeddings) is a 503 with a clear message", async () => {
    await untilPickable("solo");
    mode = "invalid-json";
    const err = await errorOf(openai.embeddings.create({ model: "solo", input: "x" }));
    expect(err.status).toBe(503);
    expect(err.message).toMatch(/malformed stream data|unexpected shape|malformed/);
    mode = "ok";
    await untilPickable("solo");
    const ok = await openai.embeddings.create({ model: "solo", input: "x" });
    expect(ok.data[0].embedding).toEqual([0.5, 0.25]);
  });

  it("an upstream 400 is the client's 400 without what the upstream said; that is in the worker's log, without the API key", async () => {
    await untilPickable("solo");
    mode = "echo-key";
    const res = await fetch(`${gateway.gateway.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "solo", prompt: "Hi" }) });
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(JSON.parse(text).error).toMatchObject({ code: "invalid_argument", type: "invalid_request_error", message: expect.stringMatching(/^upstream http:\/\/127\.0\.0\.1:\d+ rejected the request as invalid \(HTTP 400\)$/) });
    expect(text).not.toContain("bad request from");
    expect(text).not.toContain(KEY.slice(8));
    const logged = logLines.filter((l) => l.includes("upstream answered an error") && l.includes("bad request from"));
    expect(logged.length).toBeGreaterThan(0);
    expect(logged.at(-1)).toContain("bad request from Bearer [redacted]");
    expect(logged.at(-1)).toContain('"status":400');
    expect(logged.filter((l) => l.includes(KEY.slice(8)))).toEqual([]);
    await stillServes();
  });

  it("never writes the API key to a log line", () => {
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.filter((l) => l.includes(KEY.slice(8)))).toEqual([]);
  });
});
