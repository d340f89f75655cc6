import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { startCountingUpstream, UPSTREAM_TEXT, type ConnectionMode, type CountingUpstream } from "../helpers/countingUpstream.js";
import { makeTestCertificates, type TestCertificates } from "../helpers/testCertificates.js";

// `smmf serve` (a real process, trusting a CA made for this test through NODE_EXTRA_CA_CERTS, as an operator
// would for a private CA) relays to loopback upstreams that count the connections and TLS handshakes they
// accept. "plain" and "tls" have pools of 4 connections and take 16 requests at once, so concurrent requests
// share the pool; "tls-noreuse" turns reuse off (a connection per request: what the counters see without a pool).
const POOL = 4;
let certs: TestCertificates;
let plain: CountingUpstream;
let tls: CountingUpstream;
let noReuse: CountingUpstream;
let idle: CountingUpstream;
let smmf: SmmfProcess;
let openai: OpenAI;
let dir: string;

beforeAll(async () => {
  certs = makeTestCertificates();
  [plain, tls, noReuse, idle] = await Promise.all([startCountingUpstream(), startCountingUpstream(certs), startCountingUpstream(certs), startCountingUpstream()]);
  dir = mkdtempSync(join(tmpdir(), "smmf-reuse-"));
  const upstream = (url: string) => ({ engine: "openai-compatible", file: "", baseUrl: url, upstreamModel: "mock" });
  const models = [
    { name: "plain", ...upstream(plain.url), maxConcurrency: 16, poolSize: POOL, embeddings: true },
    { name: "tls", ...upstream(tls.url), maxConcurrency: 16, poolSize: POOL, embeddings: true },
    { name: "tls-noreuse", ...upstream(noReuse.url), maxConcurrency: 16, keepAlive: false },
    { name: "idle", ...upstream(idle.url), idleTimeoutMs: 1000 },
  ];
  writeFileSync(join(dir, "smmf.config.json"), JSON.stringify({ models }));
  const port = await freePort();
  smmf = await startSmmf(["serve", "--config", join(dir, "smmf.config.json"), "--port", String(port), "--data-dir", join(dir, "data"), "--log-level", "warn"], {
    env: { NODE_EXTRA_CA_CERTS: certs.caFile },
    timeoutMs: 60_000,
  });
  openai = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0, timeout: 20_000 });
}, 90_000);

afterAll(async () => {
  await smmf?.stop();
  await Promise.all([plain, tls, noReuse, idle].map((u) => u?.close()));
  certs?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Kind = "chat-stream" | "chat" | "completion-stream" | "completion" | "embeddings";
const KINDS: Kind[] = ["chat-stream", "chat", "completion-stream", "completion", "embeddings"];

/** One relayed request of a kind, checked against what the upstream answers. */
async function relay(model: string, kind: Kind, signal?: AbortSignal): Promise<void> {
  switch (kind) {
    case "chat-stream": {
      let text = "";
      let usage;
      for await (const c of await openai.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }], stream: true, stream_options: { include_usage: true } }, { signal })) {
        text += c.choices[0]?.delta?.content ?? "";
        if (c.usage) usage = c.usage;
      }
      expect(text).toBe(UPSTREAM_TEXT);
      return void expect(usage).toMatchObject({ prompt_tokens: 5, completion_tokens: 3 });
    }
    case "chat": {
      const r = await openai.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }] }, { signal });
      expect(r.choices[0].message.content).toBe(UPSTREAM_TEXT);
      return void expect(r.choices[0].finish_reason).toBe("stop");
    }
    case "completion-stream": {
      let text = "";
      for await (const c of await openai.completions.create({ model, prompt: "Hi", stream: true }, { signal })) text += c.choices[0]?.text ?? "";
      return void expect(text).toBe(UPSTREAM_TEXT);
    }
    case "completion": {
      const r = await openai.completions.create({ model, prompt: "Hi" }, { signal });
      return void expect(r.choices[0].text).toBe(UPSTREAM_TEXT);
    }
    case "embeddings": {
      const r = await openai.embeddings.create({ model, input: ["a", "b"] }, { signal });
      return void expect(r.data.map((d) => d.embedding)).toEqual([
        [0, 0.5],
        [1, 0.5],
      ]);
    }
  }
}

async function sequential(model: string, count: number, kinds: Kind[] = KINDS): Promise<void> {
  for (let i = 0; i < count; i++) await relay(model, kinds[i % kinds.length]);
}

/** `count` requests, `width` at a time. */
async function concurrent(model: string, count: number, width: number, kinds: Kind[] = KINDS): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) await relay(model, kinds[next++ % kinds.length]);
    }),
  );
}

describe.each([
  ["plain", "HTTP"],
  ["tls", "HTTPS"],
] as const)("connections to an %s upstream (%s) are pooled and reused", (model, _protocol) => {
  const upstream = () => (model === "plain" ? plain : tls);

  it("200 sequential requests of every kind (chat, completions, streaming or not, embeddings) open at most the pool's connections", async () => {
    upstream().reset();
    await sequential(model, 200);
    expect(upstream().requests).toBe(200);
    expect(upstream().connections).toBeLessThanOrEqual(POOL);
    if (model === "tls") expect(upstream().handshakes).toBeLessThanOrEqual(POOL);
  });

  it("200 requests 16 at a time share the pool of 4: at most 4 connections, and as many TLS handshakes", async () => {
    upstream().reset();
    await concurrent(model, 200, 16);
    expect(upstream().requests).toBe(200);
    expect(upstream().connections).toBeLessThanOrEqual(POOL);
    if (model === "tls") expect(upstream().handshakes).toBeLessThanOrEqual(POOL);
  });

  it("a client that cancels mid-stream frees the upstream request, and the pool keeps serving", async () => {
    upstream().reset();
    const abort = new AbortController();
    const stream = await openai.completions.create({ model, prompt: "endless", stream: true }, { signal: abort.signal });
    let chunks = 0;
    try {
      for await (const _ of stream) {
        if (++chunks === 3) {
          abort.abort();
          break;
        }
      }
    } catch {
      // the SDK throws once aborted
    }
    expect(chunks).toBe(3);
    // The upstream sees its client go away (the relayed request's connection is closed, not left streaming).
    await expect.poll(() => upstream().cancelled, { timeout: 5_000 }).toBe(1);
    await concurrent(model, 40, 8);
    expect(upstream().requests).toBe(41);
    // The cancelled request's connection is gone; at most one new one replaces it.
    expect(upstream().connections).toBeLessThanOrEqual(1);
  });

  /** 20 requests one after another and 20 more 8 at a time while the upstream treats connections as `mode` says; all answered right. */
  async function underMode(mode: ConnectionMode): Promise<CountingUpstream> {
    upstream().mode = mode;
    try {
      upstream().reset();
      await sequential(model, 20);
      await concurrent(model, 20, 8);
      expect(upstream().requests).toBe(40);
      return upstream();
    } finally {
      upstream().mode = "keep";
    }
  }

  it("an upstream that answers `Connection: close` still gets correct answers (a new connection each, TLS sessions resumed)", async () => {
    const seen = await underMode("connection-close");
    // A connection per request (the first few may go on connections pooled before the test).
    expect(seen.connections).toBeGreaterThanOrEqual(40 - POOL);
    // New connections to an upstream seen before resume its TLS session: no full handshake.
    if (model === "tls") expect(seen.resumed).toBe(seen.connections);
  });

  it("an upstream that closes idle connections still gets correct answers", async () => {
    await underMode("close-idle");
  });

  it("a pooled connection that the upstream closed as the request went out is retried once on a new connection, before any byte of the answer", async () => {
    const seen = await underMode("drop-reused");
    // Every answer came through, though pooled connections were dropped on the way.
    expect(seen.dropped).toBeGreaterThan(0);
  });
});

describe("connection pool settings", () => {
  it("keepAlive: false opens a new connection (and TLS handshake) for every request", async () => {
    noReuse.reset();
    const kinds = KINDS.filter((k) => k !== "embeddings");
    await sequential("tls-noreuse", 20, kinds);
    await concurrent("tls-noreuse", 20, 8, kinds);
    expect(noReuse.requests).toBe(40);
    expect(noReuse.connections).toBe(40);
    expect(noReuse.handshakes).toBe(40);
  });

  it("an idle connection is kept for idleTimeoutMs, then closed", async () => {
    await sequential("idle", 5, ["chat"]);
    expect(idle.connections).toBe(1);
    await expect.poll(() => idle.open(), { timeout: 10_000 }).toBe(0);
    // The next request opens a new connection.
    await relay("idle", "chat");
    expect(idle.connections).toBe(2);
  });
});
