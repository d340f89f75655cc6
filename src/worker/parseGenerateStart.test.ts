import { describe, it, expect } from "vitest";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { GenerateStartSchema, ResponseFormat_Type, SamplingParamsSchema, type GenerateStart } from "../gen/smmf/v1/inference_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { MAX_N, MAX_STOP_SEQUENCES, MAX_TOP_LOGPROBS, parseChat, parseGenerateStart, parseSampling } from "./parseGenerateStart.js";
import { expectInvalid } from "../../test/helpers/expectInvalid.js";

function chatStart(messages: { role: string; content: string }[], params?: Parameters<typeof create<typeof SamplingParamsSchema>>[1]): GenerateStart {
  return create(GenerateStartSchema, {
    model: "m",
    input: { case: "chat", value: { messages } },
    params: params === undefined ? undefined : params,
  });
}

const rejects = (start: GenerateStart, param: string): SmmfError => expectInvalid(() => parseGenerateStart(start), param);

const hi = [{ role: "user", content: "hi" }];

describe("parseGenerateStart", () => {
  it("parses a chat request", () => {
    const { input, sampling } = parseGenerateStart(
      chatStart([
        { role: "system", content: "be nice" },
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello" },
      ]),
    );
    expect(input).toEqual({
      kind: "chat",
      messages: [
        { role: "system", content: "be nice" },
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello" },
      ],
    });
    expect(sampling).toEqual({});
  });

  it("passes a continuation (mid-stream failover) on", () => {
    const start = create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "Once" }, continuation: " upon" });
    expect(parseGenerateStart(start).input).toEqual({ kind: "prompt", prompt: "Once", continuation: " upon" });
  });

  it("parses a prompt request, including an empty prompt", () => {
    expect(parseGenerateStart(create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "Once" } })).input).toEqual({
      kind: "prompt",
      prompt: "Once",
    });
    expect(parseGenerateStart(create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "" } })).input).toEqual({
      kind: "prompt",
      prompt: "",
    });
  });

  it("requires a model", () => {
    rejects(create(GenerateStartSchema, { input: { case: "prompt", value: "x" } }), "model");
  });

  it("checks the model before the input", () => {
    rejects(create(GenerateStartSchema, {}), "model");
  });

  it("requires some input", () => {
    rejects(create(GenerateStartSchema, { model: "m" }), "messages");
  });

  it("rejects empty messages", () => {
    const err = rejects(chatStart([]), "messages");
    expect(err.message).toContain("at least one");
    rejects(create(GenerateStartSchema, { model: "m", input: { case: "chat", value: {} } }), "messages");
  });

  it("rejects a bad role naming its index", () => {
    const err = rejects(
      chatStart([
        { role: "user", content: "a" },
        { role: "function", content: "b" },
      ]),
      "messages[1].role",
    );
    expect(err.message).toContain("'function'");
    rejects(chatStart([{ role: "", content: "a" }]), "messages[0].role");
    rejects(chatStart([{ role: "User", content: "a" }]), "messages[0].role");
  });

  it("does not accept inherited object keys as roles", () => {
    rejects(chatStart([{ role: "constructor", content: "a" }]), "messages[0].role");
    rejects(chatStart([{ role: "toString", content: "a" }]), "messages[0].role");
  });

  it("maps developer to system", () => {
    const { input } = parseGenerateStart(chatStart([{ role: "developer", content: "rules" }, ...hi]));
    expect(input).toEqual({ kind: "chat", messages: [{ role: "system", content: "rules" }, { role: "user", content: "hi" }] });
  });

  it("copies sampling parameters", () => {
    const { sampling } = parseGenerateStart(
      chatStart(hi, { maxTokens: 5, temperature: 0.5, topP: 0.25, topK: 3, seed: 9, stop: ["x"], frequencyPenalty: 1, presencePenalty: -1 }),
    );
    expect(sampling).toEqual({
      maxTokens: 5,
      temperature: 0.5,
      topP: 0.25,
      topK: 3,
      seed: 9,
      stop: ["x"],
      frequencyPenalty: 1,
      presencePenalty: -1,
    });
  });

  it("leaves stop undefined when there are none", () => {
    expect(parseGenerateStart(chatStart(hi, { temperature: 1 })).sampling.stop).toBeUndefined();
  });

  it("rejects temperature out of [0, 2]", () => {
    expect(parseGenerateStart(chatStart(hi, { temperature: 2 })).sampling.temperature).toBe(2);
    expect(parseGenerateStart(chatStart(hi, { temperature: 0 })).sampling.temperature).toBe(0);
    rejects(chatStart(hi, { temperature: 2.5 }), "temperature");
    rejects(chatStart(hi, { temperature: -0.5 }), "temperature");
    rejects(chatStart(hi, { temperature: NaN }), "temperature");
  });

  it("rejects top_p and penalties out of range", () => {
    rejects(chatStart(hi, { topP: 1.5 }), "top_p");
    rejects(chatStart(hi, { topP: -0.1 }), "top_p");
    rejects(chatStart(hi, { frequencyPenalty: 3 }), "frequency_penalty");
    rejects(chatStart(hi, { presencePenalty: -3 }), "presence_penalty");
    rejects(chatStart(hi, { presencePenalty: Infinity }), "presence_penalty");
  });

  it("rejects max_tokens of 0", () => {
    rejects(chatStart(hi, { maxTokens: 0 }), "max_tokens");
    expect(parseGenerateStart(chatStart(hi, { maxTokens: 1 })).sampling.maxTokens).toBe(1);
  });

  it("rejects too many or empty stop sequences", () => {
    expect(MAX_STOP_SEQUENCES).toBe(4);
    expect(parseGenerateStart(chatStart(hi, { stop: ["a", "b", "c", "d"] })).sampling.stop).toEqual(["a", "b", "c", "d"]);
    rejects(chatStart(hi, { stop: ["a", "b", "c", "d", "e"] }), "stop");
    rejects(chatStart(hi, { stop: ["a", ""] }), "stop");
  });

  it("returns a copy of stop, not the proto's array", () => {
    const start = chatStart(hi, { stop: ["a"] });
    const { sampling } = parseGenerateStart(start);
    sampling.stop!.push("b");
    expect(start.params!.stop).toEqual(["a"]);
  });
});

describe("parseSampling / parseChat", () => {
  it("parseSampling(undefined) is empty", () => {
    expect(parseSampling(undefined)).toEqual({});
  });

  it("parseSampling with a default SamplingParams leaves everything unset", () => {
    const s = parseSampling(create(SamplingParamsSchema, {}));
    expect(s.maxTokens).toBeUndefined();
    expect(s.temperature).toBeUndefined();
    expect(s.stop).toBeUndefined();
  });

  it("parseChat(undefined) rejects with messages", () => {
    expect(() => parseChat(undefined)).toThrow(SmmfError);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Tools, response formats, n, logprobs, extra fields

type Init = Exclude<MessageInitShape<typeof GenerateStartSchema>, GenerateStart>;
type Message = { role: string; content?: string; toolCalls?: { id: string; name: string; arguments: string }[]; toolCallId?: string; name?: string };

/** A chat GenerateStart with these messages and more fields. */
function start(messages: Message[], more: Omit<Init, "model" | "input"> = {}): GenerateStart {
  return create(GenerateStartSchema, { model: "m", input: { case: "chat", value: { messages } }, ...more });
}

const assistantCalls = (...ids: string[]): Message => ({ role: "assistant", content: "", toolCalls: ids.map((id) => ({ id, name: "get_weather", arguments: '{"city":"Paris"}' })) });
const toolResult = (id: string, content = "21"): Message => ({ role: "tool", content, toolCallId: id });
const user = (content = "hi"): Message => ({ role: "user", content });
const weatherTool = { name: "get_weather", description: "Weather", parametersJson: '{"type":"object","properties":{"city":{"type":"string"}}}' };

describe("parseGenerateStart: tool messages", () => {
  it("carries tool calls and the tool messages that answer them", () => {
    const { input } = parseGenerateStart(start([user(), assistantCalls("c1", "c2"), toolResult("c2", "3"), { ...toolResult("c1"), name: "get_weather" }, { role: "assistant", content: "done" }, user("bye")]));
    expect(input.kind === "chat" && input.messages).toEqual([
      { role: "user", content: "hi" },
      {
        role: "assistant",
        content: "",
        toolCalls: [
          { id: "c1", name: "get_weather", arguments: '{"city":"Paris"}' },
          { id: "c2", name: "get_weather", arguments: '{"city":"Paris"}' },
        ],
      },
      { role: "tool", content: "3", toolCallId: "c2" },
      { role: "tool", content: "21", toolCallId: "c1", name: "get_weather" },
      { role: "assistant", content: "done" },
      { role: "user", content: "bye" },
    ]);
  });

  it("a request may end with tool results (the model answers from them)", () => {
    const { input } = parseGenerateStart(start([user(), assistantCalls("c1"), toolResult("c1")]));
    expect(input.kind === "chat" && input.messages.at(-1)).toEqual({ role: "tool", content: "21", toolCallId: "c1" });
  });

  it("a tool message must answer a call of an earlier assistant message", () => {
    const err = rejects(start([user(), toolResult("c1")]), "messages[1].tool_call_id");
    expect(err.message).toContain("'c1'");
    rejects(start([user(), assistantCalls("c1"), toolResult("c9")]), "messages[2].tool_call_id");
    rejects(start([user(), assistantCalls("c1"), toolResult("")]), "messages[2].tool_call_id");
    rejects(start([toolResult("c1"), user()]), "messages[0].tool_call_id");
  });

  it("a call is answered once", () => {
    rejects(start([user(), assistantCalls("c1"), toolResult("c1"), toolResult("c1")]), "messages[3].tool_call_id");
  });

  it("a call of an older turn cannot be answered after a newer one", () => {
    rejects(start([user(), assistantCalls("c1"), toolResult("c1"), user("more"), assistantCalls("c2"), toolResult("c2"), toolResult("c1")]), "messages[6].tool_call_id");
  });

  it("every call is answered before the next user or assistant turn, or the end, naming the calling message", () => {
    let err = rejects(start([user(), assistantCalls("c1", "c2"), toolResult("c1"), user("next")]), "messages[1].tool_calls");
    expect(err.message).toContain("'c2'");
    err = rejects(start([user(), assistantCalls("c1"), { role: "assistant", content: "x" }]), "messages[1].tool_calls");
    expect(err.message).toContain("'c1'");
    rejects(start([user(), assistantCalls("c1"), toolResult("c1"), assistantCalls("c2")]), "messages[3].tool_calls");
    rejects(start([user(), assistantCalls("c1"), { role: "system", content: "s" }, toolResult("c1")]), "messages[1].tool_calls");
  });

  it("call ids are unique and not empty within a message", () => {
    rejects(start([user(), assistantCalls("c1", "c1")]), "messages[1].tool_calls[1].id");
    rejects(start([user(), assistantCalls("")]), "messages[1].tool_calls[0].id");
    rejects(start([user(), assistantCalls("a", "b", "")]), "messages[1].tool_calls[2].id");
  });

  it("a later turn may reuse an id once its call is answered", () => {
    expect(() => parseGenerateStart(start([user(), assistantCalls("c1"), toolResult("c1"), user(), assistantCalls("c1"), toolResult("c1")]))).not.toThrow();
  });
});

describe("parseGenerateStart: tools and tool_choice", () => {
  it("parses tools: parameters JSON into an object, description only when set", () => {
    const { input } = parseGenerateStart(start([user()], { tools: [{ ...weatherTool, strict: true }, { name: "now" }] }));
    expect(input.tools).toEqual([
      { name: "get_weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } } }, strict: true },
      { name: "now", strict: false },
    ]);
    expect(input.toolChoice).toBeUndefined();
    expect(input.parallelToolCalls).toBeUndefined();
  });

  it("no tools: input.tools unset", () => {
    expect(parseGenerateStart(start([user()])).input.tools).toBeUndefined();
  });

  it("checks tool names and duplicates", () => {
    for (const name of ["", "has space", "a.b", "x".repeat(65), "é"]) rejects(start([user()], { tools: [{ name: "ok" }, { name }] }), "tools[1].function.name");
    const err = rejects(start([user()], { tools: [{ name: "f" }, { name: "g" }, { name: "f" }] }), "tools[2].function.name");
    expect(err.message).toContain("twice");
  });

  it("parameters must be a JSON object", () => {
    for (const parametersJson of ["[]", '"s"', "1", "null", "{not json"]) {
      rejects(start([user()], { tools: [{ name: "f", parametersJson }] }), "tools[0].function.parameters");
    }
  });

  it("tools need chat messages", () => {
    rejects(create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "Once" }, tools: [{ name: "f" }] }), "tools");
  });

  it("reads tool_choice modes and a named function; passes parallel_tool_calls", () => {
    const tools = [weatherTool];
    for (const mode of ["auto", "none", "required"] as const) {
      expect(parseGenerateStart(start([user()], { tools, toolChoice: { choice: { case: "mode", value: mode } } })).input.toolChoice).toEqual({ mode });
    }
    expect(parseGenerateStart(start([user()], { tools, toolChoice: { choice: { case: "functionName", value: "get_weather" } } })).input.toolChoice).toEqual({ mode: "function", name: "get_weather" });
    expect(parseGenerateStart(start([user()], { toolChoice: { choice: { case: "mode", value: "none" } } })).input.toolChoice).toEqual({ mode: "none" });
    expect(parseGenerateStart(start([user()], { toolChoice: {} })).input.toolChoice).toBeUndefined();
    expect(parseGenerateStart(start([user()], { tools, parallelToolCalls: false })).input.parallelToolCalls).toBe(false);
  });

  it("refuses a bad tool_choice", () => {
    rejects(start([user()], { tools: [weatherTool], toolChoice: { choice: { case: "mode", value: "any" } } }), "tool_choice");
    rejects(start([user()], { toolChoice: { choice: { case: "mode", value: "required" } } }), "tool_choice");
    const err = rejects(start([user()], { tools: [weatherTool], toolChoice: { choice: { case: "functionName", value: "other" } } }), "tool_choice");
    expect(err.message).toContain("'other'");
    rejects(start([user()], { toolChoice: { choice: { case: "functionName", value: "get_weather" } } }), "tool_choice");
  });
});

describe("parseGenerateStart: response_format", () => {
  it("text is kept as asked (an upstream gets it as sent); unspecified is unset", () => {
    expect(parseGenerateStart(start([user()], { responseFormat: { type: ResponseFormat_Type.TEXT } })).input.responseFormat).toEqual({ type: "text" });
    expect(parseGenerateStart(start([user()], { responseFormat: {} })).input.responseFormat).toBeUndefined();
    expect(parseGenerateStart(start([user()])).input.responseFormat).toBeUndefined();
  });

  it("json_object", () => {
    expect(parseGenerateStart(start([user()], { responseFormat: { type: ResponseFormat_Type.JSON_OBJECT } })).input.responseFormat).toEqual({ type: "json_object" });
  });

  it("json_schema with its schema parsed", () => {
    const schema = { type: "object", properties: { a: { type: "integer" } } };
    const format = (more: object) => parseGenerateStart(start([user()], { responseFormat: { type: ResponseFormat_Type.JSON_SCHEMA, name: "Answer", ...more } })).input.responseFormat;
    expect(format({ schemaJson: JSON.stringify(schema), strict: true })).toEqual({ type: "json_schema", name: "Answer", schema, strict: true });
    expect(format({})).toEqual({ type: "json_schema", name: "Answer", schema: {}, strict: false });
  });

  it("refuses a bad name, a schema that is not a JSON object, an unknown type", () => {
    const bad = (more: object, param: string) => rejects(start([user()], { responseFormat: { type: ResponseFormat_Type.JSON_SCHEMA, name: "A", ...more } }), param);
    bad({ name: "" }, "response_format.json_schema.name");
    bad({ name: "a b" }, "response_format.json_schema.name");
    for (const schemaJson of ["[]", "true", "{", '"x"']) bad({ schemaJson }, "response_format.json_schema.schema");
    rejects(start([user()], { responseFormat: { type: 9 as ResponseFormat_Type } }), "response_format.type");
  });
});

describe("parseGenerateStart: n, logprobs, extra fields", () => {
  it(`n: unset for 0 and 1, set up to ${MAX_N}`, () => {
    expect(MAX_N).toBe(128);
    expect(parseGenerateStart(start([user()], { n: 0 })).sampling.n).toBeUndefined();
    expect(parseGenerateStart(start([user()], { n: 1 })).sampling.n).toBeUndefined();
    expect(parseGenerateStart(start([user()], { n: 2 })).sampling.n).toBe(2);
    expect(parseGenerateStart(start([user()], { n: MAX_N })).sampling.n).toBe(MAX_N);
    rejects(start([user()], { n: MAX_N + 1 }), "n");
  });

  it(`logprobs with top_logprobs up to ${MAX_TOP_LOGPROBS}`, () => {
    expect(MAX_TOP_LOGPROBS).toBe(20);
    expect(parseGenerateStart(start([user()], { logprobs: true })).sampling).toMatchObject({ logprobs: true, topLogprobs: 0 });
    expect(parseGenerateStart(start([user()], { logprobs: true, topLogprobs: 20 })).sampling).toMatchObject({ logprobs: true, topLogprobs: 20 });
    rejects(start([user()], { logprobs: true, topLogprobs: 21 }), "top_logprobs");
    const plain = parseGenerateStart(start([user()])).sampling;
    expect(plain.logprobs).toBeUndefined();
    expect(plain.topLogprobs).toBeUndefined();
  });

  it("top_logprobs only with logprobs", () => {
    const err = rejects(start([user()], { topLogprobs: 3 }), "top_logprobs");
    expect(err.message).toContain("logprobs");
  });

  it("extra_json is parsed into sampling.extra", () => {
    const { sampling } = parseGenerateStart(start([user()], { extraJson: '{"user":"u-1","logit_bias":{"5":1},"__proto__":{"x":1}}' }));
    expect(sampling.extra).toMatchObject({ user: "u-1", logit_bias: { "5": 1 } });
    expect(Object.hasOwn(sampling.extra!, "__proto__")).toBe(true);
    expect(parseGenerateStart(start([user()])).sampling.extra).toBeUndefined();
  });

  it("extra_json must be a JSON object", () => {
    for (const extraJson of ["[]", "1", "null", "{user:1}"]) rejects(start([user()], { extraJson }), "extra_json");
  });

  it("works for prompts too (no params needed)", () => {
    const { sampling } = parseGenerateStart(create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "Once" }, n: 3, logprobs: true, topLogprobs: 2 }));
    expect(sampling).toEqual({ n: 3, logprobs: true, topLogprobs: 2 });
  });
});
