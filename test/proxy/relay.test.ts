import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { testModelPath } from "../helpers/testModel.js";

// Gateway A serves "relay" through an OpenAI-compatible upstream engine whose upstream is gateway B, a
// second SMMF serving the llama.cpp model: a real OpenAI-compatible server over HTTP.
/** Token counts of a usage; cached_tokens depends on what the upstream's prefix cache held at the time. */
const counts = (usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | undefined) =>
  usage && { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens, total_tokens: usage.total_tokens };

let upstream: TestServer;
let relay: TestServer;

beforeAll(async () => {
  upstream = await startTestServer();
  relay = await startTestServer({
    models: [
      { name: "relay", engine: "openai-compatible", file: "", baseUrl: `${upstream.url}/v1`, upstreamModel: "stories260K", embeddings: true, maxConcurrency: 4 },
      // One model name, two engines: local llama.cpp first (weight 3), the upstream as overflow (weight 1).
      { name: "both", file: testModelPath(), weight: 3, sequences: 2 },
      { name: "both", engine: "vllm", file: "", baseUrl: `${upstream.url}/v1`, upstreamModel: "stories260K", weight: 1 },
    ],
    modelPolicies: { both: "weighted" },
  });
}, 60_000);

afterAll(async () => {
  await relay?.close();
  await upstream?.close();
});

describe("OpenAI-compatible upstream engine, relaying to a second SMMF gateway", () => {
  it("registers the upstream instance with its preset as engine and the probed embedding length", async () => {
    const instance = relay.embedded.registry.snapshot().find((i) => i.model === "relay");
    expect(instance).toMatchObject({ model: "relay", engine: "openai-compatible", maxConcurrency: 4, embeddingSize: 64 });
    const models = await relay.openai.models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual(["both", "relay"]);
  });

  it("answers a chat completion like the upstream does, with the upstream's usage", async () => {
    const request = { messages: [{ role: "user" as const, content: "Tell me a story" }], max_tokens: 12, temperature: 0 };
    const direct = await upstream.openai.chat.completions.create({ model: "stories260K", ...request });
    const { data, response } = await relay.openai.chat.completions.create({ model: "relay", ...request }).withResponse();
    expect(data.model).toBe("relay");
    expect(data.choices[0].message.content).toBe(direct.choices[0].message.content);
    expect(data.choices[0].finish_reason).toBe("length");
    expect(counts(data.usage)).toEqual(counts(direct.usage));
    // The upstream SMMF had this prompt in its cache from the direct request, and said so: passed on.
    expect(data.usage?.prompt_tokens_details?.cached_tokens).toBe(direct.usage!.prompt_tokens - 1);
    expect(response.headers.get("x-smmf-instance")).toMatch(/^relay-/);
  });

  it("streams a chat completion chunk by chunk, with usage at the end", async () => {
    const request = { messages: [{ role: "user" as const, content: "Once upon a time" }], max_tokens: 10, temperature: 0 };
    const direct = await upstream.openai.chat.completions.create({ model: "stories260K", ...request });
    const stream = await relay.openai.chat.completions.create({ model: "relay", ...request, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let contentChunks = 0;
    let usage;
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta?.content;
      if (piece !== undefined && piece !== null && !chunk.choices[0].finish_reason && !chunk.choices[0].delta.role) {
        text += piece;
        contentChunks++;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(direct.choices[0].message.content);
    expect(counts(usage)).toEqual(counts(direct.usage));
    expect(contentChunks).toBe(direct.usage!.completion_tokens);
  });

  it("completes a prompt, streaming and not, consistently", async () => {
    const request = { prompt: "The little dog", max_tokens: 8, temperature: 0 };
    const direct = await upstream.openai.completions.create({ model: "stories260K", ...request });
    const plain = await relay.openai.completions.create({ model: "relay", ...request });
    expect(plain.choices[0].text).toBe(direct.choices[0].text);
    expect(counts(plain.usage)).toEqual(counts(direct.usage));
    let streamed = "";
    let usage;
    for await (const chunk of await relay.openai.completions.create({ model: "relay", ...request, stream: true, stream_options: { include_usage: true } })) {
      streamed += chunk.choices[0]?.text ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(streamed).toBe(direct.choices[0].text);
    expect(counts(usage)).toEqual(counts(direct.usage));
  });

  it("passes embeddings through, vectors and usage", async () => {
    const input = ["a little cat", "a big dog"];
    const direct = await upstream.openai.embeddings.create({ model: "stories260K", input });
    const relayed = await relay.openai.embeddings.create({ model: "relay", input });
    expect(relayed.data.map((d) => d.index)).toEqual([0, 1]);
    for (const [i, d] of relayed.data.entries()) {
      expect(d.embedding).toHaveLength(64);
      d.embedding.forEach((x, j) => expect(x).toBeCloseTo(direct.data[i].embedding[j], 5));
    }
    expect(relayed.usage).toEqual(direct.usage);
  });

  it("maps upstream refusals onto SMMF errors: an over-long request is the client's error; what the upstream said is in the worker's log", async () => {
    // The relay's logger writes JSON lines on stderr (at warn and above, see startTestServer).
    const logged: string[] = [];
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => (logged.push(String(chunk)), true));
    try {
      const err = (await relay.openai.completions.create({ model: "relay", prompt: "Once", max_tokens: 100_000 }).catch((e: unknown) => e)) as { status: number; code: string; message: string };
      expect(err).toMatchObject({ status: 400, code: "context_length_exceeded" });
      expect(err.message).toMatch(/^400 the prompt and max_tokens do not fit in the upstream model's context \(upstream http:\/\/127\.0\.0\.1:\d+ answered HTTP 400\)$/);
      expect(err.message).not.toMatch(/maximum context length/);
      await expect.poll(() => logged.find((l) => l.includes("upstream answered an error")), { timeout: 5_000 }).toMatch(/maximum context length is \d+ tokens/);
    } finally {
      stderr.mockRestore();
    }
  });

  it("cancels the upstream generation when the client goes away", async () => {
    const abort = new AbortController();
    const stream = await relay.openai.completions.create({ model: "relay", prompt: "Once", max_tokens: 2000, stream: true }, { signal: abort.signal });
    let n = 0;
    try {
      for await (const _ of stream) {
        if (++n === 3) {
          abort.abort();
          break;
        }
      }
    } catch {
      // the SDK may throw when aborted
    }
    expect(n).toBe(3);
    // The 2000 tokens would take seconds to generate; cancelled, both sides are idle within a second.
    await expect.poll(() => upstream.embedded.worker.worker.inFlight(), { timeout: 1_000 }).toBe(0);
    await expect.poll(() => relay.embedded.worker.worker.inFlight(), { timeout: 1_000 }).toBe(0);
  });

  it("serves one model name from a llama.cpp instance and an upstream instance at once, by their weights", async () => {
    const engines = new Map(relay.embedded.registry.snapshot().filter((i) => i.model === "both").map((i) => [i.instanceId, i.engine]));
    expect([...engines.values()].sort()).toEqual(["llama.cpp", "vllm"]);
    const counts = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const { data, response } = await relay.openai.completions.create({ model: "both", prompt: "Once", max_tokens: 2, temperature: 0 }).withResponse();
      expect(data.usage?.completion_tokens).toBe(2);
      const engine = engines.get(response.headers.get("x-smmf-instance") ?? "") ?? "?";
      counts.set(engine, (counts.get(engine) ?? 0) + 1);
    }
    expect(counts.get("vllm")).toBeGreaterThan(0);
    expect(counts.get("llama.cpp")).toBeGreaterThan(counts.get("vllm")!);
  });
});
