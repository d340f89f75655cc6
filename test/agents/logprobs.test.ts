import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import type { ChatCompletionTokenLogprob } from "openai/resources/chat/completions";
import { getSharedLlama } from "../../src/engines/getSharedLlama.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { testModelPath } from "../helpers/testModel.js";
import { expectBadRequest, isWholeText, MODEL, utf8 } from "./agentHelpers.js";

/**
 * logprobs on llama.cpp: OpenAI's shapes (chat: token/logprob/bytes/top_logprobs; completions: the legacy
 * tokens/token_logprobs/top_logprobs/text_offset), and values that are the model's own log-probabilities,
 * checked by re-scoring the generated tokens with node-llama-cpp in this process.
 */

let server: TestServer;
let model: LlamaModel;
let context: LlamaContext;
let sequence: LlamaContextSequence;
/** Each vocabulary token's text as it appears inside generated text (detokenized after another token) → its ids. */
const idsByText = new Map<string, Token[]>();

beforeAll(async () => {
  server = await startTestServer({ sequences: 4 });
  const llama = await getSharedLlama(1, false);
  model = await llama.loadModel({ modelPath: testModelPath() });
  context = await model.createContext({ sequences: 1, contextSize: 256 });
  sequence = context.getSequence();
  // A token's text depends on what precedes it (SentencePiece drops the leading space of a text's first token),
  // so each is detokenized after an ordinary word token, as it appears in the middle of generated text.
  const anchor = model.tokenize("the")[0];
  const vocabularySize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
  for (let id = 0; id < vocabularySize; id++) {
    const text = model.detokenize([id as Token], false, [anchor]);
    idsByText.set(text, [...(idsByText.get(text) ?? []), id as Token]);
  }
});
afterAll(async () => {
  await context?.dispose();
  await model?.dispose();
  await server?.close();
});

const ln = Math.log;

/** The raw (temperature-independent) next-token distribution: with temperature 0 node-llama-cpp gives softmax(logits). */
const NEXT = { generateNext: { probabilities: true, options: { temperature: 0 } } } as const;

interface Rescored {
  ids: Token[];
  logprobs: number[];
  /** The two highest log-probabilities at each step. */
  top2: number[][];
  /** Steps where a token's text matched several vocabulary ids (resolved by the reported value, then checked by what follows). */
  ambiguous: number;
}

/**
 * Re-scores generated tokens after `[BOS, ...tokenize(prompt)]`.
 *
 * Token ids are not reported, only texts. Tokenizing the generated text again does not give the generated
 * tokens (SentencePiece adds a space prefix and may split differently), so each reported token text is mapped
 * back through the vocabulary (`idsByText`). About 90 texts are shared by two ids (a byte-fallback token and a
 * normal one, e.g. "," and <0x2C>); there the id whose re-scored log-probability is closest to the reported one
 * is taken. A wrong pick would show on the following tokens, whose context then differs.
 */
async function rescore(prompt: string, tokens: string[], reported: number[]): Promise<Rescored> {
  await sequence.clearHistory();
  const promptTokens: Token[] = [model.tokens.bos!, ...model.tokenize(prompt)];
  const out = await sequence.controlledEvaluate(promptTokens.map((t, i) => (i === promptTokens.length - 1 ? [t, NEXT] : t)));
  let probabilities = out[promptTokens.length - 1]!.next.probabilities!;
  const result: Rescored = { ids: [], logprobs: [], top2: [], ambiguous: 0 };
  for (const [k, text] of tokens.entries()) {
    const candidates = idsByText.get(text);
    if (!candidates) throw new Error(`token ${k} ${JSON.stringify(text)} is no vocabulary token's text (tokens: ${JSON.stringify(tokens)})`);
    if (candidates.length > 1) result.ambiguous++;
    const scored = candidates.map((id) => ({ id, logprob: ln(probabilities.get(id) ?? 0) }));
    scored.sort((a, b) => Math.abs(a.logprob - reported[k]) - Math.abs(b.logprob - reported[k]));
    result.ids.push(scored[0].id);
    result.logprobs.push(scored[0].logprob);
    result.top2.push([...probabilities.values()].slice(0, 2).map(ln));
    if (k < tokens.length - 1) {
      const next = await sequence.controlledEvaluate([[scored[0].id, NEXT]]);
      probabilities = next[0]!.next.probabilities!;
    }
  }
  return result;
}

const PROMPT = "Once upon a time, there was a little dog";

describe("/v1/completions logprobs, re-scored", () => {
  for (const sampling of [
    { name: "temperature 0", temperature: 0 },
    { name: "temperature 1 with a seed", temperature: 1, seed: 7 },
    { name: "temperature 1.5, top_p 0.9, with a seed", temperature: 1.5, top_p: 0.9, seed: 11 },
  ]) {
    it(`legacy shape, and each token's logprob is the model's own (${sampling.name})`, async () => {
      const { name: _name, ...params } = sampling;
      const res = await server.openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, logprobs: 2, ...params });
      const choice = res.choices[0];
      expect(choice.finish_reason).toBe("length");
      const lp = choice.logprobs!;
      expect(lp).toBeTruthy();
      const tokens = lp.tokens!;
      const tokenLogprobs = lp.token_logprobs!;
      const top = lp.top_logprobs!;
      const offsets = lp.text_offset!;
      expect(tokens).toHaveLength(24);
      expect(res.usage!.completion_tokens).toBe(24);
      expect(tokenLogprobs).toHaveLength(24);
      expect(top).toHaveLength(24);
      expect(offsets).toHaveLength(24);
      expect(tokens.join("")).toBe(choice.text);
      for (let i = 1; i < offsets.length; i++) expect(offsets[i] - offsets[i - 1]).toBe(tokens[i - 1].length);
      for (const [i, entry] of top.entries()) {
        const values = Object.values(entry);
        expect(values.length).toBeGreaterThanOrEqual(1);
        expect(values.length).toBeLessThanOrEqual(3); // logprobs + the sampled token, as OpenAI documents
        for (const v of values) expect(v).toBeLessThanOrEqual(0);
        expect(tokenLogprobs[i]).toBeLessThanOrEqual(0);
      }

      const rescored = await rescore(PROMPT, tokens, tokenLogprobs);
      const diffs = tokenLogprobs.map((v, i) => Math.abs(v - rescored.logprobs[i]));
      const detail = tokens.map((t, i) => `${JSON.stringify(t)} reported ${tokenLogprobs[i].toFixed(5)} rescored ${rescored.logprobs[i].toFixed(5)}`).join("\n");
      expect(Math.max(...diffs), detail).toBeLessThan(1e-3);
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      expect(Math.abs(sum(tokenLogprobs) - sum(rescored.logprobs)), detail).toBeLessThan(1e-3 * tokens.length);
      // The best alternative at each step is the model's most likely token.
      for (const [i, entry] of top.entries()) expect(Math.abs(Math.max(...Object.values(entry)) - rescored.top2[i][0]), `step ${i}`).toBeLessThan(1e-3);
      if (sampling.temperature === 0) {
        // Greedy: every chosen token is the most likely one.
        for (const [i, v] of tokenLogprobs.entries()) expect(Math.abs(v - rescored.top2[i][0]), `step ${i}`).toBeLessThan(1e-3);
      } else {
        // Sampled: some tokens are not the most likely one, so the check above covered sampled tokens.
        expect(tokenLogprobs.some((v, i) => v < rescored.top2[i][0] - 1e-3), detail).toBe(true);
      }
    });
  }

  it("without logprobs, choices[0].logprobs is null", async () => {
    const res = await server.openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 4 });
    expect(res.choices[0].logprobs).toBeNull();
  });
});

function checkChatEntries(entries: ChatCompletionTokenLogprob[], topCount: number): string[] {
  const problems: string[] = [];
  for (const [i, e] of entries.entries()) {
    const where = `entry ${i} ${JSON.stringify(e.token)}`;
    if (typeof e.token !== "string") problems.push(`${where}: token is not a string`);
    if (!(typeof e.logprob === "number" && e.logprob <= 0)) problems.push(`${where}: logprob ${e.logprob}`);
    if (!Array.isArray(e.bytes) || !e.bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) problems.push(`${where}: bytes ${JSON.stringify(e.bytes)}`);
    else if (isWholeText(e.token) && JSON.stringify(e.bytes) !== JSON.stringify(utf8(e.token))) problems.push(`${where}: bytes ${JSON.stringify(e.bytes)} are not its UTF-8`);
    if (!Array.isArray(e.top_logprobs) || e.top_logprobs.length !== topCount) {
      problems.push(`${where}: ${e.top_logprobs?.length} top_logprobs, expected ${topCount}`);
      continue;
    }
    for (const [j, t] of e.top_logprobs.entries()) {
      if (typeof t.token !== "string" || !(t.logprob <= 0) || !Array.isArray(t.bytes)) problems.push(`${where}: top ${j} ${JSON.stringify(t)}`);
      else if (isWholeText(t.token) && JSON.stringify(t.bytes) !== JSON.stringify(utf8(t.token))) problems.push(`${where}: top ${j} bytes are not its UTF-8`);
      if (j > 0 && t.logprob > e.top_logprobs[j - 1].logprob) problems.push(`${where}: top_logprobs not sorted descending`);
    }
    const probabilityMass = e.top_logprobs.reduce((s, t) => s + Math.exp(t.logprob), 0);
    if (probabilityMass > 1 + 1e-4) problems.push(`${where}: top_logprobs hold probability ${probabilityMass}`);
    if (topCount > 0) {
      const same = e.top_logprobs.find((t) => t.token === e.token && JSON.stringify(t.bytes) === JSON.stringify(e.bytes));
      if (same && Math.abs(same.logprob - e.logprob) > 1e-5) problems.push(`${where}: logprob ${e.logprob} but ${same.logprob} among top_logprobs`);
      if (e.logprob > e.top_logprobs[topCount - 1].logprob + 1e-5 && !same) problems.push(`${where}: more likely than the last of top_logprobs but missing from them`);
      if (e.logprob > e.top_logprobs[0].logprob + 1e-5) problems.push(`${where}: more likely than the first of top_logprobs`);
    }
  }
  return problems;
}

function bytesText(entries: ChatCompletionTokenLogprob[]): string {
  return Buffer.from(entries.flatMap((e) => e.bytes ?? [])).toString("utf8");
}

describe("chat logprobs", () => {
  const messages = [{ role: "user" as const, content: "Tell me a story about a little dog." }];

  it("one entry per generated token with token, logprob, bytes and 3 sorted top_logprobs; the bytes make the content", async () => {
    for (const [seed, temperature] of [[1, 1], [2, 0], [3, 1.3]]) {
      const res = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 20, temperature, seed, logprobs: true, top_logprobs: 3 });
      const choice = res.choices[0];
      const entries = choice.logprobs!.content!;
      expect(Array.isArray(entries)).toBe(true);
      if (choice.finish_reason === "length") expect(entries).toHaveLength(res.usage!.completion_tokens);
      else expect(entries.length).toBeLessThanOrEqual(res.usage!.completion_tokens);
      expect(entries.length).toBeGreaterThan(0);
      const problems = checkChatEntries(entries, 3);
      expect(problems, problems.join("\n")).toEqual([]);
      expect(bytesText(entries)).toBe(choice.message.content);
      if (temperature === 0) for (const e of entries) expect(Math.abs(e.logprob - e.top_logprobs[0].logprob)).toBeLessThan(1e-5);
    }
  });

  it("top_logprobs 0 gives entries with empty top_logprobs", async () => {
    const res = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 1, seed: 5, logprobs: true, top_logprobs: 0 });
    const entries = res.choices[0].logprobs!.content!;
    expect(entries.length).toBeGreaterThan(0);
    expect(checkChatEntries(entries, 0)).toEqual([]);
  });

  it("streams logprobs with the content chunks", async () => {
    const stream = await server.openai.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 20,
      temperature: 1,
      seed: 9,
      logprobs: true,
      top_logprobs: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    const entries: ChatCompletionTokenLogprob[] = [];
    let usage;
    let finish: string | null = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? "";
        entries.push(...(choice.logprobs?.content ?? []));
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    expect(checkChatEntries(entries, 2)).toEqual([]);
    expect(bytesText(entries)).toBe(text);
    if (finish === "length") expect(entries).toHaveLength(usage!.completion_tokens);
    // The same request without streaming reports the same values.
    const whole = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 20, temperature: 1, seed: 9, logprobs: true, top_logprobs: 2 });
    expect(whole.choices[0].message.content).toBe(text);
    const wholeEntries = whole.choices[0].logprobs!.content!;
    expect(wholeEntries.map((e) => e.token)).toEqual(entries.map((e) => e.token));
    wholeEntries.forEach((e, i) => expect(Math.abs(e.logprob - entries[i].logprob)).toBeLessThan(1e-4));
  });

  it("without logprobs, choices[0].logprobs is null", async () => {
    const res = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 4 });
    expect(res.choices[0].logprobs).toBeNull();
    const off = await server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 4, logprobs: false });
    expect(off.choices[0].logprobs).toBeNull();
  });

  it("top_logprobs above 20 → 400 naming it", async () => {
    await expectBadRequest(server.openai.chat.completions.create({ model: MODEL, messages, max_tokens: 4, logprobs: true, top_logprobs: 21 }), "top_logprobs");
  });
});
