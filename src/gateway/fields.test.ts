import { describe, it, expect } from "vitest";
import { SmmfError } from "../errors/SmmfError.js";
import { extraFields, invalidField, optionalBoolean, optionalNumber, optionalStop, requiredString } from "./fields.js";
import { PromptChars, requestCaps } from "./requestCaps.js";
import { expectInvalid } from "../../test/helpers/expectInvalid.js";

const invalid = (fn: () => unknown): SmmfError => expectInvalid(fn);

describe("invalidField", () => {
  it("builds an invalid_argument error naming the field", () => {
    const err = invalidField("foo", "bad foo");
    expect(err.code).toBe("invalid_argument");
    expect(err.param).toBe("foo");
    expect(err.message).toBe("bad foo");
  });
});

describe("requiredString", () => {
  it("returns a present string", () => {
    expect(requiredString({ model: "m1" }, "model")).toBe("m1");
  });

  it("rejects missing and null with a 'Missing' message", () => {
    for (const body of [{}, { model: null }, { model: undefined }]) {
      const err = invalid(() => requiredString(body, "model"));
      expect(err.param).toBe("model");
      expect(err.message).toContain("Missing required parameter");
    }
  });

  it("rejects empty strings and non-strings", () => {
    for (const value of ["", 1, true, ["m"], { m: 1 }]) {
      const err = invalid(() => requiredString({ model: value }, "model"));
      expect(err.param).toBe("model");
      expect(err.message).toContain("non-empty string");
    }
  });
});

describe("optionalBoolean", () => {
  it("returns undefined when absent or null", () => {
    expect(optionalBoolean({}, "stream")).toBeUndefined();
    expect(optionalBoolean({ stream: null }, "stream")).toBeUndefined();
  });

  it("returns booleans including false", () => {
    expect(optionalBoolean({ stream: true }, "stream")).toBe(true);
    expect(optionalBoolean({ stream: false }, "stream")).toBe(false);
  });

  it("rejects truthy non-booleans", () => {
    for (const value of ["true", 1, 0, {}, []]) {
      expect(invalid(() => optionalBoolean({ stream: value }, "stream")).param).toBe("stream");
    }
  });
});

describe("optionalNumber", () => {
  it("returns undefined when absent or null", () => {
    expect(optionalNumber({}, "x")).toBeUndefined();
    expect(optionalNumber({ x: null }, "x")).toBeUndefined();
  });

  it("returns numbers including 0", () => {
    expect(optionalNumber({ x: 0 }, "x")).toBe(0);
    expect(optionalNumber({ x: -1.5 }, "x")).toBe(-1.5);
  });

  it("rejects wrong types and non-finite numbers", () => {
    for (const value of ["1", true, [1], {}, NaN, Infinity, -Infinity]) {
      const err = invalid(() => optionalNumber({ x: value }, "x"));
      expect(err.param).toBe("x");
      expect(err.message).toContain("must be a number");
    }
  });

  it("enforces integer", () => {
    expect(optionalNumber({ x: 3 }, "x", { integer: true })).toBe(3);
    expect(invalid(() => optionalNumber({ x: 3.5 }, "x", { integer: true })).message).toContain("integer");
  });

  it("enforces inclusive min and max", () => {
    expect(optionalNumber({ x: 0 }, "x", { min: 0, max: 2 })).toBe(0);
    expect(optionalNumber({ x: 2 }, "x", { min: 0, max: 2 })).toBe(2);
    expect(invalid(() => optionalNumber({ x: -0.01 }, "x", { min: 0, max: 2 })).message).toContain("at least 0");
    expect(invalid(() => optionalNumber({ x: 2.01 }, "x", { min: 0, max: 2 })).message).toContain("at most 2");
  });
});

describe("optionalStop", () => {
  it("defaults to no stop sequences", () => {
    expect(optionalStop({})).toEqual([]);
    expect(optionalStop({ stop: null })).toEqual([]);
  });

  it("wraps a string", () => {
    expect(optionalStop({ stop: "\n" })).toEqual(["\n"]);
  });

  it("accepts an array of strings", () => {
    expect(optionalStop({ stop: ["a", "b"] })).toEqual(["a", "b"]);
    expect(optionalStop({ stop: [] })).toEqual([]);
  });

  it("rejects other types and mixed arrays", () => {
    for (const value of [1, true, { a: "b" }, ["a", 1], [null]]) {
      expect(invalid(() => optionalStop({ stop: value })).param).toBe("stop");
    }
  });
});


describe("extraFields", () => {
  const known = new Set(["model", "messages", "temperature"]);
  /** A chars counter that records what it is given. */
  const counter = () => {
    const added: string[] = [];
    return { added, add: (text: string) => void added.push(text) };
  };

  it("gives the fields SMMF does not read as a JSON object, leaving the known ones out", () => {
    const body = { model: "m", messages: [], temperature: 1, user: "u-1", metadata: { a: "b" }, logit_bias: { "5": 1 } };
    const json = extraFields(body, known, counter());
    expect(JSON.parse(json)).toEqual({ user: "u-1", metadata: { a: "b" }, logit_bias: { "5": 1 } });
  });

  it("gives \"\" when there are none, and counts nothing", () => {
    const c = counter();
    expect(extraFields({ model: "m", messages: [] }, known, c)).toBe("");
    expect(extraFields({}, known, c)).toBe("");
    expect(c.added).toEqual([]);
  });

  it("leaves out undefined fields but keeps null ones (the engine judges them)", () => {
    expect(extraFields({ model: "m", user: undefined }, known, counter())).toBe("");
    expect(JSON.parse(extraFields({ model: "m", echo: null }, known, counter()))).toEqual({ echo: null });
  });

  it("a field named __proto__ stays a field in the JSON", () => {
    const body = JSON.parse('{"model": "m", "__proto__": {"polluted": true}, "user": "u"}') as Record<string, unknown>;
    const json = extraFields(body, known, counter());
    expect(json).toContain('"__proto__":{"polluted":true}');
    const parsed = JSON.parse(json) as Record<string, unknown>;
    expect(Object.hasOwn(parsed, "__proto__")).toBe(true);
    expect(parsed.user).toBe("u");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("counts the JSON's characters as prompt", () => {
    const c = counter();
    const json = extraFields({ model: "m", user: "u-1" }, known, c);
    expect(c.added).toEqual([json]);
    const body = { model: "m", user: "x".repeat(100) };
    const size = extraFields(body, known, counter()).length;
    expect(() => extraFields(body, known, new PromptChars(requestCaps({ maxPromptChars: size }), "messages"))).not.toThrow();
    const err = invalid(() => extraFields(body, known, new PromptChars(requestCaps({ maxPromptChars: size - 1 }), "messages")));
    expect(err.param).toBe("messages");
  });
});
