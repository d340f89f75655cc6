import { describe, expect, it } from "vitest";
import type { GenerationEvent } from "./Engine.js";
import { finishReasonOf, parseLogprobs, UpstreamStreamError, UpstreamStreamParser } from "./upstreamStreamParser.js";

/** All delta events of a stream of chunks (objects are written out as JSON). */
function feed(parser: UpstreamStreamParser, chunks: (object | string)[]): GenerationEvent[] {
  return chunks.flatMap((c) => parser.accept(typeof c === "string" ? c : JSON.stringify(c)));
}

const chatChunk = (delta: object, extra: object = {}) => ({ id: "c", object: "chat.completion.chunk", choices: [{ index: 0, delta, logprobs: null, finish_reason: null, ...extra }] });
const bytes = (s: string) => [...Buffer.from(s, "utf8")];

function kindOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof UpstreamStreamError) return err.kind;
    throw err;
  }
  return "none";
}

describe("UpstreamStreamParser: content", () => {
  it("one delta per content chunk, index set; the role-only opening and the finish-only closing chunk are no tokens; usage from the upstream", () => {
    const parser = new UpstreamStreamParser("chat");
    const events = feed(parser, [
      chatChunk({ role: "assistant", content: "" }),
      chatChunk({ content: "Hello" }),
      chatChunk({ content: "" }),
      chatChunk({ content: " there" }),
      chatChunk({}, { finish_reason: "length" }),
      { choices: [], usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } },
    ]);
    expect(events).toEqual([
      { type: "delta", text: "Hello", tokenCount: 1, index: 0 },
      { type: "delta", text: "", tokenCount: 1, index: 0 },
      { type: "delta", text: " there", tokenCount: 1, index: 0 },
    ]);
    expect(parser.finished).toBe(true);
    expect(parser.done(99, 5)).toEqual({ type: "done", finishReason: "length", promptTokens: 7, completionTokens: 3, engineTimeMs: 5 });
  });

  it("without usage: the prompt estimate and the counted tokens", () => {
    const parser = new UpstreamStreamParser("prompt");
    expect(feed(parser, [{ choices: [{ index: 0, text: "a", finish_reason: null }] }, { choices: [{ index: 0, text: "b", finish_reason: "stop" }] }])).toEqual([
      { type: "delta", text: "a", tokenCount: 1, index: 0 },
      { type: "delta", text: "b", tokenCount: 1, index: 0 },
    ]);
    expect(parser.done(12, 1)).toMatchObject({ finishReason: "stop", promptTokens: 12, completionTokens: 2 });
  });

  it("vLLM's stop_reason names the stop string that ended answer 0 (not a stop token's id, not another finish)", () => {
    const stopped = new UpstreamStreamParser("chat");
    feed(stopped, [{ choices: [{ index: 0, delta: { content: "a" }, finish_reason: "stop", stop_reason: "THE END" }] }]);
    expect(stopped.done(1, 1).stopSequence).toBe("THE END");
    const byToken = new UpstreamStreamParser("chat");
    feed(byToken, [{ choices: [{ index: 0, delta: { content: "a" }, finish_reason: "stop", stop_reason: 2 }] }]);
    expect(byToken.done(1, 1)).not.toHaveProperty("stopSequence");
    const plain = new UpstreamStreamParser("chat");
    feed(plain, [{ choices: [{ index: 0, delta: { content: "a" }, finish_reason: "length", stop_reason: null }] }]);
    expect(plain.done(1, 1)).not.toHaveProperty("stopSequence");
  });

  it("finish reasons: tool_calls, content_filter, function_call as tool_calls, length, stop; unknown ones as stop", () => {
    expect(["stop", "length", "tool_calls", "function_call", "content_filter", "eos", null, undefined].map(finishReasonOf)).toEqual([
      "stop",
      "length",
      "tool_calls",
      "tool_calls",
      "content_filter",
      "stop",
      "stop",
      "stop",
    ]);
    const parser = new UpstreamStreamParser("chat");
    feed(parser, [chatChunk({ content: "x" }), chatChunk({}, { finish_reason: "content_filter" })]);
    expect(parser.done(0, 0).finishReason).toBe("content_filter");
  });

  it("is not finished until every answer has its finish reason", () => {
    const parser = new UpstreamStreamParser("chat", 2);
    feed(parser, [chatChunk({ content: "x" }, { finish_reason: "stop" })]);
    expect(parser.finished).toBe(false);
    feed(parser, [{ choices: [{ index: 1, delta: { content: "y" }, finish_reason: "length" }] }]);
    expect(parser.finished).toBe(true);
  });
});

describe("UpstreamStreamParser: tool calls and refusals", () => {
  it("OpenAI's tool call stream: id and name first, arguments in pieces, two parallel calls; finish tool_calls", () => {
    const parser = new UpstreamStreamParser("chat");
    const events = feed(parser, [
      chatChunk({ role: "assistant", content: null, tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }], refusal: null }),
      chatChunk({ tool_calls: [{ index: 0, function: { arguments: '{"ci' } }] }),
      chatChunk({ tool_calls: [{ index: 0, function: { arguments: 'ty":"Oslo"}' } }] }),
      chatChunk({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "now", arguments: "" } }] }),
      chatChunk({ tool_calls: [{ index: 1, function: { arguments: "{}" } }] }),
      chatChunk({}, { finish_reason: "tool_calls" }),
    ]);
    expect(events).toEqual([
      { type: "delta", text: "", tokenCount: 0, index: 0, toolCalls: [{ index: 0, id: "call_a", name: "get_weather", arguments: "" }], otherTokens: 1 },
      { type: "delta", text: "", tokenCount: 0, index: 0, toolCalls: [{ index: 0, arguments: '{"ci' }], otherTokens: 1 },
      { type: "delta", text: "", tokenCount: 0, index: 0, toolCalls: [{ index: 0, arguments: 'ty":"Oslo"}' }], otherTokens: 1 },
      { type: "delta", text: "", tokenCount: 0, index: 0, toolCalls: [{ index: 1, id: "call_b", name: "now", arguments: "" }], otherTokens: 1 },
      { type: "delta", text: "", tokenCount: 0, index: 0, toolCalls: [{ index: 1, arguments: "{}" }], otherTokens: 1 },
    ]);
    expect(parser.done(3, 0)).toMatchObject({ finishReason: "tool_calls", completionTokens: 5 });
  });

  it("an upstream that repeats id and name in every piece: each goes out once; arguments sent as a JSON value are written out; empty pieces dropped", () => {
    const parser = new UpstreamStreamParser("chat");
    const events = feed(parser, [
      chatChunk({ content: "", tool_calls: [{ index: 0, id: "c1", type: "function", function: { name: "f", arguments: '{"a":' } }] }),
      chatChunk({ content: "", tool_calls: [{ index: 0, id: "c1", type: "function", function: { name: "f", arguments: "1}" } }] }),
      chatChunk({ tool_calls: [{ index: 0, function: {} }] }),
      chatChunk({ tool_calls: [{ id: "c2", function: { name: "g", arguments: { b: 2 } } }] }),
    ]);
    expect(events.map((e) => (e.type === "delta" ? e.toolCalls : undefined))).toEqual([
      [{ index: 0, id: "c1", name: "f", arguments: '{"a":' }],
      [{ index: 0, arguments: "1}" }],
      // position 0 without an index: call 0 again, with a new id and name
      [{ index: 0, id: "c2", name: "g", arguments: '{"b":2}' }],
    ]);
  });

  it("content and a tool call in one chunk: the content token is counted, not another", () => {
    const parser = new UpstreamStreamParser("chat");
    expect(feed(parser, [chatChunk({ content: "Sure.", tool_calls: [{ index: 0, id: "c", function: { name: "f", arguments: "{}" } }] })])).toEqual([
      { type: "delta", text: "Sure.", tokenCount: 1, index: 0, toolCalls: [{ index: 0, id: "c", name: "f", arguments: "{}" }] },
    ]);
  });

  it("a refusal in pieces", () => {
    const parser = new UpstreamStreamParser("chat");
    const events = feed(parser, [
      chatChunk({ role: "assistant", content: null, refusal: "" }),
      chatChunk({ refusal: "I can't" }),
      chatChunk({ refusal: " help with that." }),
      chatChunk({}, { finish_reason: "stop" }),
    ]);
    expect(events).toEqual([
      { type: "delta", text: "", tokenCount: 0, index: 0, refusal: "I can't", otherTokens: 1 },
      { type: "delta", text: "", tokenCount: 0, index: 0, refusal: " help with that.", otherTokens: 1 },
    ]);
    expect(parser.done(0, 0)).toMatchObject({ finishReason: "stop", completionTokens: 2 });
  });
});

describe("UpstreamStreamParser: logprobs", () => {
  it("chat logprobs.content: token, logprob, bytes and top_logprobs as sent; missing bytes are the token's UTF-8", () => {
    const parser = new UpstreamStreamParser("chat");
    const entry = { token: "Hé", logprob: -0.25, bytes: [72, 195, 169], top_logprobs: [{ token: "Hé", logprob: -0.25, bytes: [72, 195, 169] }, { token: "Hi", logprob: -1.5, bytes: null }] };
    const events = feed(parser, [chatChunk({ content: "Hé" }, { logprobs: { content: [entry], refusal: null } })]);
    expect(events).toEqual([
      {
        type: "delta",
        text: "Hé",
        tokenCount: 1,
        index: 0,
        logprobs: [{ token: "Hé", logprob: -0.25, bytes: [72, 195, 169], top: [{ token: "Hé", logprob: -0.25, bytes: [72, 195, 169], top: [] }, { token: "Hi", logprob: -1.5, bytes: bytes("Hi"), top: [] }] }],
      },
    ]);
  });

  it("a chunk with several tokens' logprobs counts that many tokens; one with logprobs but empty text (a partial character) is a token", () => {
    const parser = new UpstreamStreamParser("chat");
    const lp = (token: string) => ({ token, logprob: -1, bytes: bytes(token), top_logprobs: [] });
    const events = feed(parser, [chatChunk({ content: "ab" }, { logprobs: { content: [lp("a"), lp("b")] } }), chatChunk({ content: "" }, { logprobs: { content: [lp("\ufffd")] } })]);
    expect(events.map((e) => (e.type === "delta" ? [e.text, e.tokenCount, e.logprobs?.length] : []))).toEqual([
      ["ab", 2, 2],
      ["", 1, 1],
    ]);
  });

  it("legacy completions logprobs: tokens, token_logprobs, top_logprobs objects → TokenLogprobs with UTF-8 bytes", () => {
    expect(parseLogprobs({ tokens: [" dog", "é"], token_logprobs: [-0.5, -2], top_logprobs: [{ " dog": -0.5, " cat": -1.25 }, null], text_offset: [3, 7] })).toEqual([
      { token: " dog", logprob: -0.5, bytes: bytes(" dog"), top: [{ token: " dog", logprob: -0.5, bytes: bytes(" dog") }, { token: " cat", logprob: -1.25, bytes: bytes(" cat") }] },
      { token: "é", logprob: -2, bytes: [195, 169], top: [] },
    ]);
    const parser = new UpstreamStreamParser("prompt");
    const events = feed(parser, [{ choices: [{ index: 0, text: " dog", logprobs: { tokens: [" dog"], token_logprobs: [-0.5], top_logprobs: [{ " dog": -0.5 }], text_offset: [0] }, finish_reason: null }] }]);
    expect(events).toEqual([{ type: "delta", text: " dog", tokenCount: 1, index: 0, logprobs: [{ token: " dog", logprob: -0.5, bytes: bytes(" dog"), top: [{ token: " dog", logprob: -0.5, bytes: bytes(" dog") }] }] }]);
    expect(parseLogprobs(null)).toEqual([]);
    expect(parseLogprobs({ content: null, refusal: null })).toEqual([]);
  });
});

describe("UpstreamStreamParser: n > 1", () => {
  it("interleaved choices: each delta with its index, each answer's finish reason, tokens summed over answers", () => {
    const parser = new UpstreamStreamParser("chat", 2);
    const events = feed(parser, [
      { choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }, { index: 1, delta: { role: "assistant", content: "" }, finish_reason: null }] },
      { choices: [{ index: 1, delta: { content: "B1" }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { content: "A1" }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { content: "A2" }, finish_reason: null }, { index: 1, delta: {}, finish_reason: "stop" }] },
      { choices: [{ index: 0, delta: {}, finish_reason: "length" }] },
    ]);
    expect(events).toEqual([
      { type: "delta", text: "B1", tokenCount: 1, index: 1 },
      { type: "delta", text: "A1", tokenCount: 1, index: 0 },
      { type: "delta", text: "A2", tokenCount: 1, index: 0 },
    ]);
    expect(parser.done(4, 0)).toEqual({ type: "done", finishReason: "length", choiceFinishReasons: ["length", "stop"], promptTokens: 4, completionTokens: 3, engineTimeMs: 0 });
  });

  it("more choices than asked for are reported too", () => {
    const parser = new UpstreamStreamParser("prompt");
    feed(parser, [{ choices: [{ index: 1, text: "x", finish_reason: "stop" }] }]);
    expect(parser.finished).toBe(false);
    feed(parser, [{ choices: [{ index: 0, text: "y", finish_reason: "stop" }] }]);
    expect(parser.done(0, 0).choiceFinishReasons).toEqual(["stop", "stop"]);
  });
});

describe("UpstreamStreamParser: what it refuses", () => {
  it("malformed data: not JSON, not an object, a non-string content, bad choices, bad tool calls, bad logprobs", () => {
    const bad = [
      "{not json",
      "[1,2]",
      "42",
      JSON.stringify(chatChunk({ content: 42 })),
      JSON.stringify({ choices: {} }),
      JSON.stringify({ choices: ["x"] }),
      JSON.stringify({ choices: [{ index: -1, delta: { content: "a" } }] }),
      JSON.stringify({ choices: [{ index: 100000, delta: { content: "a" } }] }),
      JSON.stringify(chatChunk({ tool_calls: {} })),
      JSON.stringify(chatChunk({ tool_calls: [{ index: 0, id: 5, function: { name: "f" } }] })),
      JSON.stringify(chatChunk({ tool_calls: [{ index: 0, function: "f" }] })),
      JSON.stringify(chatChunk({ content: "a" }, { logprobs: { content: [{ logprob: -1 }] } })),
      JSON.stringify(chatChunk({ content: "a" }, { logprobs: { content: [{ token: "a", logprob: "x" }] } })),
    ];
    for (const data of bad) expect([data, kindOf(() => new UpstreamStreamParser("chat").accept(data))]).toEqual([data, "malformed"]);
    expect(kindOf(() => new UpstreamStreamParser("prompt").accept(JSON.stringify({ choices: [{ text: {} }] })))).toBe("malformed");
  });

  it("an error object in the stream is the upstream failing; error: null is not", () => {
    expect(kindOf(() => new UpstreamStreamParser("chat").accept(JSON.stringify({ error: { message: "boom" } })))).toBe("failed");
    expect(kindOf(() => new UpstreamStreamParser("chat").accept(JSON.stringify({ ...chatChunk({ content: "a" }), error: null })))).toBe("none");
  });

  it("chunks without choices (Azure's prompt filter results, usage-only) give no events", () => {
    const parser = new UpstreamStreamParser("chat");
    expect(feed(parser, [{ choices: [], prompt_filter_results: [{ prompt_index: 0 }] }, { usage: { prompt_tokens: 1, completion_tokens: 0 } }, { choices: null }])).toEqual([]);
  });
});
