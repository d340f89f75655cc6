import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatCompletion, ChatCompletionMessageParam, ChatCompletionMessageToolCall } from "openai/resources/chat/completions";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { BOOKING_TOOL, expectBadRequest, MODEL, runPool, TOOL_MESSAGES, toolCallProblem, TOOLS, tries, WEATHER_TOOL, patientClient } from "./agentHelpers.js";

/** Tool calling on llama.cpp, non-streaming: grammar-constrained arguments always parse and match the schema. */

let server: TestServer;
let openai: OpenAI;
beforeAll(async () => {
  server = await startTestServer({ sequences: 8 });
  openai = patientClient(server.url);
});
afterAll(async () => {
  await server?.close();
});

const CONCURRENCY = 8;

function describeAnswer(res: ChatCompletion): string {
  return JSON.stringify(res.choices[0]).slice(0, 1500);
}

/** Problems of an answer that must consist of tool calls only. */
function toolAnswerProblems(res: ChatCompletion, seed: number, expectedFinish: string): string[] {
  const choice = res.choices[0];
  const problems: string[] = [];
  const calls = choice.message.tool_calls ?? [];
  if (calls.length === 0) problems.push(`seed ${seed}: no tool_calls: ${describeAnswer(res)}`);
  if (choice.finish_reason !== expectedFinish) problems.push(`seed ${seed}: finish_reason ${choice.finish_reason}, expected ${expectedFinish}: ${describeAnswer(res)}`);
  if (choice.message.content !== null) problems.push(`seed ${seed}: content is ${JSON.stringify(choice.message.content)}, expected null`);
  for (const call of calls) {
    const p = toolCallProblem(call);
    if (p) problems.push(`seed ${seed}: ${p}`);
  }
  const ids = calls.map((c) => c.id);
  if (new Set(ids).size !== ids.length) problems.push(`seed ${seed}: duplicate tool call ids ${ids.join(",")}`);
  return problems;
}

describe("tool_choice: required", () => {
  // Two tools with nested objects, enums, numbers, booleans, bounded arrays and strings, on a model that knows
  // nothing of tools: the grammars make every call valid. One call per answer keeps 100 tries affordable.
  it("gives a valid tool call (id, name, arguments matching the schema) in 100 of 100 seeded tries; exactly one with parallel_tool_calls: false", async () => {
    const answers = await runPool(tries(100), CONCURRENCY, (seed) =>
      openai.chat.completions.create({
        model: MODEL,
        messages: TOOL_MESSAGES,
        tools: TOOLS,
        tool_choice: "required",
        parallel_tool_calls: false,
        temperature: 1,
        seed,
        max_tokens: 400,
      }),
    );
    const problems = answers.flatMap((res, seed) => toolAnswerProblems(res, seed, "tool_calls"));
    expect(problems, problems.slice(0, 10).join("\n")).toEqual([]);
    for (const res of answers) {
      expect(res.object).toBe("chat.completion");
      expect(res.choices).toHaveLength(1);
      expect(res.choices[0].message.role).toBe("assistant");
      expect(res.usage!.completion_tokens).toBeGreaterThan(0);
    }
    const counts = answers.map((r) => r.choices[0].message.tool_calls!.length);
    expect(counts.filter((c) => c !== 1), `call counts: ${counts.join(",")}`).toEqual([]);
  }, 600_000);

  it("makes parallel calls when allowed (the default): all valid, several in some answers (12 tries)", async () => {
    const answers = await runPool(tries(12), CONCURRENCY, (seed) =>
      openai.chat.completions.create({
        model: MODEL,
        messages: TOOL_MESSAGES,
        tools: TOOLS,
        tool_choice: "required",
        temperature: 1,
        seed: 1000 + seed,
        max_tokens: 400,
      }),
    );
    const problems = answers.flatMap((res, seed) => toolAnswerProblems(res, 1000 + seed, "tool_calls"));
    expect(problems, problems.slice(0, 10).join("\n")).toEqual([]);
    const counts = answers.map((r) => r.choices[0].message.tool_calls!.length);
    if (answers.length >= 10) expect(Math.max(...counts), `call counts: ${counts.join(",")}`).toBeGreaterThanOrEqual(2);
  }, 600_000);
});

describe("other tool_choice values", () => {
  it("a named function gives exactly one call of that function, finish_reason stop", async () => {
    const answers = await runPool(6, CONCURRENCY, (seed) =>
      openai.chat.completions.create({
        model: MODEL,
        messages: TOOL_MESSAGES,
        tools: TOOLS,
        tool_choice: { type: "function", function: { name: BOOKING_TOOL.function.name } },
        temperature: 1,
        seed,
        max_tokens: 400,
      }),
    );
    for (const [seed, res] of answers.entries()) {
      const calls = res.choices[0].message.tool_calls ?? [];
      expect(calls, `seed ${seed}: ${describeAnswer(res)}`).toHaveLength(1);
      expect((calls[0] as { function: { name: string } }).function.name).toBe(BOOKING_TOOL.function.name);
      expect(toolCallProblem(calls[0]), `seed ${seed}`).toBeUndefined();
      expect(res.choices[0].finish_reason, `seed ${seed}`).toBe("stop");
    }
  });

  it("none gives text and no tool calls", async () => {
    const answers = await runPool(8, CONCURRENCY, (seed) =>
      openai.chat.completions.create({ model: MODEL, messages: TOOL_MESSAGES, tools: TOOLS, tool_choice: "none", temperature: 1, seed, max_tokens: 30 }),
    );
    for (const [seed, res] of answers.entries()) {
      const choice = res.choices[0];
      expect(choice.message.tool_calls ?? [], `seed ${seed}: ${describeAnswer(res)}`).toEqual([]);
      expect(typeof choice.message.content, `seed ${seed}`).toBe("string");
      expect(["stop", "length"]).toContain(choice.finish_reason);
    }
    expect(answers.some((r) => (r.choices[0].message.content ?? "").length > 0)).toBe(true);
  });

  it("auto gives either text or valid calls, never broken JSON (8 tries)", async () => {
    const answers = await runPool(tries(8), CONCURRENCY, (seed) =>
      openai.chat.completions.create({ model: MODEL, messages: TOOL_MESSAGES, tools: TOOLS, tool_choice: "auto", temperature: 1, seed, max_tokens: 150 }),
    );
    for (const [seed, res] of answers.entries()) {
      const choice = res.choices[0];
      const calls = choice.message.tool_calls ?? [];
      if (calls.length > 0) {
        expect(toolAnswerProblems(res, seed, "tool_calls")).toEqual([]);
      } else {
        expect(typeof choice.message.content, `seed ${seed}: ${describeAnswer(res)}`).toBe("string");
        expect(["stop", "length"]).toContain(choice.finish_reason);
      }
    }
  }, 120_000);

  it("tools without tool_choice behave as auto (OpenAI's default when tools are given)", async () => {
    const res = await openai.chat.completions.create({ model: MODEL, messages: TOOL_MESSAGES, tools: TOOLS, temperature: 1, seed: 5, max_tokens: 400 });
    const calls = res.choices[0].message.tool_calls ?? [];
    if (calls.length > 0) expect(toolAnswerProblems(res, 5, "tool_calls")).toEqual([]);
    else expect(typeof res.choices[0].message.content).toBe("string");
  });
});

describe("two-turn exchange", () => {
  async function firstTurn(seed: number): Promise<ChatCompletionMessageToolCall[]> {
    const res = await openai.chat.completions.create({
      model: MODEL,
      messages: TOOL_MESSAGES,
      tools: TOOLS,
      tool_choice: "required",
      temperature: 1,
      seed,
      max_tokens: 400,
    });
    expect(toolAnswerProblems(res, seed, "tool_calls")).toEqual([]);
    return res.choices[0].message.tool_calls!;
  }

  it("accepts the assistant's tool_calls and a tool result per call, and answers", async () => {
    const calls = await firstTurn(3);
    const messages: ChatCompletionMessageParam[] = [
      ...TOOL_MESSAGES,
      { role: "assistant", content: null, tool_calls: calls },
      ...calls.map((c) => ({ role: "tool" as const, tool_call_id: c.id, content: JSON.stringify({ ok: true, temperature_c: 21, summary: "sunny" }) })),
    ];
    const res = await openai.chat.completions.create({ model: MODEL, messages, tools: TOOLS, temperature: 1, seed: 4, max_tokens: 40 });
    expect(res.object).toBe("chat.completion");
    const choice = res.choices[0];
    if ((choice.message.tool_calls ?? []).length > 0) expect(toolAnswerProblems(res, 4, "tool_calls")).toEqual([]);
    else expect(typeof choice.message.content).toBe("string");
    // The tool results are part of the prompt: the second turn's prompt is longer than the first's.
    const first = await openai.chat.completions.create({ model: MODEL, messages: TOOL_MESSAGES, tools: TOOLS, max_tokens: 1 });
    expect(res.usage!.prompt_tokens).toBeGreaterThan(first.usage!.prompt_tokens);
    // Without tools in the second request (some clients drop them) the history is still accepted.
    const plain = await openai.chat.completions.create({ model: MODEL, messages, temperature: 0, max_tokens: 10 });
    expect(typeof plain.choices[0].message.content).toBe("string");
  });

  it("a tool message whose tool_call_id matches no earlier call → 400 naming the message", async () => {
    const calls = await firstTurn(8);
    const messages: ChatCompletionMessageParam[] = [
      TOOL_MESSAGES[1],
      { role: "assistant", content: null, tool_calls: calls },
      { role: "tool", tool_call_id: "call_doesnotexist", content: "{}" },
    ];
    await expectBadRequest(openai.chat.completions.create({ model: MODEL, messages, tools: TOOLS, max_tokens: 10 }), "messages[2].tool_call_id");
    // A tool message with no assistant tool call before it at all.
    await expectBadRequest(
      openai.chat.completions.create({ model: MODEL, messages: [TOOL_MESSAGES[1], { role: "tool", tool_call_id: "call_x", content: "{}" }], tools: TOOLS, max_tokens: 10 }),
      "messages[1].tool_call_id",
    );
  });

  it("an unknown tool_choice function name → 400 naming tool_choice", async () => {
    const err = await expectBadRequest(
      openai.chat.completions.create({
        model: MODEL,
        messages: TOOL_MESSAGES,
        tools: TOOLS,
        tool_choice: { type: "function", function: { name: "launch_rocket" } },
        max_tokens: 10,
      }),
      /^tool_choice/,
    );
    expect(err.message).toContain("launch_rocket");
  });

  it("a tool without a name → 400 naming it", async () => {
    await expectBadRequest(
      openai.chat.completions.create({
        model: MODEL,
        messages: TOOL_MESSAGES,
        tools: [{ type: "function", function: { description: "no name", parameters: { type: "object", properties: {} } } } as never],
        max_tokens: 10,
      }),
      /^tools\[0\]/,
    );
  });

  it("tool_choice required without tools → 400 naming tool_choice", async () => {
    await expectBadRequest(openai.chat.completions.create({ model: MODEL, messages: TOOL_MESSAGES, tool_choice: "required", max_tokens: 10 }), /^tool_choice/);
  });
});
