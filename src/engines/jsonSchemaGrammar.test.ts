import { Ajv } from "ajv";
import type { GbnfJsonSchema, Llama, LlamaContext, LlamaGrammar, LlamaModel } from "node-llama-cpp";
import { zodFunction, zodResponseFormat } from "openai/helpers/zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { testModelPath } from "../../test/helpers/testModel.js";
import { SmmfError } from "../errors/SmmfError.js";
import { getSharedLlama } from "./getSharedLlama.js";
import { GrammarCache, toGrammarSchema } from "./jsonSchemaGrammar.js";

const RF = "response_format.json_schema.schema";
const ANY = { oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "array" }, { type: "object", additionalProperties: true }] };

const convert = (schema: unknown, strict = true, param = RF): unknown => toGrammarSchema(schema, param, strict);

/** Expects invalid_argument naming `param`; returns the message. */
function refusal(schema: unknown, param: string, strict = true, base = RF): string {
  try {
    toGrammarSchema(schema, base, strict);
  } catch (err) {
    expect(err).toBeInstanceOf(SmmfError);
    expect((err as SmmfError).code).toBe("invalid_argument");
    expect((err as SmmfError).param).toBe(param);
    return (err as SmmfError).message;
  }
  throw new Error(`expected ${JSON.stringify(schema)} to be refused`);
}

// ---------------------------------------------------------------------------------------------------------------
// Schemas as the OpenAI SDK's zod helpers produce them (zod 4)

const Address = z.object({ street: z.string(), zip: z.string().nullable() }).meta({ id: "Address", description: "an address" });
const Person = z.object({
  name: z.string(),
  age: z.number().int(),
  nick: z.string().nullable(),
  role: z.enum(["admin", "user"]),
  tags: z.array(z.string()),
  home: Address,
  alt: Address.nullable(),
  lit: z.literal("x"),
  du: z.discriminatedUnion("kind", [z.object({ kind: z.literal("a"), x: z.string() }), z.object({ kind: z.literal("b"), y: z.number() })]),
});

describe("toGrammarSchema: zod schemas from openai/helpers/zod", () => {
  it("converts zodResponseFormat output (safe-integer bounds, nullable, enum, const, definitions, discriminated union)", () => {
    const schema = zodResponseFormat(Person, "person").json_schema.schema;
    expect(schema).toMatchObject({ $schema: "http://json-schema.org/draft-07/schema#", properties: { age: { minimum: -9007199254740991 } } });
    expect(convert(schema)).toEqual({
      type: "object",
      properties: {
        name: { type: "string" },
        age: { type: "integer" },
        nick: { type: ["string", "null"] },
        role: { enum: ["admin", "user"] },
        tags: { type: "array", items: { type: "string" } },
        home: { $ref: "#/$defs/Address" },
        alt: { oneOf: [{ $ref: "#/$defs/Address" }, { type: "null" }] },
        lit: { const: "x" },
        du: {
          oneOf: [
            { type: "object", properties: { kind: { const: "a" }, x: { type: "string" } } },
            { type: "object", properties: { kind: { const: "b" }, y: { type: "number" } } },
          ],
        },
      },
      $defs: { Address: { type: "object", properties: { street: { type: "string" }, zip: { type: ["string", "null"] } } } },
    });
  });

  it("converts zodFunction parameters (anyOf of enum and null)", () => {
    const tool = zodFunction({ name: "get_weather", parameters: z.object({ city: z.string(), unit: z.enum(["c", "f"]).nullable() }) });
    expect(convert(tool.function.parameters, true, "tools[0].function.parameters")).toEqual({
      type: "object",
      properties: { city: { type: "string" }, unit: { oneOf: [{ enum: ["c", "f"] }, { type: "null" }] } },
    });
  });

  it("converts a recursive zod schema ($ref: '#') into a root $defs entry", () => {
    const Tree: z.ZodType = z.object({
      v: z.string().max(8),
      get kids() {
        return z.array(Tree).max(2);
      },
    });
    const schema = zodResponseFormat(Tree, "tree").json_schema.schema;
    const node = { type: "object", properties: { v: { type: "string", maxLength: 8 }, kids: { type: "array", items: { $ref: "#/$defs/root" }, maxItems: 2 } } };
    expect(convert(schema)).toEqual({ ...node, $defs: { root: node } });
  });

  it("converts plain z.toJSONSchema output (draft-07 and 2020-12): tuples, records, optional fields", () => {
    const shape = { tup: z.tuple([z.string(), z.number()]), rec: z.record(z.string(), z.number()), opt: z.string().optional(), d: z.string().default("q") };
    const expected = {
      type: "object",
      properties: {
        tup: { type: "array", prefixItems: [{ type: "string" }, { type: "number" }], minItems: 2, maxItems: 2 },
        rec: { type: "object", additionalProperties: { type: "number" } },
        opt: { type: "string" },
        d: { type: "string" },
      },
    };
    expect(convert(z.toJSONSchema(z.object(shape), { target: "draft-7" }))).toEqual(expected);
    expect(convert(z.toJSONSchema(z.object(shape)))).toEqual(expected);
  });

  it("refuses what zod adds that the grammar cannot check: email/datetime patterns, positive ints", () => {
    const email = zodResponseFormat(z.object({ email: z.string().email() }), "e").json_schema.schema;
    refusal(email, `${RF}.properties.email.pattern`);
    const when = zodResponseFormat(z.object({ when: z.string().datetime() }), "w").json_schema.schema;
    refusal(when, `${RF}.properties.when.pattern`);
    expect(convert(when, false)).toEqual({ type: "object", properties: { when: { type: "string", format: "date-time" } } });
    const pos = zodResponseFormat(z.object({ n: z.number().int().positive() }), "p").json_schema.schema;
    expect(refusal(pos, `${RF}.properties.n.exclusiveMinimum`)).toBe(
      `${RF}.properties.n: 'exclusiveMinimum' cannot be enforced on this model (llama.cpp grammar); remove it or set strict: false`,
    );
    expect(convert(pos, false)).toEqual({ type: "object", properties: { n: { type: "integer" } } });
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("toGrammarSchema: hand-written schemas", () => {
  it("drops annotations, maps anyOf and definitions/$ref, infers object from properties", () => {
    const schema = {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      $id: "https://example.com/s",
      title: "Shape",
      description: "d",
      $comment: "c",
      definitions: { Point: { title: "P", type: "object", properties: { x: { type: "number", default: 0 }, y: { type: "number", examples: [1] } }, required: ["x", "y"] } },
      properties: {
        shape: {
          anyOf: [
            { type: "object", properties: { kind: { const: "circle" }, c: { $ref: "#/definitions/Point" }, r: { type: "number", readOnly: true } } },
            { type: "object", properties: { kind: { const: "poly" }, pts: { type: "array", items: { $ref: "#/definitions/Point" }, deprecated: false } } },
          ],
        },
        label: { type: ["string", "null"], writeOnly: true },
      },
      required: ["shape"],
    };
    const point = { type: "object", properties: { x: { type: "number" }, y: { type: "number" } } };
    expect(convert(schema)).toEqual({
      type: "object",
      properties: {
        shape: {
          oneOf: [
            { type: "object", properties: { kind: { const: "circle" }, c: { $ref: "#/$defs/Point" }, r: { type: "number" } } },
            { type: "object", properties: { kind: { const: "poly" }, pts: { type: "array", items: { $ref: "#/$defs/Point" } } } },
          ],
        },
        label: { type: ["string", "null"] },
      },
      $defs: { Point: point },
    });
  });

  it("maps $defs refs, nested local pointers and a single-member allOf (pydantic style)", () => {
    const schema = {
      type: "object",
      $defs: { Id: { type: "string", maxLength: 10 } },
      properties: { a: { allOf: [{ $ref: "#/$defs/Id" }], description: "x" }, b: { $ref: "#/properties/a" }, c: { $ref: "#/$defs/Id" } },
    };
    expect(convert({ type: "string", allOf: [{ title: "t" }, true] })).toEqual({ type: "string" });
    expect(convert(schema)).toEqual({
      type: "object",
      properties: { a: { $ref: "#/$defs/Id" }, b: { $ref: "#/$defs/properties/a" }, c: { $ref: "#/$defs/Id" } },
      $defs: { Id: { type: "string", maxLength: 10 }, "properties/a": { $ref: "#/$defs/Id" } },
    });
  });

  it("{} and true mean any JSON value; {type: object} means any object", () => {
    expect(convert({})).toEqual(ANY);
    expect(convert(true)).toEqual(ANY);
    expect(convert({ description: "anything" })).toEqual(ANY);
    expect(convert({ type: "object" })).toEqual({ type: "object", additionalProperties: true });
    expect(convert({ type: "object", additionalProperties: { type: "integer" }, maxProperties: 3 })).toEqual({
      type: "object",
      additionalProperties: { type: "integer" },
      maxProperties: 3,
    });
    expect(convert({ type: "object", additionalProperties: false })).toEqual({ type: "object" });
    expect(convert({ type: "array" })).toEqual({ type: "array" });
  });

  it("splits type arrays with object or constrained strings into alternatives", () => {
    expect(convert({ type: ["object", "null"], properties: { a: { type: "boolean" } } })).toEqual({
      oneOf: [{ type: "null" }, { type: "object", properties: { a: { type: "boolean" } } }],
    });
    expect(convert({ type: ["string", "integer", "null"], maxLength: 4 })).toEqual({
      oneOf: [{ type: ["integer", "null"] }, { type: "string", maxLength: 4 }],
    });
    expect(convert({ type: ["integer", "number"] })).toEqual({ type: "number" });
  });

  it("turns enums and consts (also of objects and arrays) into literals, filtered by the other keywords", () => {
    expect(convert({ type: "string", enum: ["a", "bb", "ccc", 4], maxLength: 2 })).toEqual({ enum: ["a", "bb"] });
    expect(convert({ enum: ["a", 1, null, true] })).toEqual({ enum: ["a", 1, null, true] });
    expect(convert({ type: "integer", enum: [1, 2.5, 3], minimum: 2 })).toEqual({ const: 3 });
    expect(convert({ const: { a: [1, "x"] } })).toEqual({
      type: "object",
      properties: { a: { type: "array", prefixItems: [{ const: 1 }, { const: "x" }], minItems: 2, maxItems: 2 } },
    });
    expect(convert({ enum: ["a", []] })).toEqual({ oneOf: [{ const: "a" }, { type: "array", maxItems: 0 }] });
  });

  it("enumerates small integer ranges and ignores bounds at or beyond ±MAX_SAFE_INTEGER", () => {
    expect(convert({ type: "integer", minimum: 1, maximum: 5 })).toEqual({ enum: [1, 2, 3, 4, 5] });
    expect(convert({ type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 10, multipleOf: 3 })).toEqual({ enum: [3, 6, 9] });
    expect(convert({ type: "integer", minimum: 7, maximum: 7.5 })).toEqual({ const: 7 });
    expect(convert({ type: "integer", minimum: -1e300, maximum: Number.MAX_SAFE_INTEGER, multipleOf: 1 })).toEqual({ type: "integer" });
  });

  it("maps draft-07 tuples, prefixItems and item bounds", () => {
    expect(convert({ type: "array", items: [{ type: "string" }, { type: "boolean" }], additionalItems: false })).toEqual({
      type: "array",
      prefixItems: [{ type: "string" }, { type: "boolean" }],
      maxItems: 2,
    });
    expect(convert({ type: "array", prefixItems: [{ type: "string" }], items: { type: "number" }, minItems: 1, maxItems: 3 })).toEqual({
      type: "array",
      prefixItems: [{ type: "string" }],
      items: { type: "number" },
      minItems: 1,
      maxItems: 3,
    });
    // maxItems below the tuple length: only the first items are emitted.
    expect(convert({ type: "array", prefixItems: [{ type: "string" }, { type: "null" }], maxItems: 1 })).toEqual({
      type: "array",
      prefixItems: [{ type: "string" }],
      maxItems: 1,
    });
    expect(convert({ type: "array", items: { type: "string" }, uniqueItems: true, maxItems: 1 })).toEqual({ type: "array", items: { type: "string" }, maxItems: 1 });
  });

  it("handles required keys without a declared schema, maxProperties and false property schemas", () => {
    expect(convert({ type: "object", required: ["id"], additionalProperties: { type: "string" } })).toEqual({
      type: "object",
      properties: { id: { type: "string" } },
    });
    expect(convert({ type: "object", properties: { a: { type: "string" }, b: { type: "string" }, c: { type: "string" } }, required: ["c"], maxProperties: 2 })).toEqual({
      type: "object",
      properties: { a: { type: "string" }, c: { type: "string" } },
    });
    expect(convert({ type: "object", properties: { a: false, b: { type: "null" } } })).toEqual({ type: "object", properties: { b: { type: "null" } } });
  });

  it("accepts a oneOf whose alternatives are provably disjoint", () => {
    const schema = {
      oneOf: [
        { type: "null" },
        { type: "object", properties: { t: { const: "a" } }, required: ["t"] },
        { type: "object", properties: { u: { type: "string" } }, required: ["u"], additionalProperties: false },
        { enum: [1, 2] },
        { type: "string", format: "date" },
      ],
    };
    expect(convert(schema)).toEqual({
      oneOf: [
        { type: "null" },
        { type: "object", properties: { t: { const: "a" } } },
        { type: "object", properties: { u: { type: "string" } } },
        { enum: [1, 2] },
        { type: "string", format: "date" },
      ],
    });
  });

  it("keeps date, time and date-time formats", () => {
    for (const format of ["date", "time", "date-time"]) expect(convert({ type: "string", format })).toEqual({ type: "string", format });
    expect(convert({ type: "string", format: "date", maxLength: 10 })).toEqual({ type: "string", format: "date" });
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("toGrammarSchema: strict refusals name the keyword, non-strict drops it", () => {
  const cases: { name: string; schema: unknown; param: string; dropped: unknown }[] = [
    {
      name: "minimum with a real bound",
      schema: { type: "object", properties: { age: { type: "integer", minimum: 0 } } },
      param: `${RF}.properties.age.minimum`,
      dropped: { type: "object", properties: { age: { type: "integer" } } },
    },
    { name: "maximum on a number", schema: { type: "number", maximum: 1.5 }, param: `${RF}.maximum`, dropped: { type: "number" } },
    { name: "multipleOf", schema: { type: "integer", multipleOf: 5 }, param: `${RF}.multipleOf`, dropped: { type: "integer" } },
    { name: "pattern", schema: { type: "string", pattern: "^a+$" }, param: `${RF}.pattern`, dropped: { type: "string" } },
    { name: "format email", schema: { type: "string", format: "email" }, param: `${RF}.format`, dropped: { type: "string" } },
    {
      name: "a length that conflicts with a format",
      schema: { type: "string", format: "date-time", maxLength: 20 },
      param: `${RF}.maxLength`,
      dropped: { type: "string", format: "date-time" },
    },
    {
      name: "allOf with several members",
      schema: { allOf: [{ type: "string" }, { maxLength: 3 }] },
      param: `${RF}.allOf`,
      dropped: ANY,
    },
    { name: "not", schema: { type: "string", not: { const: "a" } }, param: `${RF}.not`, dropped: { type: "string" } },
    { name: "if/then/else", schema: { type: "string", if: { const: "a" } }, param: `${RF}.if`, dropped: { type: "string" } },
    {
      name: "patternProperties",
      schema: { type: "object", patternProperties: { "^x": { type: "string" } } },
      param: `${RF}.patternProperties`,
      dropped: { type: "object", additionalProperties: true },
    },
    {
      name: "uniqueItems",
      schema: { type: "array", items: { type: "integer" }, uniqueItems: true },
      param: `${RF}.uniqueItems`,
      dropped: { type: "array", items: { type: "integer" } },
    },
    { name: "contains", schema: { type: "array", contains: { const: 1 } }, param: `${RF}.contains`, dropped: { type: "array" } },
    {
      name: "dependentRequired",
      schema: { type: "object", properties: { a: { type: "null" } }, dependentRequired: { a: ["b"] } },
      param: `${RF}.dependentRequired`,
      dropped: { type: "object", properties: { a: { type: "null" } } },
    },
    {
      name: "unevaluatedProperties",
      schema: { type: "object", properties: { a: { type: "null" } }, unevaluatedProperties: false },
      param: `${RF}.unevaluatedProperties`,
      dropped: { type: "object", properties: { a: { type: "null" } } },
    },
    {
      name: "non-trivial propertyNames",
      schema: { type: "object", propertyNames: { maxLength: 3 } },
      param: `${RF}.propertyNames`,
      dropped: { type: "object", additionalProperties: true },
    },
    { name: "a remote $ref", schema: { $ref: "https://example.com/s.json" }, param: `${RF}.$ref`, dropped: ANY },
    { name: "an unknown keyword", schema: { type: "string", nullable: true }, param: `${RF}.nullable`, dropped: { type: "string" } },
    { name: "a keyword beside $ref", schema: { $defs: { A: { type: "null" } }, $ref: "#/$defs/A", minimum: 1 }, param: `${RF}.minimum`, dropped: { $ref: "#/$defs/A", $defs: { A: { type: "null" } } } },
    {
      name: "a keyword beside anyOf",
      schema: { type: "object", anyOf: [{ required: ["a"] }, { required: ["b"] }] },
      param: `${RF}.type`,
      dropped: { oneOf: [{ type: "object", properties: { a: ANY } }, { type: "object", properties: { b: ANY } }] },
    },
    {
      name: "overlapping oneOf",
      schema: { oneOf: [{ type: "string" }, { type: "string", maxLength: 3 }] },
      param: `${RF}.oneOf`,
      dropped: { oneOf: [{ type: "string" }, { type: "string", maxLength: 3 }] },
    },
    {
      name: "minProperties above the declared properties",
      schema: { type: "object", properties: { a: { type: "null" } }, minProperties: 2 },
      param: `${RF}.minProperties`,
      dropped: { type: "object", properties: { a: { type: "null" } } },
    },
    {
      name: "a constraint deep inside items, anyOf and definitions",
      schema: {
        type: "object",
        definitions: { Pt: { type: "object", properties: { x: { type: "number", exclusiveMaximum: 3 } } } },
        properties: { list: { type: "array", items: { anyOf: [{ type: "null" }, { $ref: "#/definitions/Pt" }] } } },
      },
      param: `${RF}.definitions.Pt.properties.x.exclusiveMaximum`,
      dropped: {
        type: "object",
        properties: { list: { type: "array", items: { oneOf: [{ type: "null" }, { $ref: "#/$defs/Pt" }] } } },
        $defs: { Pt: { type: "object", properties: { x: { type: "number" } } } },
      },
    },
  ];
  for (const c of cases)
    it(c.name, () => {
      refusal(c.schema, c.param);
      expect(convert(c.schema, false)).toEqual(c.dropped);
    });

  it("says what to do, and names odd property names and array positions exactly", () => {
    const schema = { type: "object", properties: { "first name": { anyOf: [{ type: "null" }, { type: "integer", minimum: 0 }] } } };
    expect(refusal(schema, `${RF}.properties["first name"].anyOf[1].minimum`)).toBe(
      `${RF}.properties["first name"].anyOf[1]: 'minimum' cannot be enforced on this model (llama.cpp grammar); remove it or set strict: false`,
    );
    refusal({ type: "object", properties: { q: { type: "string", pattern: "x" } } }, "tools[2].function.parameters.properties.q.pattern", true, "tools[2].function.parameters");
    refusal({ type: "array", items: [{ type: "string" }, { type: "string", format: "uri" }] }, `${RF}.items[1].format`);
  });
});

describe("toGrammarSchema: malformed or unsatisfiable schemas are refused in both modes", () => {
  const cases: [string, unknown, string][] = [
    ["a string", "object", RF],
    ["null", null, RF],
    ["an array", [{ type: "string" }], RF],
    ["false", false, RF],
    ["an unknown type", { type: "text" }, `${RF}.type`],
    ["properties not an object", { type: "object", properties: [] }, `${RF}.properties`],
    ["a property schema that is not a schema", { type: "object", properties: { a: "string" } }, `${RF}.properties.a`],
    ["required not an array of strings", { type: "object", required: "a" }, `${RF}.required`],
    ["an empty enum", { enum: [] }, `${RF}.enum`],
    ["a negative maxLength", { type: "string", maxLength: -1 }, `${RF}.maxLength`],
    ["a non-numeric minimum", { type: "integer", minimum: "1" }, `${RF}.minimum`],
    ["an empty anyOf", { anyOf: [] }, `${RF}.anyOf`],
    ["a $ref that does not resolve", { type: "object", properties: { a: { $ref: "#/definitions/Nope" } } }, `${RF}.properties.a.$ref`],
    ["$defs not an object", { $defs: [], type: "string" }, `${RF}.$defs`],
    ["an enum with no value left", { type: "string", enum: [1, 2] }, RF],
    ["an empty integer range", { type: "integer", minimum: 5, maximum: 4 }, RF],
    ["maxLength below minLength", { type: "string", minLength: 3, maxLength: 2 }, RF],
    ["a required property that is not allowed", { type: "object", required: ["a"], additionalProperties: false }, `${RF}.required`],
    ["a $ref cycle without an object in between", { $defs: { A: { anyOf: [{ $ref: "#/$defs/B" }, { type: "null" }] }, B: { $ref: "#/$defs/A" } }, $ref: "#/$defs/A" }, `${RF}.$defs.A`],
    ["a recursion with no way out", { type: "object", properties: { next: { $ref: "#" } } }, RF],
    ["a property name with control characters", { type: "object", properties: { "a\u0001": { type: "null" } } }, `${RF}.properties["a\\u0001"]`],
  ];
  for (const [name, schema, param] of cases)
    it(name, () => {
      refusal(schema, param, true);
      refusal(schema, param, false);
    });
});

// ---------------------------------------------------------------------------------------------------------------

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A Llama stand-in that records builds and lets the test decide when (and whether) each finishes. */
function fakeLlama() {
  const builds: { schema: unknown; done: ReturnType<typeof deferred<void>> }[] = [];
  let jsonCalls = 0;
  let failJson = true;
  const llama = {
    async createGrammarForJsonSchema(schema: unknown) {
      const done = deferred<void>();
      builds.push({ schema, done });
      await done.promise;
      return { grammar: `root ::= "${builds.length}"`, stopGenerationTriggers: [], trimWhitespaceSuffix: true, schema };
    },
    async createGrammar(options: unknown) {
      return options;
    },
    async getGrammarFor(type: string) {
      jsonCalls++;
      if (failJson) {
        failJson = false;
        throw new Error("no grammar");
      }
      return { grammar: type };
    },
  };
  return { llama: llama as unknown as Llama, builds, jsonCalls: () => jsonCalls };
}

const schemaA = { type: "string" } as GbnfJsonSchema;
const schemaB = { type: "integer" } as GbnfJsonSchema;
const schemaC = { type: "boolean" } as GbnfJsonSchema;

describe("GrammarCache", () => {
  it("shares one build between concurrent requests for the same schema", async () => {
    const { llama, builds } = fakeLlama();
    const cache = new GrammarCache(llama);
    const first = cache.forSchema(schemaA);
    const second = cache.forSchema({ type: "string" });
    expect(second).toBe(first);
    await Promise.resolve();
    builds[0].done.resolve();
    expect(await second).toBe(await first);
    expect(builds).toHaveLength(1);
    expect(cache.forSchema(schemaA)).toBe(first);
  });

  it("does not keep a failed build", async () => {
    const { llama, builds } = fakeLlama();
    const cache = new GrammarCache(llama);
    const failed = cache.forSchema(schemaA);
    await Promise.resolve();
    builds[0].done.reject(new Error("bad grammar"));
    await expect(failed).rejects.toThrow("bad grammar");
    const retry = cache.forSchema(schemaA);
    expect(retry).not.toBe(failed);
    await Promise.resolve();
    builds[1].done.resolve();
    await expect(retry).resolves.toBeDefined();
    expect(builds).toHaveLength(2);
  });

  it("drops the least recently used schema beyond its size", async () => {
    const { llama, builds } = fakeLlama();
    const cache = new GrammarCache(llama, 2);
    const a = cache.forSchema(schemaA);
    cache.forSchema(schemaB);
    expect(cache.forSchema(schemaA)).toBe(a); // A is now the most recently used
    cache.forSchema(schemaC); // evicts B
    expect(cache.forSchema(schemaA)).toBe(a);
    expect(builds).toHaveLength(3);
    cache.forSchema(schemaB);
    expect(builds).toHaveLength(4);
    expect(() => new GrammarCache(llama, 0)).toThrow(RangeError);
  });

  it("builds the json_object grammar once, again after a failure", async () => {
    const { llama, jsonCalls } = fakeLlama();
    const cache = new GrammarCache(llama);
    await expect(cache.json()).rejects.toThrow("no grammar");
    const json = cache.json();
    expect(cache.json()).toBe(json);
    await expect(json).resolves.toEqual({ grammar: "json" });
    expect(jsonCalls()).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The real grammar on the test model: every output parses and validates against the ORIGINAL schema.

/**
 * Strings and arrays are bounded (maxLength/maxItems): the tiny story model, unbounded, keeps writing a story
 * inside a string until maxTokens cuts it off (4 of 20 seeds for the zod schema, 1 of 20 for the anyOf schema, in
 * the run this was written against), which is truncated JSON. The grammar bounds everything else (numbers,
 * whitespace), so with these bounds every output ends by itself.
 */
const s24 = () => z.string().max(24);
const Pet = z.object({ kind: z.enum(["cat", "dog"]), age: z.number().int().nullable() });
const Owner = z.object({
  name: s24(),
  age: z.number().int(),
  score: z.number(),
  nick: s24().nullable(),
  role: z.enum(["admin", "user"]),
  tags: z.array(s24()).max(3),
  home: z.object({ street: s24(), zip: s24().nullable() }),
  rating: z.number().int().min(1).max(5),
  pets: z.array(Pet).max(2),
});
const zodSchema = zodResponseFormat(Owner, "owner").json_schema.schema as Record<string, unknown>;
const anyOfSchema = {
  type: "object",
  definitions: { Pt: { type: "object", properties: { x: { type: "number" }, y: { type: "number" } }, required: ["x", "y"], additionalProperties: false } },
  properties: {
    shape: {
      anyOf: [
        { type: "object", properties: { kind: { const: "circle" }, c: { $ref: "#/definitions/Pt" }, r: { type: "number" } }, required: ["kind", "c", "r"] },
        { type: "object", properties: { kind: { const: "poly" }, pts: { type: "array", items: { $ref: "#/definitions/Pt" }, maxItems: 4 } }, required: ["kind", "pts"] },
      ],
    },
    label: { type: ["string", "null"], maxLength: 24, title: "Label" },
  },
  required: ["shape", "label"],
  additionalProperties: false,
};
const miscSchema = {
  type: "object",
  properties: {
    id: { type: "integer", minimum: 1, maximum: 100 },
    day: { type: "string", format: "date" },
    at: { type: "string", format: "date-time" },
    pair: { type: "array", items: [{ type: "string", maxLength: 8 }, { type: "boolean" }], additionalItems: false },
    v: { oneOf: [{ type: "null" }, { type: "object", properties: { t: { const: "a" } }, required: ["t"] }, { enum: [1, 2] }] },
    extra: { type: "object", additionalProperties: { type: "integer" }, maxProperties: 2 },
    big: { type: "integer" },
    f: { type: "number" },
  },
  required: ["id"],
};

describe("grammar-constrained generation on the test model", () => {
  let llama: Llama;
  let model: LlamaModel;
  let context: LlamaContext;
  let cache: GrammarCache;
  let generate: (grammar: LlamaGrammar, seed: number) => Promise<{ text: string; stopReason: string }>;

  beforeAll(async () => {
    llama = await getSharedLlama(1, false);
    model = await llama.loadModel({ modelPath: testModelPath() });
    context = await model.createContext({ contextSize: 512, sequences: 1 });
    const { LlamaCompletion } = await import("node-llama-cpp");
    const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
    cache = new GrammarCache(llama);
    generate = async (grammar, seed) => {
      const { response, metadata } = await completion.generateCompletionWithMeta("Once upon a time", { grammar, maxTokens: 400, temperature: 0.8, seed });
      return { text: response, stopReason: metadata.stopReason };
    };
  });
  afterAll(async () => {
    await context?.dispose();
    await model?.dispose();
  });

  it("rewrites node-llama-cpp's number rules: integers without exponent, at most 15 digits", async () => {
    const grammar = await cache.forSchema(toGrammarSchema({ type: "object", properties: { i: { type: "integer" }, n: { type: "number" } } }, RF, true));
    expect(grammar.grammar).toContain('integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,14})\n');
    expect(grammar.grammar).toContain('fractional-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? ("0" | [1-9] [0-9]?))?\n');
    expect(grammar.stopGenerationTriggers.length).toBe(1);
    expect(await cache.forSchema(toGrammarSchema({ type: "object", properties: { i: { type: "integer" }, n: { type: "number" } } }, RF, true))).toBe(grammar);
  });

  it("node-llama-cpp builds every converted schema, resolving every $ref (no fallback to 'any')", async () => {
    const schemas = [zodSchema, anyOfSchema, miscSchema, zodResponseFormat(Person, "p").json_schema.schema, { $defs: { A: { type: "null" } }, $ref: "#/$defs/A" }, {}];
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args);
    try {
      for (const schema of schemas) await cache.forSchema(toGrammarSchema(schema, RF, true));
    } finally {
      console.warn = warn;
    }
    expect(warnings).toEqual([]);
  });

  const ajv = new Ajv({ strict: false, validateFormats: false });
  const cases: [string, Record<string, unknown>, number][] = [
    ["a zodResponseFormat schema (nested objects, arrays, enums, nullable)", zodSchema, 20],
    ["a hand-written anyOf + definitions/$ref schema", anyOfSchema, 20],
    ["tuples, integer ranges, oneOf, formats, maps", miscSchema, 10],
  ];
  for (const [name, schema, seeds] of cases)
    it(`${seeds} of ${seeds} outputs validate: ${name}`, async () => {
      const grammar = await cache.forSchema(toGrammarSchema(schema, RF, true));
      const validate = ajv.compile(schema);
      const failures: string[] = [];
      for (let seed = 0; seed < seeds; seed++) {
        const { text, stopReason } = await generate(grammar, seed);
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch {
          failures.push(`seed ${seed} (${stopReason}): not JSON: ${text.slice(0, 200)}`);
          continue;
        }
        if (!validate(value)) failures.push(`seed ${seed}: ${ajv.errorsText(validate.errors)}: ${text.slice(0, 200)}`);
        if (schema === miscSchema) {
          const v = value as { day: string; at: string };
          expect(v.day).toMatch(/^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/);
          expect(v.at).toMatch(/^\d{4}-\d\d-\d\dT([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{3})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/);
        }
      }
      expect(failures).toEqual([]);
    });

  it("json(): node-llama-cpp's json grammar, whose root is an object", async () => {
    const grammar = await cache.json();
    expect(grammar.grammar).toMatch(/^root\s+::= object$/m);
    expect(await cache.json()).toBe(grammar);
    // The tiny model never closes a free-form object within 400 tokens (it keeps adding keys): only the start is checked.
    const { text } = await generate(grammar, 1);
    expect(text.startsWith("{")).toBe(true);
  });
});
