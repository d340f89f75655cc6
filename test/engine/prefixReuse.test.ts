import { getLlama, LlamaLogLevel, type LlamaModel } from "node-llama-cpp";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { testModelPath } from "../helpers/testModel.js";

// Prefix reuse on the llama.cpp engine: a request whose prompt starts with tokens a free sequence already holds
// evaluates only the rest, and says so in usage.prompt_tokens_details.cached_tokens. `warm` keeps its sequences'
// caches between requests; `cold` has the prefix cache off (every request on a cleared sequence), and answers
// are compared between the two (greedy, same seed).

const MODEL = "stories260K";
let warm: TestServer;
let cold: TestServer;
let model: LlamaModel;

beforeAll(async () => {
  [warm, cold] = await Promise.all([startTestServer({ sequences: 2 }), startTestServer({ sequences: 2, models: [{ name: MODEL, file: testModelPath(), prefixCache: false }] })]);
  const llama = await getLlama({ build: "never", gpu: false, maxThreads: 1, logLevel: LlamaLogLevel.error });
  model = await llama.loadModel({ modelPath: testModelPath() });
});
afterAll(async () => {
  await Promise.all([warm?.close(), cold?.close()]);
  await model?.dispose();
});

type Usage = OpenAI.CompletionUsage & { prompt_tokens_details?: { cached_tokens?: number } };
const cachedOf = (usage: OpenAI.CompletionUsage | undefined) => (usage as Usage | undefined)?.prompt_tokens_details?.cached_tokens;

/** A cold answer: nothing reused. */
async function coldChat(messages: OpenAI.ChatCompletionMessageParam[], extra: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}) {
  const res = await cold.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 24, temperature: 0, seed: 7, ...extra });
  expect(cachedOf(res.usage)).toBe(0);
  return res;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

describe("prefix reuse (llama.cpp)", () => {
  it("a conversation's next turn reuses its previous turn's prompt, and answers as a cold run does", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "system", content: "You tell short stories about animals who live in a big forest near the sea." },
      { role: "user", content: "Tell me about a little fox who wanted to fly." },
    ];
    const first = await warm.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 24, temperature: 0, seed: 7 });
    // The cache starts empty: nothing to reuse.
    expect(cachedOf(first.usage)).toBe(0);
    const history: OpenAI.ChatCompletionMessageParam[] = [...messages, { role: "assistant", content: first.choices[0].message.content ?? "" }];
    let previousUsage: OpenAI.CompletionUsage | undefined;
    for (const [turn, question] of ["What did the fox do next?", "And then what happened to her friends?"].entries()) {
      history.push({ role: "user", content: question });
      const warmAnswer = await warm.openai.chat.completions.create({ model: MODEL, messages: history, max_tokens: 24, temperature: 0, seed: 7 });
      const coldAnswer = await coldChat(history);
      expect(warmAnswer.choices[0].message.content).toBe(coldAnswer.choices[0].message.content);
      expect(warmAnswer.usage!.prompt_tokens).toBe(coldAnswer.usage!.prompt_tokens);
      const cached = cachedOf(warmAnswer.usage)!;
      // The previous prompt and answer came from the cache (all of the answer but its last token, which was
      // generated and never evaluated), and at least the new question was evaluated.
      const previous = turn === 0 ? first.usage! : previousUsage!;
      expect(cached).toBeGreaterThanOrEqual(previous.prompt_tokens + previous.completion_tokens - 2);
      expect(cached).toBeLessThan(warmAnswer.usage!.prompt_tokens - model.tokenize(question).length + 1);
      history.push({ role: "assistant", content: warmAnswer.choices[0].message.content ?? "" });
      previousUsage = warmAnswer.usage;
    }
  });

  it("a new conversation takes a free sequence, not the one of another conversation it shares a few tokens with", async () => {
    const a: OpenAI.ChatCompletionMessageParam[] = [{ role: "system", content: "You are storyteller A." }, { role: "user", content: "Tell me about a cat who sails." }];
    const b: OpenAI.ChatCompletionMessageParam[] = [{ role: "system", content: "You are storyteller B." }, { role: "user", content: "Tell me about a dog who sings." }];
    // Two more requests than the warm server's 2 sequences have been made by now: both hold something.
    const a1 = await warm.openai.chat.completions.create({ model: MODEL, messages: a, max_tokens: 12, temperature: 0 });
    await warm.openai.chat.completions.create({ model: MODEL, messages: b, max_tokens: 12, temperature: 0 });
    const a2 = await warm.openai.chat.completions.create({ model: MODEL, messages: [...a, { role: "assistant", content: a1.choices[0].message.content ?? "" }, { role: "user", content: "More!" }], max_tokens: 12, temperature: 0 });
    // B went to the other sequence (least recently used), so A's is intact: its whole first turn is reused.
    expect(cachedOf(a2.usage)).toBeGreaterThanOrEqual(a1.usage!.prompt_tokens);
  });

  it("completions continue the prompt's text: the first token's leading space is kept", async () => {
    const res = await warm.openai.completions.create({ model: MODEL, prompt: "Once upon a", max_tokens: 3, temperature: 0 });
    expect(res.choices[0].text).toMatch(/^ \S/);
    expect(model.tokenize(`Once upon a${res.choices[0].text}`).slice(0, 3)).toEqual(model.tokenize("Once upon a"));
  });

  it("a prompt that diverges mid-prefix reuses exactly the common tokens", async () => {
    const base = "Once upon a time, in a small village by the river, there lived a girl named Lily who loved to paint the boats";
    const a = `${base} that sailed past her house every morning.`;
    const b = `${base.slice(0, 60)} and a boy named Tom who liked to sing.`;
    const ra = await warm.openai.completions.create({ model: MODEL, prompt: a, max_tokens: 8, temperature: 0 });
    const rb = await warm.openai.completions.create({ model: MODEL, prompt: b, max_tokens: 8, temperature: 0 });
    const rbCold = await cold.openai.completions.create({ model: MODEL, prompt: b, max_tokens: 8, temperature: 0 });
    expect(ra.usage!.prompt_tokens).toBe(model.tokenize(a).length + 1);
    // BOS and the tokens both prompts start with.
    const common = 1 + commonPrefix(model.tokenize(a), model.tokenize(b));
    expect(common).toBeGreaterThan(8);
    expect(cachedOf(rb.usage)).toBe(common);
    expect(cachedOf(rbCold.usage)).toBe(0);
    expect(rb.choices[0].text).toBe(rbCold.choices[0].text);
  });

  it("the same prompt again reuses all but its last token, log-probabilities included", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Sing a song about the moon and the stars." }];
    const once = await warm.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 });
    const again = await warm.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 });
    expect(cachedOf(again.usage)).toBe(again.usage!.prompt_tokens - 1);
    const coldOnce = await coldChat(messages, { max_tokens: 6, logprobs: true, top_logprobs: 2 });
    for (const res of [once, again]) {
      expect(res.choices[0].message.content).toBe(coldOnce.choices[0].message.content);
      const tokens = res.choices[0].logprobs!.content!.map((t) => [t.token, t.logprob.toFixed(4)]);
      expect(tokens).toEqual(coldOnce.choices[0].logprobs!.content!.map((t) => [t.token, t.logprob.toFixed(4)]));
    }
  });

  it("concurrent requests with one prompt never share a sequence: each gets the cold answer", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "system", content: "You tell short stories." },
      { role: "user", content: "A story about a brave little boat, please." },
    ];
    const expected = (await coldChat(messages, { max_tokens: 32 })).choices[0].message.content;
    // Twice as many as the warm server has sequences, in three waves that overlap: half wait for a sequence
    // another request of the same prompt just left, with its tokens in the cache.
    const answers = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const stream = await warm.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 32, temperature: 0, seed: 7, stream: true, stream_options: { include_usage: true } });
        let text = "";
        let usage: OpenAI.CompletionUsage | undefined;
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta?.content ?? "";
          if (chunk.usage) usage = chunk.usage;
        }
        return { text, cached: cachedOf(usage)! };
      }),
    );
    for (const a of answers) expect(a.text).toBe(expected);
    // Most of them found the system prompt and question in a sequence's cache.
    expect(answers.filter((a) => a.cached > 0).length).toBeGreaterThanOrEqual(10);
  });
});
