import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { MODEL } from "./agentHelpers.js";

/** n > 1 on llama.cpp: several choices, each with its own index and finish_reason; usage summed as OpenAI does. */

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ sequences: 4 });
});
afterAll(async () => {
  await server?.close();
});

const messages = [{ role: "user" as const, content: "Tell me a story about a big red ball." }];
const PROMPT = "Once upon a time, a little girl";

describe("chat n: 2", () => {
  it("non-streaming: two choices, usage summed over both, prompt counted once", async () => {
    const single = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 1, seed: 3 });
    const texts: string[][] = [];
    for (const seed of [3, 4, 5]) {
      const res = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 1, seed, n: 2, logprobs: true });
      expect(res.choices).toHaveLength(2);
      expect(res.choices.map((c) => c.index)).toEqual([0, 1]);
      for (const c of res.choices) {
        expect(c.message.role).toBe("assistant");
        expect(typeof c.message.content).toBe("string");
        expect(["stop", "length"]).toContain(c.finish_reason);
      }
      // Each choice's logprobs count its tokens: the usage is their sum.
      const perChoice = res.choices.map((c) => c.logprobs!.content!.length);
      if (res.choices.every((c) => c.finish_reason === "length")) {
        expect(perChoice).toEqual([8, 8]);
        expect(res.usage!.completion_tokens).toBe(16);
      } else {
        expect(res.usage!.completion_tokens).toBeGreaterThanOrEqual(perChoice[0] + perChoice[1]);
        expect(res.usage!.completion_tokens).toBeLessThanOrEqual(perChoice[0] + perChoice[1] + 2);
      }
      expect(res.usage!.prompt_tokens).toBe(single.usage!.prompt_tokens);
      expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);
      texts.push(res.choices.map((c) => c.message.content ?? ""));
    }
    // The choices are independent samples: not all pairs are the same text.
    expect(texts.some(([a, b]) => a !== b), JSON.stringify(texts)).toBe(true);
  });

  it("streaming with include_usage: chunks for index 0 and 1, each with its finish_reason; the SDK helper assembles 2 choices", async () => {
    const stream = await server.openai.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 8,
      temperature: 1,
      seed: 21,
      n: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const text = ["", ""];
    const finish: (string | null)[] = [null, null];
    const indexes = new Set<number>();
    let usage;
    let usageChunkChoices = -1;
    for await (const chunk of stream) {
      if (chunk.usage) {
        usage = chunk.usage;
        usageChunkChoices = chunk.choices.length;
      }
      for (const c of chunk.choices) {
        indexes.add(c.index);
        expect([0, 1]).toContain(c.index);
        text[c.index] += c.delta.content ?? "";
        if (c.finish_reason) {
          expect(finish[c.index]).toBeNull();
          finish[c.index] = c.finish_reason;
        }
      }
    }
    expect([...indexes].sort()).toEqual([0, 1]);
    expect(finish.every((f) => f === "stop" || f === "length")).toBe(true);
    expect(usage).toBeDefined();
    expect(usageChunkChoices).toBe(0); // the usage chunk has empty choices, as OpenAI sends it
    if (finish.every((f) => f === "length")) expect(usage!.completion_tokens).toBe(16);
    // The same request without streaming gives the same two answers.
    const whole = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 1, seed: 21, n: 2 });
    expect(whole.choices.map((c) => c.message.content)).toEqual(text);
    expect(whole.usage!.completion_tokens).toBe(usage!.completion_tokens);
    expect(whole.usage!.prompt_tokens).toBe(usage!.prompt_tokens);

    const helper = server.openai.chat.completions.stream({ model: MODEL, messages, max_tokens: 8, temperature: 1, seed: 22, n: 2, stream_options: { include_usage: true } });
    const final = await helper.finalChatCompletion();
    expect(final.choices).toHaveLength(2);
    expect(final.choices.map((c) => c.index)).toEqual([0, 1]);
    for (const c of final.choices) {
      expect(typeof c.message.content).toBe("string");
      expect(["stop", "length"]).toContain(c.finish_reason);
    }
  });
});

describe("completions n: 2", () => {
  it("non-streaming: two choices with index 0 and 1, usage summed, prompt counted once", async () => {
    const single = await server.openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 8, temperature: 1, seed: 3 });
    const res = await server.openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 8, temperature: 1, seed: 3, n: 2, logprobs: 1 });
    expect(res.choices).toHaveLength(2);
    expect(res.choices.map((c) => c.index)).toEqual([0, 1]);
    for (const c of res.choices) {
      expect(["stop", "length"]).toContain(c.finish_reason);
      expect(c.logprobs!.tokens!.join("")).toBe(c.text);
    }
    if (res.choices.every((c) => c.finish_reason === "length")) {
      expect(res.choices.map((c) => c.logprobs!.tokens!.length)).toEqual([8, 8]);
      expect(res.usage!.completion_tokens).toBe(16);
    }
    expect(res.usage!.prompt_tokens).toBe(single.usage!.prompt_tokens);
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);
  });

  it("streaming: chunks for index 0 and 1, each with its finish_reason, then usage", async () => {
    const stream = await server.openai.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 8,
      temperature: 1,
      seed: 31,
      n: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const text = ["", ""];
    const finish: (string | null)[] = [null, null];
    let usage;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        expect([0, 1]).toContain(c.index);
        text[c.index] += c.text ?? "";
        if (c.finish_reason) {
          expect(finish[c.index]).toBeNull();
          finish[c.index] = c.finish_reason;
        }
      }
    }
    expect(finish.every((f) => f === "stop" || f === "length"), JSON.stringify(finish)).toBe(true);
    expect(usage).toBeDefined();
    if (finish.every((f) => f === "length")) expect(usage!.completion_tokens).toBe(16);
    const whole = await server.openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 8, temperature: 1, seed: 31, n: 2 });
    expect(whole.choices.map((c) => c.text)).toEqual(text);
    expect(whole.usage!.completion_tokens).toBe(usage!.completion_tokens);
  });

  it("n out of range → 400 naming n", async () => {
    await expect(server.openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 4, n: 0 })).rejects.toMatchObject({ status: 400, param: "n" });
    await expect(server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 4, n: 1.5 })).rejects.toMatchObject({ status: 400, param: "n" });
  });
});
