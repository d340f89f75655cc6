import { describe, expect, it } from "vitest";
import { expectInvalid } from "../../test/helpers/expectInvalid.js";
import { ResponseFormat_Type } from "../gen/smmf/v1/inference_pb.js";
import { PromptChars, requestCaps } from "./requestCaps.js";
import { MAX_TOOLS, parseResponseFormat, parseToolChoice, parseTools } from "./toolFields.js";

const chars = (maxPromptChars = 1_000_000) => new PromptChars(requestCaps({ maxPromptChars }), "messages");
const tool = (name: string, extra: Record<string, unknown> = {}) => ({ type: "function", function: { name, ...extra } });
const weatherParams = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };

describe("parseTools", () => {
  it("no tools: absent or null", () => {
    expect(parseTools(undefined, chars())).toEqual([]);
    expect(parseTools(null, chars())).toEqual([]);
    expect(parseTools([], chars())).toEqual([]);
  });

  it("reads function tools: name, description, parameters as JSON text, strict", () => {
    const tools = parseTools([tool("get_weather", { description: "Weather of a city", parameters: weatherParams, strict: true }), tool("now")], chars());
    expect(tools).toHaveLength(2);
    expect(tools[0]).toMatchObject({ name: "get_weather", description: "Weather of a city", strict: true });
    expect(JSON.parse(tools[0].parametersJson)).toEqual(weatherParams);
    expect(tools[1]).toMatchObject({ name: "now", description: "", parametersJson: "", strict: false });
  });

  it("takes null optional members as absent", () => {
    expect(parseTools([tool("f", { description: null, parameters: null, strict: null })], chars())[0]).toMatchObject({ name: "f", description: "", parametersJson: "", strict: false });
  });

  it("accepts names of 1 to 64 letters, digits, '_' and '-'", () => {
    expect(parseTools([tool("a"), tool("A-b_9"), tool("x".repeat(64))], chars()).map((t) => t.name)).toEqual(["a", "A-b_9", "x".repeat(64)]);
  });

  it(`takes at most ${MAX_TOOLS} tools`, () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => tool(`f${i}`));
    expect(parseTools(many(MAX_TOOLS), chars())).toHaveLength(MAX_TOOLS);
    expectInvalid(() => parseTools(many(MAX_TOOLS + 1), chars()), "tools");
  });

  it("names the exact param of each error", () => {
    const cases: [unknown, string][] = [
      [{ type: "function" }, "tools"],
      ["get_weather", "tools"],
      [[tool("ok"), "f"], "tools[1]"],
      [[null], "tools[0]"],
      [[[]], "tools[0]"],
      [[{ type: "code_interpreter" }], "tools[0].type"],
      [[{ function: { name: "f" } }], "tools[0].type"],
      [[{ type: "function" }], "tools[0].function"],
      [[{ type: "function", function: "f" }], "tools[0].function"],
      [[tool("ok"), { type: "function", function: {} }], "tools[1].function.name"],
      [[tool("")], "tools[0].function.name"],
      [[tool("has space")], "tools[0].function.name"],
      [[tool("dot.ted")], "tools[0].function.name"],
      [[tool("é")], "tools[0].function.name"],
      [[tool("x".repeat(65))], "tools[0].function.name"],
      [[{ type: "function", function: { name: 5 } }], "tools[0].function.name"],
      [[tool("f", { description: 1 })], "tools[0].function.description"],
      [[tool("f", { parameters: [] })], "tools[0].function.parameters"],
      [[tool("f", { parameters: "{}" })], "tools[0].function.parameters"],
      [[tool("f", { parameters: true })], "tools[0].function.parameters"],
      [[tool("f", { strict: "true" })], "tools[0].function.strict"],
    ];
    for (const [value, param] of cases) expectInvalid(() => parseTools(value, chars()), param);
  });

  it("refuses a name declared twice, naming the second", () => {
    const err = expectInvalid(() => parseTools([tool("f"), tool("g"), tool("f")], chars()), "tools[2].function.name");
    expect(err.message).toContain("'f'");
    expect(err.message).toContain("twice");
  });

  it("counts the schemas' and descriptions' characters as prompt", () => {
    const value = [tool("f", { description: "abc", parameters: weatherParams })];
    const size = JSON.stringify(weatherParams).length + "abc".length;
    expect(parseTools(value, chars(size))).toHaveLength(1);
    const err = expectInvalid(() => parseTools(value, chars(size - 1)), "messages");
    expect(err.message).toContain(`${size - 1} characters`);
    // The count goes on from what the messages already used.
    const used = chars(size);
    used.add("x");
    expectInvalid(() => parseTools(value, used), "messages");
  });
});

describe("parseToolChoice", () => {
  const tools = parseTools([tool("get_weather"), tool("now")], chars());

  it("absent or null: unset", () => {
    expect(parseToolChoice(undefined, tools)).toBeUndefined();
    expect(parseToolChoice(null, tools)).toBeUndefined();
  });

  it("reads the modes; 'auto' and 'none' need no tools", () => {
    for (const mode of ["auto", "none", "required"]) expect(parseToolChoice(mode, tools)?.choice).toEqual({ case: "mode", value: mode });
    expect(parseToolChoice("auto", [])?.choice).toEqual({ case: "mode", value: "auto" });
    expect(parseToolChoice("none", [])?.choice).toEqual({ case: "mode", value: "none" });
  });

  it("'required' without tools is refused", () => {
    const err = expectInvalid(() => parseToolChoice("required", []), "tool_choice");
    expect(err.message).toContain("tools");
  });

  it("a named function must be among the tools", () => {
    expect(parseToolChoice({ type: "function", function: { name: "now" } }, tools)?.choice).toEqual({ case: "functionName", value: "now" });
    const err = expectInvalid(() => parseToolChoice({ type: "function", function: { name: "other" } }, tools), "tool_choice");
    expect(err.message).toContain("'other'");
    expectInvalid(() => parseToolChoice({ type: "function", function: { name: "now" } }, []), "tool_choice");
  });

  it("refuses other shapes", () => {
    for (const value of ["any", "Auto", 1, true, [], {}, { type: "function" }, { type: "function", function: {} }, { function: { name: "now" } }, { type: "tool", function: { name: "now" } }]) {
      expectInvalid(() => parseToolChoice(value, tools), "tool_choice");
    }
  });
});

describe("parseResponseFormat", () => {
  const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"], additionalProperties: false };

  it("absent or null: unset", () => {
    expect(parseResponseFormat(undefined, chars())).toBeUndefined();
    expect(parseResponseFormat(null, chars())).toBeUndefined();
  });

  it("reads text and json_object", () => {
    expect(parseResponseFormat({ type: "text" }, chars())?.type).toBe(ResponseFormat_Type.TEXT);
    expect(parseResponseFormat({ type: "json_object" }, chars())?.type).toBe(ResponseFormat_Type.JSON_OBJECT);
  });

  it("reads json_schema: name, schema as JSON text, strict", () => {
    const f = parseResponseFormat({ type: "json_schema", json_schema: { name: "Answer", schema, strict: true } }, chars())!;
    expect(f).toMatchObject({ type: ResponseFormat_Type.JSON_SCHEMA, name: "Answer", strict: true });
    expect(JSON.parse(f.schemaJson)).toEqual(schema);
    const loose = parseResponseFormat({ type: "json_schema", json_schema: { name: "Any" } }, chars())!;
    expect(loose).toMatchObject({ type: ResponseFormat_Type.JSON_SCHEMA, name: "Any", schemaJson: "{}", strict: false });
  });

  it("names the exact param of each error", () => {
    const cases: [unknown, string][] = [
      ["json_object", "response_format"],
      [[], "response_format"],
      [{}, "response_format.type"],
      [{ type: "yaml" }, "response_format.type"],
      [{ type: "json_schema" }, "response_format.json_schema"],
      [{ type: "json_schema", json_schema: "Answer" }, "response_format.json_schema"],
      [{ type: "json_schema", json_schema: { schema } }, "response_format.json_schema.name"],
      [{ type: "json_schema", json_schema: { name: "has space", schema } }, "response_format.json_schema.name"],
      [{ type: "json_schema", json_schema: { name: "x".repeat(65), schema } }, "response_format.json_schema.name"],
      [{ type: "json_schema", json_schema: { name: "A", schema: [] } }, "response_format.json_schema.schema"],
      [{ type: "json_schema", json_schema: { name: "A", schema: "{}" } }, "response_format.json_schema.schema"],
      [{ type: "json_schema", json_schema: { name: "A", schema, strict: 1 } }, "response_format.json_schema.strict"],
    ];
    for (const [value, param] of cases) expectInvalid(() => parseResponseFormat(value, chars()), param);
  });

  it("counts the schema's characters as prompt", () => {
    const value = { type: "json_schema", json_schema: { name: "A", schema } };
    const size = JSON.stringify(schema).length;
    expect(parseResponseFormat(value, chars(size))).toBeDefined();
    expectInvalid(() => parseResponseFormat(value, chars(size - 1)), "messages");
  });
});
