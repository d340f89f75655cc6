import { describe, it, expect } from "vitest";
import { create } from "@bufbuild/protobuf";
import { GenerateStartSchema, SamplingParamsSchema, type GenerateStart } from "../gen/smmf/v1/inference_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { MAX_STOP_SEQUENCES, parseChat, parseGenerateStart, parseSampling } from "./parseGenerateStart.js";
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
