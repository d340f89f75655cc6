import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { GenerateStartSchema, ResponseFormat_Type, type GenerateStart } from "../gen/smmf/v1/inference_pb.js";
import { canContinue } from "./InferenceRouter.js";

type Init = Exclude<MessageInitShape<typeof GenerateStartSchema>, GenerateStart>;
const start = (more: Omit<Init, "model" | "input"> = {}) => create(GenerateStartSchema, { model: "m", input: { case: "prompt", value: "Once" }, ...more });

describe("canContinue (mid-stream failover may continue the text already sent)", () => {
  it("plain text generations can be continued: no response format, unspecified, or text", () => {
    expect(canContinue(start())).toBe(true);
    expect(canContinue(start({ responseFormat: {} }))).toBe(true);
    expect(canContinue(start({ responseFormat: { type: ResponseFormat_Type.TEXT } }))).toBe(true);
  });

  it("n of 0 or 1 is one answer and can be continued; n > 1 cannot", () => {
    expect(canContinue(start({ n: 0 }))).toBe(true);
    expect(canContinue(start({ n: 1 }))).toBe(true);
    expect(canContinue(start({ n: 2 }))).toBe(false);
    expect(canContinue(start({ n: 16, responseFormat: { type: ResponseFormat_Type.TEXT } }))).toBe(false);
  });

  it("JSON under a grammar cannot be continued: json_object, json_schema", () => {
    expect(canContinue(start({ responseFormat: { type: ResponseFormat_Type.JSON_OBJECT } }))).toBe(false);
    expect(canContinue(start({ responseFormat: { type: ResponseFormat_Type.JSON_SCHEMA, name: "A", schemaJson: "{}" } }))).toBe(false);
  });

  it("tools and logprobs alone do not prevent it (the router stops at the first tool-call delta instead)", () => {
    expect(canContinue(start({ tools: [{ name: "f" }], logprobs: true, topLogprobs: 2 }))).toBe(true);
  });
});
