import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promSamples, promValue } from "./helpers/promSamples.js";
import { startTestServer, type TestServer } from "./helpers/startTestServer.js";

const MODEL = "stories260K";
let server: TestServer;

beforeAll(async () => {
  // One sequence: a second request can only run once the first has let go of it.
  server = await startTestServer({ sequences: 1 });
});
afterAll(async () => {
  await server?.close();
});

const inFlight = () => server.embedded.worker.worker.list()[0].inFlight;
/** Requests waiting in the gateway's queue for the model (smmf_gateway_requests_queued on /metrics). */
const queued = async () => promValue(promSamples(await (await fetch(`${server.url}/metrics`)).text()), "smmf_gateway_requests_queued", { model: MODEL });

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - started;
}

describe("client abort", () => {
  it("frees the sequence at once: the queued request starts right after the first is aborted", async () => {
    const abortA = new AbortController();
    const streamA = await server.openai.completions.create(
      { model: MODEL, prompt: "Once upon a time", max_tokens: 2000, temperature: 1, seed: 3, stream: true },
      { signal: abortA.signal },
    );
    // Read three chunks without ending the iteration (leaving a for-await loop would cancel A itself).
    const iteratorA = streamA[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) expect((await iteratorA.next()).done).toBe(false);
    expect(inFlight()).toBe(1);

    // B waits in the queue while A holds the only sequence.
    expect(await queued()).toBe(0);
    let firstTokenB = 0;
    const runB = (async () => {
      const streamB = await server.openai.completions.create({ model: MODEL, prompt: "The dog", max_tokens: 5, temperature: 0, stream: true });
      let text = "";
      for await (const chunk of streamB) {
        if (!firstTokenB) firstTokenB = performance.now();
        text += chunk.choices[0]?.text ?? "";
      }
      return text;
    })();
    await expect.poll(queued, { timeout: 10_000, interval: 10 }).toBe(1);
    expect(firstTokenB).toBe(0);
    expect(inFlight()).toBe(1);

    const abortedAt = performance.now();
    abortA.abort();
    await iteratorA.next().catch(() => undefined);
    const textB = await runB;
    expect(textB.length).toBeGreaterThan(0);
    // B started only once A was aborted, and got its first token soon after, far sooner than A's 2000 tokens would have taken.
    expect(firstTokenB).toBeGreaterThan(abortedAt);
    expect(firstTokenB - abortedAt).toBeLessThan(1000);
    await waitFor(() => inFlight() === 0, 1000);
  });

  it("an aborted non-streaming request frees its sequence too", async () => {
    const abort = new AbortController();
    const pending = server.openai.completions
      .create({ model: MODEL, prompt: "Once upon a time", max_tokens: 2000, temperature: 1, seed: 5 }, { signal: abort.signal })
      .catch((e: unknown) => e);
    await waitFor(() => inFlight() === 1, 2000);
    abort.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(() => inFlight() === 0, 1000);
    const after = await server.openai.completions.create({ model: MODEL, prompt: "The cat", max_tokens: 3 });
    expect(after.choices[0].text.length).toBeGreaterThan(0);
  });
});
