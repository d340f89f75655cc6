import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { GenerateStartSchema, type ChatMessageSchema, type GenerateStart } from "../gen/smmf/v1/inference_pb.js";
import { MAX_PREFIX_KEYS, MESSAGE_BLOCK_CHARS, PROMPT_BLOCK_CHARS, prefixKeysOf } from "./prefixKeys.js";

type Init = Exclude<MessageInitShape<typeof GenerateStartSchema>, GenerateStart>;
type Message = MessageInitShape<typeof ChatMessageSchema>;

const chat = (messages: Message[], more: Omit<Init, "input"> = {}) => create(GenerateStartSchema, { model: "m", input: { case: "chat", value: { messages } }, ...more });
const prompt = (text: string, more: Omit<Init, "input"> = {}) => create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: text }, ...more });
const keysOf = (start: GenerateStart) => prefixKeysOf(start).keys;

/** How many leading keys two lists share. */
function shared(a: string[], b: string[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

const SYSTEM: Message = { role: "system", content: "You are a storyteller." };

describe("prefixKeysOf", () => {
  it("gives one key for block 0 and one per message, each 16 base64url characters", () => {
    const { keys, ends } = prefixKeysOf(chat([SYSTEM, { role: "user", content: "Tell me a story" }]));
    expect(keys).toHaveLength(3);
    for (const key of keys) expect(key).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(new Set(keys).size).toBe(3);
    expect(ends).toBe(1);
  });

  it("is the same for the same request, whatever its sampling parameters, request id or continuation", () => {
    const messages = [SYSTEM, { role: "user", content: "Hi" }];
    expect(keysOf(chat(messages, { params: { temperature: 0.1, maxTokens: 5, seed: 1 }, requestId: "a" }))).toEqual(
      keysOf(chat(messages, { params: { temperature: 1.5, stop: ["x"] }, requestId: "b", continuation: "Once upon" })),
    );
  });

  it("shares the leading keys of requests with the same leading messages, and no more", () => {
    const a = keysOf(chat([SYSTEM, { role: "user", content: "Tell me about a dog" }]));
    const b = keysOf(chat([SYSTEM, { role: "user", content: "Tell me about a cat" }]));
    expect(shared(a, b)).toBe(2);
  });

  it("extends a turn's keys with the next turn's: turn k's keys are a prefix of turn k+1's", () => {
    const history: Message[] = [SYSTEM, { role: "user", content: "Tell me a story" }];
    let previous = keysOf(chat(history));
    for (let turn = 2; turn <= 5; turn++) {
      history.push({ role: "assistant", content: `Once upon a time, part ${turn - 1}.` }, { role: "user", content: `Go on (${turn})` });
      const next = keysOf(chat(history));
      expect(next.slice(0, previous.length)).toEqual(previous);
      expect(next).toHaveLength(previous.length + 2);
      previous = next;
    }
  });

  it("shares no key between requests with different system prompts (or models)", () => {
    const user: Message = { role: "user", content: "Hi" };
    const a = keysOf(chat([SYSTEM, user]));
    const b = keysOf(chat([{ role: "system", content: "You are a poet." }, user]));
    expect(shared(a, b)).toBe(1); // block 0: the model and its tools
    for (const key of a.slice(1)) expect(b).not.toContain(key);
    const other = keysOf(chat([SYSTEM, user], { model: "n" }));
    for (const key of a) expect(other).not.toContain(key);
  });

  it("hashes every field of a message: role, name, content, tool calls, tool call id", () => {
    const base: Message = { role: "assistant", content: "x", name: "", toolCallId: "", toolCalls: [] };
    const variants: Message[] = [
      base,
      { ...base, role: "user" },
      { ...base, name: "bob" },
      { ...base, content: "y" },
      { ...base, toolCallId: "call_1" },
      { ...base, toolCalls: [{ id: "call_1", name: "f", arguments: "{}" }] },
      { ...base, toolCalls: [{ id: "call_1", name: "f", arguments: '{"a":1}' }] },
      { ...base, toolCalls: [{ id: "call_1", name: "g", arguments: "{}" }] },
    ];
    const last = variants.map((m) => keysOf(chat([SYSTEM, m])).at(-1));
    expect(new Set(last).size).toBe(variants.length);
    // Field boundaries count: the same characters split differently are different messages.
    expect(keysOf(chat([{ role: "user", name: "ab", content: "c" }]))).not.toEqual(keysOf(chat([{ role: "user", name: "a", content: "bc" }])));
  });

  it("puts the tools in block 0: other tools, no shared key", () => {
    const messages = [SYSTEM, { role: "user", content: "What is the weather?" }];
    const tool = { name: "weather", description: "Current weather", parametersJson: '{"type":"object"}' };
    const none = keysOf(chat(messages));
    const one = keysOf(chat(messages, { tools: [tool] }));
    const described = keysOf(chat(messages, { tools: [{ ...tool, description: "The weather now" }] }));
    const params = keysOf(chat(messages, { tools: [{ ...tool, parametersJson: '{"type":"object","properties":{}}' }] }));
    expect(shared(none, one)).toBe(0);
    expect(shared(one, described)).toBe(0);
    expect(shared(one, params)).toBe(0);
    expect(keysOf(chat(messages, { tools: [tool] }))).toEqual(one);
  });

  it("cuts a long message into 4 KiB blocks: messages that share their first 4 KiB share that block", () => {
    const head = "a".repeat(MESSAGE_BLOCK_CHARS);
    const a = prefixKeysOf(chat([SYSTEM, { role: "user", content: `${head}${"b".repeat(MESSAGE_BLOCK_CHARS)}tail one` }]));
    const b = prefixKeysOf(chat([SYSTEM, { role: "user", content: `${head}question two` }]));
    expect(a.keys).toHaveLength(2 + 3); // block 0, system, the message's 3 blocks
    expect(b.keys).toHaveLength(2 + 2);
    expect(shared(a.keys, b.keys)).toBe(3);
    // Exactly 4 KiB is one block.
    expect(keysOf(chat([{ role: "user", content: head }]))).toHaveLength(2);
  });

  it("cuts a plain prompt into 1 KiB blocks, the last partial one included; key i is the hash of the text up to block i", () => {
    const text = "x".repeat(2 * PROMPT_BLOCK_CHARS + 100);
    const full = prefixKeysOf(prompt(text));
    expect(full.keys).toHaveLength(1 + 3);
    // It ends in its partial block, and in its last full block (the next turn extends that one).
    expect(full.ends).toBe(2);
    expect(keysOf(prompt(text.slice(0, 2 * PROMPT_BLOCK_CHARS)))).toEqual(full.keys.slice(0, 3));
    expect(prefixKeysOf(prompt(text.slice(0, 2 * PROMPT_BLOCK_CHARS))).ends).toBe(1);
    const nextTurn = keysOf(prompt(`${text} and then the story went on`));
    expect(shared(full.keys, nextTurn)).toBe(3);
    const short = prefixKeysOf(prompt("Once upon a time"));
    expect(short.keys).toHaveLength(2);
    expect(short.ends).toBe(1);
    expect(prefixKeysOf(prompt("")).ends).toBe(0);
    // A prompt and a chat message with the same text are different requests.
    expect(shared(keysOf(prompt("Hi")), keysOf(chat([{ role: "user", content: "Hi" }])))).toBe(0);
  });

  it("hashes at most MAX_PREFIX_KEYS blocks", () => {
    const big = prefixKeysOf(prompt("y".repeat((MAX_PREFIX_KEYS + 10) * PROMPT_BLOCK_CHARS)));
    expect(big.keys).toHaveLength(MAX_PREFIX_KEYS);
    const many = Array.from({ length: MAX_PREFIX_KEYS + 5 }, (_, i): Message => ({ role: i % 2 ? "assistant" : "user", content: `m${i}` }));
    expect(keysOf(chat(many))).toHaveLength(MAX_PREFIX_KEYS);
  });
});
