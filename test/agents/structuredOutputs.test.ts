import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { expectBadRequest, MODEL, runPool, tries, validatorFor, patientClient } from "./agentHelpers.js";

/** Structured outputs on llama.cpp: json_schema (through the SDK's parse helper) and json_object, enforced by grammar. */

let server: TestServer;
let openai: OpenAI;
beforeAll(async () => {
  server = await startTestServer({ sequences: 8 });
  openai = patientClient(server.url);
});
afterAll(async () => {
  await server?.close();
});

const Story = z.object({
  title: z.string().max(20),
  mood: z.enum(["happy", "sad", "calm"]),
  pages: z.int(),
  hero: z.object({
    name: z.string().max(20),
    nickname: z.string().max(20).nullable(),
    brave: z.boolean(),
  }),
  tags: z.array(z.string().max(20)).max(3),
  rating: z.number(),
});

const MESSAGES = [
  { role: "system" as const, content: "Answer with a JSON description of a story." },
  { role: "user" as const, content: "Tell me about a story with a brave cat." },
];

describe("response_format json_schema", () => {
  it("client.chat.completions.parse with a zod schema: message.parsed matches the schema in 100 of 100 seeded tries", async () => {
    const format = zodResponseFormat(Story, "story");
    const answers = await runPool(tries(100), 8, async (seed) => {
      try {
        const res = await openai.chat.completions.parse({ model: MODEL, messages: MESSAGES, response_format: format, temperature: 1, seed, max_tokens: 400 });
        return { seed, res };
      } catch (err) {
        return { seed, err: err as Error };
      }
    });
    const problems: string[] = [];
    for (const a of answers) {
      if (a.err) {
        problems.push(`seed ${a.seed}: ${a.err.name}: ${a.err.message}`);
        continue;
      }
      const choice = a.res!.choices[0];
      if (choice.finish_reason !== "stop") problems.push(`seed ${a.seed}: finish_reason ${choice.finish_reason}`);
      if (choice.message.parsed === null) {
        problems.push(`seed ${a.seed}: parsed is null; content ${JSON.stringify(choice.message.content)}`);
        continue;
      }
      const check = Story.safeParse(choice.message.parsed);
      if (!check.success) problems.push(`seed ${a.seed}: ${check.error.message} in ${choice.message.content}`);
      if (choice.message.tool_calls?.length) problems.push(`seed ${a.seed}: unexpected tool calls`);
      if (choice.message.refusal) problems.push(`seed ${a.seed}: refusal ${choice.message.refusal}`);
    }
    expect(problems, problems.slice(0, 10).join("\n")).toEqual([]);
    // The answers are the model's: they differ between seeds.
    expect(new Set(answers.map((a) => a.res?.choices[0].message.content)).size).toBeGreaterThan(answers.length / 2);
  }, 300_000);

  it("streams the same structured answer; the SDK stream helper parses it", async () => {
    const format = zodResponseFormat(Story, "story");
    const stream = openai.chat.completions.stream({ model: MODEL, messages: MESSAGES, response_format: format, temperature: 1, seed: 17, max_tokens: 400 });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0].finish_reason).toBe("stop");
    expect(Story.parse(final.choices[0].message.parsed)).toEqual(final.choices[0].message.parsed);
  });

  it("a strict schema with `pattern` → 400 naming the place and the keyword; strict: false → 200 and valid JSON", async () => {
    const schema = {
      type: "object",
      properties: { code: { type: "string", pattern: "^[A-Z]{3}$", maxLength: 10 }, count: { type: "integer" } },
      required: ["code", "count"],
      additionalProperties: false,
    };
    const err = await expectBadRequest(
      openai.chat.completions.create({
        model: MODEL,
        messages: MESSAGES,
        response_format: { type: "json_schema", json_schema: { name: "code", strict: true, schema } },
        max_tokens: 100,
      }),
      "response_format.json_schema.schema.properties.code.pattern",
    );
    expect(err.message).toContain("pattern");
    const res = await openai.chat.completions.create({
      model: MODEL,
      messages: MESSAGES,
      response_format: { type: "json_schema", json_schema: { name: "code", strict: false, schema } },
      temperature: 1,
      seed: 3,
      max_tokens: 200,
    });
    const content = res.choices[0].message.content!;
    const parsed = JSON.parse(content) as unknown;
    // Everything but the unenforced keyword holds.
    const { pattern: _pattern, ...codeWithoutPattern } = schema.properties.code;
    expect(validatorFor({ ...schema, properties: { ...schema.properties, code: codeWithoutPattern } })(parsed), content).toBe(true);
  });

  it("a strict schema with `minimum` → 400 naming it; without `strict` → 200", async () => {
    const schema = {
      type: "object",
      properties: { name: { type: "string", maxLength: 10 }, count: { type: "number", minimum: 3 } },
      required: ["name", "count"],
      additionalProperties: false,
    };
    const err = await expectBadRequest(
      openai.chat.completions.create({
        model: MODEL,
        messages: MESSAGES,
        response_format: { type: "json_schema", json_schema: { name: "counted", strict: true, schema } },
        max_tokens: 100,
      }),
      "response_format.json_schema.schema.properties.count.minimum",
    );
    expect(err.message).toContain("minimum");
    const res = await openai.chat.completions.create({
      model: MODEL,
      messages: MESSAGES,
      response_format: { type: "json_schema", json_schema: { name: "counted", schema } },
      temperature: 1,
      seed: 4,
      max_tokens: 200,
    });
    const parsed = JSON.parse(res.choices[0].message.content!) as { name: unknown; count: unknown };
    expect(typeof parsed.name).toBe("string");
    expect(typeof parsed.count).toBe("number");
  });

  it("a malformed response_format → 400 naming it", async () => {
    await expectBadRequest(
      openai.chat.completions.create({ model: MODEL, messages: MESSAGES, response_format: { type: "json_schema" } as never, max_tokens: 10 }),
      /^response_format/,
    );
    await expectBadRequest(
      openai.chat.completions.create({ model: MODEL, messages: MESSAGES, response_format: { type: "yaml" } as never, max_tokens: 10 }),
      /^response_format/,
    );
  });

  it("response_format text is plain generation", async () => {
    const res = await openai.chat.completions.create({ model: MODEL, messages: MESSAGES, response_format: { type: "text" }, temperature: 0, max_tokens: 10 });
    const plain = await openai.chat.completions.create({ model: MODEL, messages: MESSAGES, temperature: 0, max_tokens: 10 });
    expect(res.choices[0].message.content).toBe(plain.choices[0].message.content);
  });
});

describe("usage under a grammar", () => {
  it("an answer cut by max_tokens reports completion_tokens = max_tokens (json_object and json_schema, streamed or not)", async () => {
    const messages = [{ role: "user" as const, content: "Describe a cat as JSON." }];
    const formats = [
      { type: "json_object" as const },
      { type: "json_schema" as const, json_schema: { name: "story", strict: true, schema: zodResponseFormat(Story, "story").json_schema.schema! } },
    ];
    const problems: string[] = [];
    for (const response_format of formats) {
      for (const max_tokens of [10, 50]) {
        const res = await openai.chat.completions.create({ model: MODEL, messages, response_format, temperature: 0, max_tokens });
        const label = `${response_format.type} max_tokens ${max_tokens}`;
        if (res.choices[0].finish_reason === "length" && res.usage!.completion_tokens !== max_tokens) {
          problems.push(`${label}: finish_reason length but completion_tokens ${res.usage!.completion_tokens}; content ${JSON.stringify(res.choices[0].message.content)}`);
        }
        const stream = await openai.chat.completions.create({ model: MODEL, messages, response_format, temperature: 0, max_tokens, stream: true, stream_options: { include_usage: true } });
        let text = "";
        let usage;
        for await (const chunk of stream) {
          if (chunk.usage) usage = chunk.usage;
          text += chunk.choices[0]?.delta.content ?? "";
        }
        if (text !== res.choices[0].message.content) problems.push(`${label}: streamed text differs`);
        if (usage?.completion_tokens !== res.usage!.completion_tokens) problems.push(`${label}: streamed usage ${usage?.completion_tokens}, non-streamed ${res.usage!.completion_tokens}`);
      }
    }
    expect(problems, problems.join("\n")).toEqual([]);
  });
});

/**
 * Whether `text` is the beginning of a JSON object: closing what is open (a string, a literal or number cut in
 * the middle, a missing value, the open brackets) makes it parse to an object.
 */
function isJsonObjectPrefix(text: string): boolean {
  const stack: string[] = [];
  let inString = false;
  let escaped = false;
  for (const ch of text) {
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === "\\") escaped = true;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") stack.push(ch === "{" ? "}" : "]");
    else if (ch === "}" || ch === "]") stack.pop();
  }
  let base = text;
  if (inString) base += escaped ? '\\"' : '"';
  const closers = [...stack].reverse().join("");
  for (const trimmed of [base, base.replace(/,\s*$/, "")]) {
    for (const fill of ["", "null", ": null", "0", "e0", "ue", "rue", "e", "se", "lse", "alse", "ll", "l", "ull", '": null']) {
      try {
        const parsed: unknown = JSON.parse(trimmed + fill + closers);
        if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) return true;
      } catch {
        // try the next way of closing it
      }
    }
  }
  return false;
}

describe("response_format json_object", () => {
  it("content is always a JSON object, or one cut by max_tokens (finish_reason length): never anything else (30 seeded tries)", async () => {
    const answers = await runPool(tries(30), 8, (seed) =>
      openai.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "Describe a cat as JSON." }],
        response_format: { type: "json_object" },
        temperature: 1,
        seed,
        max_tokens: 200,
      }),
    );
    const problems: string[] = [];
    for (const [seed, res] of answers.entries()) {
      const content = res.choices[0].message.content ?? "";
      const finish = res.choices[0].finish_reason;
      let parsed: unknown;
      try {
        parsed = JSON.parse(content);
      } catch (err) {
        // The tiny model writes strings that never end: a grammar keeps the JSON valid, max_tokens cuts it (OpenAI documents the same).
        if (finish !== "length" || res.usage?.completion_tokens !== 200) problems.push(`seed ${seed}: does not parse and was not cut by max_tokens (finish_reason ${finish}): ${(err as Error).message}: ${content.slice(0, 300)}`);
        else if (!isJsonObjectPrefix(content)) problems.push(`seed ${seed}: cut by max_tokens, but not the beginning of a JSON object: ${content.slice(0, 300)}`);
        continue;
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) problems.push(`seed ${seed}: not an object: ${content.slice(0, 300)}`);
    }
    expect(problems, problems.slice(0, 10).join("\n")).toEqual([]);
  }, 120_000);

  it("the prefix check itself: tells cut objects from other text", () => {
    for (const cut of ['{ "name": "Tom', '{"a": [1, 2', '{"a": {"b": tr', '{"a": 1,', '{"a"', '{ "a": -1.', '{"a": "x\\']) expect(isJsonObjectPrefix(cut), cut).toBe(true);
    for (const bad of ['"Tom"', "[1, 2", "{a: 1", '{"a": 1}}', "Once upon"]) expect(isJsonObjectPrefix(bad), bad).toBe(false);
  });
});
