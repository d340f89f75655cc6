import { describe, it, expect } from "vitest";
import { SmmfError } from "../errors/SmmfError.js";
import { choicesFromBody, MAX_CHOICES, samplingFromBody } from "./samplingFromBody.js";
import { expectInvalid } from "../../test/helpers/expectInvalid.js";

const rejects = (body: Record<string, unknown>, param: string, field?: "max_tokens" | "max_completion_tokens"): SmmfError =>
  expectInvalid(() => samplingFromBody(body, field), param);

describe("samplingFromBody", () => {
  it("leaves every optional field unset for an empty body", () => {
    const p = samplingFromBody({});
    expect(p.maxTokens).toBeUndefined();
    expect(p.temperature).toBeUndefined();
    expect(p.topP).toBeUndefined();
    expect(p.topK).toBeUndefined();
    expect(p.seed).toBeUndefined();
    expect(p.frequencyPenalty).toBeUndefined();
    expect(p.presencePenalty).toBeUndefined();
    expect(p.stop).toEqual([]);
  });

  it("copies valid fields", () => {
    const p = samplingFromBody({
      max_tokens: 16,
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
      seed: 7,
      stop: ["\n", "END"],
      frequency_penalty: -1,
      presence_penalty: 1.5,
    });
    expect(p.maxTokens).toBe(16);
    expect(p.temperature).toBe(0.5);
    expect(p.topP).toBe(0.9);
    expect(p.topK).toBe(40);
    expect(p.seed).toBe(7);
    expect(p.stop).toEqual(["\n", "END"]);
    expect(p.frequencyPenalty).toBe(-1);
    expect(p.presencePenalty).toBe(1.5);
  });

  it("leaves fields it does not read to the engine (n, logprobs, tools and others are read elsewhere)", () => {
    expect(() => samplingFromBody({ n: 3, logprobs: true, top_logprobs: 2, best_of: 3, echo: true, logit_bias: { "1": 1 }, tools: [{}] })).not.toThrow();
  });

  it("choicesFromBody: n from 1 to MAX_CHOICES, 1 when unset", () => {
    expect(choicesFromBody({})).toBe(1);
    expect(choicesFromBody({ n: null })).toBe(1);
    expect(choicesFromBody({ n: 2 })).toBe(2);
    expect(choicesFromBody({ n: MAX_CHOICES })).toBe(MAX_CHOICES);
    for (const n of [0, MAX_CHOICES + 1, "1", 1.5]) {
      expectInvalid(() => choicesFromBody({ n }), "n");
    }
  });

  it("rejects wrong types", () => {
    rejects({ temperature: "0.5" }, "temperature");
    rejects({ top_p: true }, "top_p");
    rejects({ max_tokens: "10" }, "max_tokens");
    rejects({ seed: "1" }, "seed");
    rejects({ top_k: [1] }, "top_k");
    rejects({ frequency_penalty: {} }, "frequency_penalty");
  });

  it("enforces ranges", () => {
    expect(samplingFromBody({ temperature: 0 }).temperature).toBe(0);
    expect(samplingFromBody({ temperature: 2 }).temperature).toBe(2);
    rejects({ temperature: -0.1 }, "temperature");
    rejects({ temperature: 2.1 }, "temperature");
    expect(samplingFromBody({ top_p: 1 }).topP).toBe(1);
    rejects({ top_p: 1.01 }, "top_p");
    rejects({ top_p: -0.5 }, "top_p");
    rejects({ top_k: -1 }, "top_k");
    rejects({ top_k: 2.5 }, "top_k");
    rejects({ frequency_penalty: 2.5 }, "frequency_penalty");
    rejects({ presence_penalty: -2.5 }, "presence_penalty");
    expect(samplingFromBody({ presence_penalty: -2 }).presencePenalty).toBe(-2);
  });

  it("rejects max_tokens of 0, negative, non-integer and above uint32", () => {
    rejects({ max_tokens: 0 }, "max_tokens");
    rejects({ max_tokens: -5 }, "max_tokens");
    rejects({ max_tokens: 1.5 }, "max_tokens");
    rejects({ max_tokens: 2 ** 32 }, "max_tokens");
    expect(samplingFromBody({ max_tokens: 1 }).maxTokens).toBe(1);
    expect(samplingFromBody({ max_tokens: 2 ** 32 - 1 }).maxTokens).toBe(2 ** 32 - 1);
  });

  it("reads max_completion_tokens when asked, naming that field in errors", () => {
    expect(samplingFromBody({ max_completion_tokens: 12 }, "max_completion_tokens").maxTokens).toBe(12);
    expect(samplingFromBody({ max_tokens: 12 }, "max_completion_tokens").maxTokens).toBeUndefined();
    rejects({ max_completion_tokens: 0 }, "max_completion_tokens", "max_completion_tokens");
  });

  it("accepts stop as a string or an array of up to 4 strings", () => {
    expect(samplingFromBody({ stop: "###" }).stop).toEqual(["###"]);
    expect(samplingFromBody({ stop: ["a", "b", "c", "d"] }).stop).toEqual(["a", "b", "c", "d"]);
  });

  it("rejects more than 4 stop sequences and non-string stops", () => {
    const err = rejects({ stop: ["a", "b", "c", "d", "e"] }, "stop");
    expect(err.message).toContain("at most 4");
    rejects({ stop: 5 }, "stop");
    rejects({ stop: ["a", 5] }, "stop");
  });

  it("wraps seeds into uint32", () => {
    expect(samplingFromBody({ seed: 0 }).seed).toBe(0);
    expect(samplingFromBody({ seed: -1 }).seed).toBe(4294967295);
    expect(samplingFromBody({ seed: -2 }).seed).toBe(4294967294);
    expect(samplingFromBody({ seed: 2 ** 32 }).seed).toBe(0);
    expect(samplingFromBody({ seed: 2 ** 32 + 5 }).seed).toBe(5);
    expect(samplingFromBody({ seed: -(2 ** 32) - 3 }).seed).toBe(2 ** 32 - 3);
    const big = samplingFromBody({ seed: 2 ** 40 + 123 }).seed!;
    expect(big).toBe(123);
    rejects({ seed: 1.5 }, "seed");
  });

  it("produces seeds that are always valid uint32 values", () => {
    for (const seed of [-12345678901, -1, 1, 99999999999, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
      const s = samplingFromBody({ seed }).seed!;
      expect(Number.isInteger(s)).toBe(true);
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThan(2 ** 32);
      expect(Math.abs((s - seed) % 2 ** 32)).toBe(0);
    }
  });
});
