import { APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { complete, killAll, MODEL, sleep, startDistGateway, startDistWorker, waitUntilReady, type DistGateway, type DistWorker } from "../helpers/distCluster.js";

// One worker with a single sequence behind a gateway whose queue holds one request for at most 1.5 s.
const QUEUE_TIMEOUT_MS = 1_500;
let etcd: TestEtcd;
let worker: DistWorker;
let gateway: DistGateway;

beforeAll(async () => {
  etcd = await startEtcd();
  worker = await startDistWorker(etcd, { workerId: "bp-worker", sequences: 1 });
  gateway = await startDistGateway(etcd, ["--queue-size", "1", "--queue-timeout-ms", String(QUEUE_TIMEOUT_MS)]);
  await waitUntilReady(gateway);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, worker);
  await etcd?.close();
});

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

describe("distributed mode: back-pressure at the gateway", () => {
  it("queues one request, answers the next with 429 + Retry-After, and times the queued one out with 503", async () => {
    // 1. A long stream takes the only sequence. 2000 tokens take several seconds at ~1,000 tokens/s (the rate
    //    drops as the context fills), far longer than the queue timeout; it is cancelled at the end.
    const abortLong = new AbortController();
    const long = await gateway.openai.completions.create(
      { model: MODEL, prompt: "Once upon a time", max_tokens: 2000, temperature: 1, stream: true },
      { signal: abortLong.signal },
    );
    const longIterator = long[Symbol.asyncIterator]();
    expect((await longIterator.next()).done).toBe(false); // running: it holds the slot
    let longFinished = false;
    let longTokens = 0;
    const drainLong = (async () => {
      try {
        for (let r = await longIterator.next(); !r.done; r = await longIterator.next()) longTokens++;
        longFinished = true;
      } catch {
        // aborted below
      }
    })();

    // 2. The second request waits in the gateway's queue (size 1).
    const queuedAt = performance.now();
    const queued = complete(gateway.openai, 8).then(
      (value) => ({ ok: true as const, value, at: performance.now() }),
      (error: unknown) => ({ ok: false as const, error, at: performance.now() }),
    );
    await sleep(400);

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
    const viaClient = await complete(gateway.openai, 8).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(viaClient).toBeInstanceOf(APIError);
    expect((viaClient as APIError).status).toBe(429);
    expect((viaClient as APIError).code).toBe("resource_exhausted");
    expect((viaClient as APIError).headers?.get("retry-after")).toMatch(/^\d+$/);

    // 4. The queued request gives up after the queue timeout: 503 unavailable, while the long one still runs.
    const outcome = await queued;
    expect(longFinished, "the long request must outlast the queue timeout for this test to mean anything").toBe(false);
    expect(outcome.ok, outcome.ok ? `queued request succeeded: ${JSON.stringify(outcome.value)}` : "").toBe(false);
    const error = (outcome as { error: unknown }).error;
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).status).toBe(503);
    expect((error as APIError).code).toBe("unavailable");
    expect((error as APIError).type).toBe("service_unavailable_error");
    const waited = outcome.at - queuedAt;
    expect(waited).toBeGreaterThanOrEqual(QUEUE_TIMEOUT_MS - 50);
    expect(waited).toBeLessThan(QUEUE_TIMEOUT_MS + 3_000);

    // 5. Cancelling the long stream frees the slot: the next request is served at once.
    expect(longTokens).toBeGreaterThan(0);
    abortLong.abort();
    await drainLong;
    const after = await complete(gateway.openai, 8, { timeoutMs: 10_000 });
    expect(after.instance).toBe(worker.instanceId);
    expect(after.completionTokens).toBe(8);
  }, 60_000);
});
