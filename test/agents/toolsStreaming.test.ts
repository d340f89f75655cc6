import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatCompletionChunk, ChatCompletionMessageToolCall } from "openai/resources/chat/completions";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { MODEL, runPool, TOOL_MESSAGES, toolCallProblem, TOOLS, tries, WEATHER_TOOL, patientClient } from "./agentHelpers.js";

/** Streamed tool calls: delta.tool_calls chunks exactly as OpenAI sends them, assembled by hand and by the SDK. */

let server: TestServer;
let openai: OpenAI;
beforeAll(async () => {
  server = await startTestServer({ sequences: 8 });
  openai = patientClient(server.url);
});
afterAll(async () => {
  await server?.close();
});

interface Assembled {
  calls: ChatCompletionMessageToolCall[];
  problems: string[];
  finish: string | null;
  content: string;
  usage?: ChatCompletionChunk["usage"];
}

/** Reads a raw stream, checking each delta.tool_calls entry's shape, and assembles the calls. */
async function readToolStream(stream: AsyncIterable<ChatCompletionChunk>): Promise<Assembled> {
  const byIndex = new Map<number, { id: string; name: string; args: string }>();
  const problems: string[] = [];
  let finish: string | null = null;
  let content = "";
  let usage: ChatCompletionChunk["usage"];
  let finishSeenAt = -1;
  let n = 0;
  for await (const chunk of stream) {
    n++;
    expect(chunk.object).toBe("chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.index !== 0) problems.push(`choice index ${choice.index}`);
      if (finishSeenAt >= 0 && (choice.delta.tool_calls?.length || choice.delta.content)) problems.push(`delta after finish_reason: ${JSON.stringify(chunk)}`);
      if (typeof choice.delta.content === "string") content += choice.delta.content;
      for (const tc of choice.delta.tool_calls ?? []) {
        if (typeof tc.index !== "number") {
          problems.push(`tool_calls entry without index: ${JSON.stringify(tc)}`);
          continue;
        }
        const known = byIndex.get(tc.index);
        if (!known) {
          // First chunk of a call: index, id, type, function.name, and arguments "" (as OpenAI sends).
          if (tc.index !== byIndex.size) problems.push(`call index ${tc.index} after ${byIndex.size} calls`);
          if (typeof tc.id !== "string" || !tc.id.startsWith("call_")) problems.push(`first chunk of call ${tc.index} has id ${JSON.stringify(tc.id)}`);
          if (tc.type !== "function") problems.push(`first chunk of call ${tc.index} has type ${JSON.stringify(tc.type)}`);
          if (typeof tc.function?.name !== "string" || tc.function.name.length === 0) problems.push(`first chunk of call ${tc.index} has no name: ${JSON.stringify(tc)}`);
          if (tc.function?.arguments !== "") problems.push(`first chunk of call ${tc.index} has arguments ${JSON.stringify(tc.function?.arguments)}, expected ""`);
          byIndex.set(tc.index, { id: tc.id ?? "", name: tc.function?.name ?? "", args: tc.function?.arguments ?? "" });
        } else {
          // Later chunks: only index and function.arguments.
          const extra = Object.keys(tc).filter((k) => k !== "index" && k !== "function");
          const fnExtra = Object.keys(tc.function ?? {}).filter((k) => k !== "arguments");
          if (extra.length > 0 || fnExtra.length > 0) problems.push(`later chunk of call ${tc.index} carries ${[...extra, ...fnExtra.map((k) => `function.${k}`)].join(", ")}: ${JSON.stringify(tc)}`);
          if (typeof tc.function?.arguments !== "string") problems.push(`later chunk of call ${tc.index} without arguments: ${JSON.stringify(tc)}`);
          known.args += tc.function?.arguments ?? "";
        }
      }
      if (choice.finish_reason) {
        if (finish !== null) problems.push(`second finish_reason ${choice.finish_reason}`);
        finish = choice.finish_reason;
        finishSeenAt = n;
      }
    }
  }
  const calls: ChatCompletionMessageToolCall[] = [...byIndex.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, c]) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.args } }));
  return { calls, problems, finish, content, usage };
}

describe("streamed tool calls", () => {
  it("raw chunks: first chunk of a call has index, id, type and name with empty arguments, later ones only argument pieces; the pieces parse and validate (12 seeded tries)", async () => {
    const results = await runPool(tries(12), 8, async (seed) => {
      const stream = await openai.chat.completions.create({
        model: MODEL,
        messages: TOOL_MESSAGES,
        tools: TOOLS,
        tool_choice: "required",
        temperature: 1,
        seed: 500 + seed,
        max_tokens: 400,
        stream: true,
        stream_options: { include_usage: true },
      });
      return readToolStream(stream);
    });
    const problems: string[] = [];
    for (const [i, r] of results.entries()) {
      const seed = 500 + i;
      problems.push(...r.problems.map((p) => `seed ${seed}: ${p}`));
      if (r.calls.length === 0) problems.push(`seed ${seed}: no tool calls (content ${JSON.stringify(r.content.slice(0, 200))})`);
      if (r.content.length > 0) problems.push(`seed ${seed}: content ${JSON.stringify(r.content.slice(0, 200))} beside tool calls`);
      if (r.finish !== "tool_calls") problems.push(`seed ${seed}: finish_reason ${r.finish}`);
      if (!r.usage || r.usage.completion_tokens <= 0) problems.push(`seed ${seed}: usage ${JSON.stringify(r.usage)}`);
      for (const call of r.calls) {
        const p = toolCallProblem(call);
        if (p) problems.push(`seed ${seed}: ${p}`);
      }
      if (new Set(r.calls.map((c) => c.id)).size !== r.calls.length) problems.push(`seed ${seed}: duplicate ids`);
    }
    expect(problems, problems.slice(0, 10).join("\n")).toEqual([]);
  }, 300_000);

  it("arguments arrive in several pieces", async () => {
    const stream = await openai.chat.completions.create({
      model: MODEL,
      messages: TOOL_MESSAGES,
      tools: [WEATHER_TOOL],
      tool_choice: "required",
      temperature: 1,
      seed: 42,
      max_tokens: 400,
      stream: true,
    });
    let pieces = 0;
    for await (const chunk of stream) for (const tc of chunk.choices[0]?.delta.tool_calls ?? []) if (tc.function?.arguments) pieces++;
    expect(pieces).toBeGreaterThan(1);
  });

  it("the SDK's stream helper assembles the calls (finalChatCompletion)", async () => {
    const results = await runPool(tries(6), 8, async (seed) => {
      const params = {
        model: MODEL,
        messages: TOOL_MESSAGES,
        tools: TOOLS,
        tool_choice: "required" as const,
        temperature: 1,
        seed: 700 + seed,
        max_tokens: 400,
      };
      const stream = openai.chat.completions.stream(params);
      const argumentDeltas: string[] = [];
      stream.on("tool_calls.function.arguments.delta", (e) => argumentDeltas.push(e.arguments_delta));
      const final = await stream.finalChatCompletion();
      return { seed: 700 + seed, final, argumentDeltas };
    });
    for (const { seed, final, argumentDeltas } of results) {
      const choice = final.choices[0];
      const calls = choice.message.tool_calls ?? [];
      expect(calls.length, `seed ${seed}: ${JSON.stringify(choice).slice(0, 1000)}`).toBeGreaterThanOrEqual(1);
      expect(choice.finish_reason).toBe("tool_calls");
      for (const call of calls) {
        expect(toolCallProblem(call), `seed ${seed}`).toBeUndefined();
        // Strict tools: the SDK also parses the arguments itself.
        expect((call as { function: { parsed_arguments?: unknown } }).function.parsed_arguments).toEqual(JSON.parse((call as { function: { arguments: string } }).function.arguments));
      }
      expect(argumentDeltas.join("")).toBe(calls.map((c) => (c as { function: { arguments: string } }).function.arguments).join(""));
    }
  }, 120_000);
});
