import { describe, expect, it } from "vitest";
import { SmmfError } from "../errors/SmmfError.js";
import type { GenerationInput, SamplingOptions } from "./Engine.js";
import { PROXY_PRESETS } from "./proxyPresets.js";
import { checkUnsupportedFields, upstreamRequestBody } from "./upstreamRequestBody.js";

const body = (input: GenerationInput, sampling: SamplingOptions = {}, presetName = "openai-compatible") =>
  upstreamRequestBody(input, sampling, { model: "up-model", preset: PROXY_PRESETS[presetName], presetName });

const chat = (extra: Partial<Extract<GenerationInput, { kind: "chat" }>> = {}): GenerationInput => ({ kind: "chat", messages: [{ role: "user", content: "hi" }], ...extra });

function refused(fn: () => void): SmmfError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SmmfError) return err;
    throw err;
  }
  throw new Error("not refused");
}

describe("upstreamRequestBody", () => {
  it("sends OpenAI's chat length limit as max_completion_tokens (its reasoning models refuse max_tokens); completions and other upstreams get max_tokens", () => {
    const openaiChat = body(chat(), { maxTokens: 7 }, "openai");
    expect(openaiChat.max_completion_tokens).toBe(7);
    expect(openaiChat).not.toHaveProperty("max_tokens");
    expect(body({ kind: "prompt", prompt: "x" }, { maxTokens: 7 }, "openai").max_tokens).toBe(7);
    for (const preset of ["vllm", "azure", "ollama", "llama-server", "tgi", "openai-compatible"]) {
      const b = body(chat(), { maxTokens: 7 }, preset);
      expect(b.max_tokens, preset).toBe(7);
      expect(b, preset).not.toHaveProperty("max_completion_tokens");
    }
  });

  it("a plain chat request: model, stream with usage, messages, sampling; nothing it was not asked for", () => {
    expect(body(chat(), { maxTokens: 5, temperature: 0, topP: 0.9, topK: 4, seed: 7, stop: ["\n"], frequencyPenalty: 0.5, presencePenalty: 0 })).toEqual({
      model: "up-model",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 5,
      temperature: 0,
      top_p: 0.9,
      seed: 7,
      stop: ["\n"],
      frequency_penalty: 0.5,
    });
    expect(body(chat(), { topK: 4 }, "vllm")).toMatchObject({ top_k: 4 });
  });

  it("messages with tool calls, tool results and names, in OpenAI's shapes", () => {
    const b = body(
      chat({
        messages: [
          { role: "system", content: "be brief" },
          { role: "user", content: "weather?", name: "ann" },
          { role: "assistant", content: "", toolCalls: [{ id: "call_1", name: "get_weather", arguments: '{"city":"Oslo"}' }, { id: "call_2", name: "now", arguments: "{}" }] },
          { role: "tool", content: '{"temp":3}', toolCallId: "call_1" },
          { role: "tool", content: "12:00", toolCallId: "call_2" },
          { role: "assistant", content: "Let me check", toolCalls: [{ id: "call_3", name: "now", arguments: "{}" }] },
        ],
      }),
    );
    expect(b.messages).toEqual([
      { role: "system", content: "be brief" },
      { role: "user", content: "weather?", name: "ann" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } },
          { id: "call_2", type: "function", function: { name: "now", arguments: "{}" } },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: '{"temp":3}' },
      { role: "tool", tool_call_id: "call_2", content: "12:00" },
      { role: "assistant", content: "Let me check", tool_calls: [{ id: "call_3", type: "function", function: { name: "now", arguments: "{}" } }] },
    ]);
  });

  it("tools, tool_choice (modes and a named function), parallel_tool_calls", () => {
    const tools = [
      { name: "get_weather", description: "Weather of a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }, strict: true },
      { name: "now", strict: false },
    ];
    expect(body(chat({ tools, toolChoice: { mode: "required" }, parallelToolCalls: false }))).toMatchObject({
      tools: [
        { type: "function", function: { name: "get_weather", description: "Weather of a city", parameters: tools[0].parameters, strict: true } },
        { type: "function", function: { name: "now" } },
      ],
      tool_choice: "required",
      parallel_tool_calls: false,
    });
    for (const mode of ["auto", "none"] as const) expect(body(chat({ tools, toolChoice: { mode } })).tool_choice).toBe(mode);
    expect(body(chat({ tools, toolChoice: { mode: "function", name: "now" } })).tool_choice).toEqual({ type: "function", function: { name: "now" } });
    const none = body(chat());
    for (const field of ["tools", "tool_choice", "parallel_tool_calls", "response_format", "n", "logprobs", "top_logprobs"]) expect(none).not.toHaveProperty(field);
  });

  it("response_format: text, json_object, json_schema with its name, schema and strictness", () => {
    expect(body(chat({ responseFormat: { type: "text" } })).response_format).toEqual({ type: "text" });
    expect(body(chat({ responseFormat: { type: "json_object" } })).response_format).toEqual({ type: "json_object" });
    const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"], additionalProperties: false };
    expect(body(chat({ responseFormat: { type: "json_schema", name: "thing", schema, strict: true } })).response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "thing", schema, strict: true },
    });
    expect(body({ kind: "prompt", prompt: "x", responseFormat: { type: "json_object" } }).response_format).toEqual({ type: "json_object" });
  });

  it("logprobs: chat takes logprobs + top_logprobs, completions an integer (the number of alternatives)", () => {
    expect(body(chat(), { logprobs: true, topLogprobs: 3 })).toMatchObject({ logprobs: true, top_logprobs: 3 });
    expect(body(chat(), { logprobs: true })).toMatchObject({ logprobs: true });
    expect(body(chat(), { logprobs: true })).not.toHaveProperty("top_logprobs");
    expect(body(chat(), { logprobs: false, topLogprobs: 0 })).not.toHaveProperty("logprobs");
    expect(body({ kind: "prompt", prompt: "x" }, { logprobs: true, topLogprobs: 2 }).logprobs).toBe(2);
    expect(body({ kind: "prompt", prompt: "x" }, { logprobs: true, topLogprobs: 0 }).logprobs).toBe(0);
    expect(body({ kind: "prompt", prompt: "x" }, { logprobs: true }).logprobs).toBe(0);
    expect(body({ kind: "prompt", prompt: "x" }, { logprobs: false })).not.toHaveProperty("logprobs");
  });

  it("n goes as asked (1 and more); 0 means one and is not sent", () => {
    expect(body(chat(), { n: 3 }).n).toBe(3);
    expect(body(chat(), { n: 1 }).n).toBe(1);
    expect(body(chat(), { n: 0 })).not.toHaveProperty("n");
  });

  it("extra fields go as sent; the fields SMMF sets itself win over them", () => {
    const extra = {
      user: "u-1",
      metadata: { team: "a", nested: { x: [1, 2] } },
      logit_bias: { "50256": -100 },
      repetition_penalty: 1.1,
      model: "client-model",
      stream: false,
      stream_options: { include_usage: false },
      messages: [{ role: "user", content: "injected" }],
      prompt: "injected",
      max_tokens: 999,
    };
    const b = body(chat(), { maxTokens: 5, extra });
    expect(b).toMatchObject({ user: "u-1", metadata: extra.metadata, logit_bias: extra.logit_bias, repetition_penalty: 1.1 });
    expect(b).toMatchObject({ model: "up-model", stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "hi" }], max_tokens: 5 });
    expect(b).not.toHaveProperty("prompt");
    const p = body({ kind: "prompt", prompt: "Once" }, { extra: { echo: false, suffix: "end", messages: [] } });
    expect(p).toMatchObject({ prompt: "Once", echo: false, suffix: "end" });
    expect(p).not.toHaveProperty("messages");
    // A field the client sent but SMMF only sets in some cases stays as sent.
    expect(body(chat(), { extra: { max_tokens: 9 } }).max_tokens).toBe(9);
  });

  it("a continuation is the last assistant message; vLLM is told to continue it", () => {
    expect(body(chat({ continuation: "Once upon" })).messages).toEqual([
      { role: "user", content: "hi" },
      { role: "assistant", content: "Once upon" },
    ]);
    expect(body(chat({ continuation: "Once upon" }), {}, "vllm")).toMatchObject({ continue_final_message: true, add_generation_prompt: false });
    expect(body({ kind: "prompt", prompt: "The dog", continuation: " ran" }).prompt).toBe("The dog ran");
  });
});

describe("per-preset exceptions", () => {
  it("TGI and Ollama: n > 1 is refused naming the field; n 1 is not sent", () => {
    for (const preset of ["tgi", "ollama"]) {
      const err = refused(() => checkUnsupportedFields({ n: 2 }, PROXY_PRESETS[preset], preset));
      expect(err).toMatchObject({ code: "invalid_argument", param: "n", message: `'n' is not supported by the ${preset} upstream` });
      expect(() => checkUnsupportedFields({ n: 1 }, PROXY_PRESETS[preset], preset)).not.toThrow();
      expect(() => checkUnsupportedFields({}, PROXY_PRESETS[preset], preset)).not.toThrow();
      expect(body(chat(), { n: 1 }, preset)).not.toHaveProperty("n");
    }
    for (const preset of ["openai", "azure", "vllm", "llama-server", "openai-compatible"]) {
      expect(() => checkUnsupportedFields({ n: 4 }, PROXY_PRESETS[preset], preset)).not.toThrow();
    }
  });

  it("llama-server: echo, best_of and suffix are refused when they ask for something, and left out when neutral", () => {
    const preset = PROXY_PRESETS["llama-server"];
    for (const [field, value] of [["echo", true], ["best_of", 3], ["suffix", "tail"]] as const) {
      const err = refused(() => checkUnsupportedFields({ extra: { [field]: value } }, preset, "llama-server"));
      expect(err).toMatchObject({ code: "invalid_argument", param: field, message: `'${field}' is not supported by the llama-server upstream` });
      // Other presets pass them as sent.
      expect(body({ kind: "prompt", prompt: "x" }, { extra: { [field]: value } }, "vllm")[field]).toEqual(value);
    }
    const neutral = { echo: false, best_of: 1, suffix: "", user: "u" };
    expect(() => checkUnsupportedFields({ extra: neutral }, preset, "llama-server")).not.toThrow();
    const b = body({ kind: "prompt", prompt: "x" }, { extra: neutral }, "llama-server");
    expect(b).toMatchObject({ user: "u" });
    for (const field of ["echo", "best_of", "suffix"]) expect(b).not.toHaveProperty(field);
  });
});
