import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CountTokensRequestSchema, GenerateStartSchema } from "../gen/smmf/v1/inference_pb.js";
import { expectInvalid } from "../../test/helpers/expectInvalid.js";
import { checkCountTokens, checkEmbedInputs, checkGenerateStart, checkStop, DEFAULT_REQUEST_CAPS, MAX_STOP_STRINGS, requestCaps } from "./requestCaps.js";
import { parseChatRequest } from "./chatCompletions.js";
import { parseCompletionRequest } from "./completions.js";
import { parseEmbeddingsRequest } from "./embeddings.js";

const caps = requestCaps({ maxMessages: 3, maxPromptChars: 10, maxStopChars: 2 });

describe("requestCaps", () => {
  it("fills in the defaults for caps not set or not positive", () => {
    expect(requestCaps()).toEqual(DEFAULT_REQUEST_CAPS);
    expect(requestCaps({ maxMessages: 0, maxPromptChars: Number.NaN, maxStopChars: 7.9 })).toEqual({ ...DEFAULT_REQUEST_CAPS, maxStopChars: 7 });
  });

  it("REST: counts messages before reading them, sums characters over messages and text parts", () => {
    const chat = (messages: unknown) => () => parseChatRequest({ model: "m", messages }, "id", caps);
    expect(expectInvalid(chat([{ role: "user", content: "a" }, {}, {}, 5]), "messages").message).toMatch(/at most 3/);
    expectInvalid(chat([{ role: "user", content: "12345" }, { role: "user", content: [{ type: "text", text: "123456" }] }]), "messages");
    expect(parseChatRequest({ model: "m", messages: [{ role: "user", content: "12345" }, { role: "user", content: "12345" }] }, "id", caps).start.model).toBe("m");
    expectInvalid(() => parseCompletionRequest({ model: "m", prompt: "x".repeat(11) }, "id", caps), "prompt");
    expectInvalid(() => parseEmbeddingsRequest({ model: "m", input: ["123456", "123456"] }, "id", caps), "input");
  });

  it("stop: at most MAX_STOP_STRINGS strings of at most maxStopChars", () => {
    expect(MAX_STOP_STRINGS).toBe(4);
    expect(() => checkStop(["ab", "cd"], caps)).not.toThrow();
    expectInvalid(() => checkStop(["abc"], caps), "stop");
    expectInvalid(() => checkStop(["a", "b", "c", "d", "e"], caps), "stop");
    expectInvalid(() => parseCompletionRequest({ model: "m", prompt: "x", stop: "abc" }, "id", caps), "stop");
    // A lone surrogate cannot travel as UTF-8 to a worker: the caller's error, not a 500.
    expect(expectInvalid(() => checkStop(["\ud800"], caps), "stop").message).toMatch(/lone surrogate/);
    expectInvalid(() => checkStop(["a\udfff"], caps), "stop");
    expect(() => checkStop(["\ud83d\ude00"], caps)).not.toThrow();
  });

  it("RPC: Generate (continuation included), CountTokens and Embed", () => {
    expectInvalid(() => checkGenerateStart(create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "123456" }, continuation: "12345" }), caps), "prompt");
    expectInvalid(() => checkGenerateStart(create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "1" }, params: { stop: ["abc"] } }), caps), "stop");
    expectInvalid(() => checkGenerateStart(create(GenerateStartSchema, { model: "m", input: { case: "chat", value: { messages: [{}, {}, {}, {}] } } }), caps), "messages");
    expectInvalid(() => checkCountTokens(create(CountTokensRequestSchema, { model: "m", input: { case: "chat", value: { messages: [{ content: "12345678901" }] } } }), caps), "messages");
    expectInvalid(() => checkEmbedInputs(Array.from({ length: 2049 }, () => ""), DEFAULT_REQUEST_CAPS), "input");
    expect(() => checkEmbedInputs(["12345", "12345"], caps)).not.toThrow();
  });
});
