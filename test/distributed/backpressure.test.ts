import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI, { APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { startCountingUpstream, UPSTREAM_TEXT, type CountingUpstream } from "../helpers/countingUpstream.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { killAll, startDistGateway, waitFor, waitUntilReady, type DistGateway } from "../helpers/distCluster.js";

// One instance that takes one request at a time, behind a gateway whose queue holds one request for at most
// 1.5 s. The instance is an upstream model (a worker relaying to a loopback OpenAI-compatible server), so the
// request that holds its slot is one that never ends on its own: the prompt "endless" streams until the client
// goes away. Nothing here depends on how fast anything generates.
const MODEL = "held";
const QUEUE_TIMEOUT_MS = 1_500;
let etcd: TestEtcd;
let upstream: CountingUpstream;
let dir: string;
let worker: SmmfProcess;
let gateway: DistGateway;
let root: string;

beforeAll(async () => {
  [etcd, upstream] = await Promise.all([startEtcd(), startCountingUpstream()]);
  dir = mkdtempSync(join(tmpdir(), "smmf-bp-"));
  const config = join(dir, "worker.config.json");
  writeFileSync(config, JSON.stringify({ models: [{ name: MODEL, engine: "openai-compatible", baseUrl: upstream.url, maxConcurrency: 1 }] }));
  worker = await startSmmf(["worker", "--etcd", etcd.endpoints, "--config", config, "--worker-id", "bp-worker", "--lease-ttl", "3", "--log-level", "warn"], { timeoutMs: 60_000 });
  gateway = await startDistGateway(etcd, ["--queue-size", "1", "--queue-timeout-ms", String(QUEUE_TIMEOUT_MS)]);
  root = gateway.baseURL.replace(/\/v1$/, "");
  await waitUntilReady(gateway);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, worker);
  await upstream?.close();
  await etcd?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

/** The gateway's smmf_gateway_requests_queued for the model, from /metrics. */
async function queued(): Promise<number> {
  return promValue(promSamples(await (await fetch(`${root}/metrics`)).text()), "smmf_gateway_requests_queued", { model: MODEL });
}

/** One short (non-streaming) completion of the model. */
function complete(openai: OpenAI, options: { timeoutMs?: number } = {}) {
  return openai.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 8 }, options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }).withResponse();
}

describe("distributed mode: back-pressure at the gateway", () => {
  it("queues one request, answers the next with 429 + Retry-After, and times the queued one out with 503", async () => {
    // 1. A stream that never ends on its own takes the only slot; it is cancelled at the end.
    const abortLong = new AbortController();
    const { data: long, response: longResponse } = await gateway.openai.completions
      .create({ model: MODEL, prompt: "endless", max_tokens: 100_000, stream: true }, { signal: abortLong.signal })
      .withResponse();
    const instance = longResponse.headers.get("x-smmf-instance");
    expect(instance).toMatch(/\S/);
    const longIterator = long[Symbol.asyncIterator]();
    expect((await longIterator.next()).done).toBe(false); // running: it holds the slot
    let longEnded = false;
    let longChunks = 1;
    const drainLong = (async () => {
      try {
        for (let r = await longIterator.next(); !r.done; r = await longIterator.next()) longChunks++;
        longEnded = true;
      } catch {
        // aborted below
      }
    })();

    // 2. The second request waits in the gateway's queue (size 1): the queue gauge says so.
    expect(await queued()).toBe(0);
    const queuedAt = performance.now();
    const second = complete(gateway.openai).then(
      (value) => ({ ok: true as const, value, at: performance.now() }),
      (error: unknown) => ({ ok: false as const, error, at: performance.now() }),
    );
    await waitFor("the second request in the gateway's queue", async () => (await queued()) === 1, 10_000, 20);

    // 3. The third finds the queue full: 429 at once, Retry-After, an OpenAI-shaped error body.
    const thirdStarted = performance.now();
    const third = await fetch(`${gateway.baseURL}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "The dog", max_tokens: 8 }),
    });
    const thirdMs = performance.now() - thirdStarted;
    expect(third.status).toBe(429);
    const retryAfter = third.headers.get("retry-after");
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(third.headers.get("content-type")).toMatch(/^application\/json/);
    const body = (await third.json()) as ErrorBody;
    expect(Object.keys(body)).toEqual(["error"]);
    expect(body.error).toMatchObject({ type: "rate_limit_error", code: "resource_exhausted", param: null });
    expect(typeof body.error.message).toBe("string");
    expect(body.error.message.length).toBeGreaterThan(0);
    expect(thirdMs).toBeLessThan(QUEUE_TIMEOUT_MS); // rejected, not queued

    // The official client sees the same as a RateLimitError.
    const viaClient = await complete(gateway.openai).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(viaClient).toBeInstanceOf(APIError);
    expect((viaClient as APIError).status).toBe(429);
    expect((viaClient as APIError).code).toBe("resource_exhausted");
    expect((viaClient as APIError).headers?.get("retry-after")).toMatch(/^\d+$/);

    // 4. The queued request gives up after the queue timeout: 503 unavailable, while the long one still streams.
    const outcome = await second;
    expect(outcome.ok, outcome.ok ? `queued request succeeded: ${JSON.stringify(outcome.value.data)}` : "").toBe(false);
    const error = (outcome as { error: unknown }).error;
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).status).toBe(503);
    expect((error as APIError).code).toBe("unavailable");
    expect((error as APIError).type).toBe("service_unavailable_error");
    const waited = outcome.at - queuedAt;
    expect(waited).toBeGreaterThanOrEqual(QUEUE_TIMEOUT_MS - 50);
    expect(waited).toBeLessThan(QUEUE_TIMEOUT_MS + 3_000);
    expect(await queued()).toBe(0);
    const chunksAtTimeout = longChunks;
    await waitFor("the long stream to go on after the timeout", () => longChunks > chunksAtTimeout, 10_000, 10);
    expect(longEnded).toBe(false);

    // 5. Cancelling the long stream frees the slot: the upstream sees its client go, and the next request is served.
    abortLong.abort();
    await drainLong;
    await waitFor("the upstream to see the long stream cancelled", () => upstream.cancelled === 1, 10_000, 10);
    const { data: after, response } = await complete(gateway.openai, { timeoutMs: 10_000 });
    expect(response.headers.get("x-smmf-instance")).toBe(instance);
    expect(after.choices[0].text).toBe(UPSTREAM_TEXT);
  }, 60_000);
});
