import { Ajv } from "ajv";
import { LlamaCompletion, LlamaText, type ChatWrapperSettings, type Llama, type LlamaContext, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testModelPath } from "../../test/helpers/testModel.js";
import { renderChatPrompt } from "./chatPrompt.js";
import type { GenerationEvent, ToolCallDelta } from "./Engine.js";
import { FallbackChatWrapper } from "./FallbackChatWrapper.js";
import { generateChoice, MAX_CALLS_PER_ANSWER, type ChoicePlan, type ChoiceRuntime, type Slot } from "./generateChoice.js";
import { getSharedLlama } from "./getSharedLlama.js";
import { GrammarCache, toGrammarSchema } from "./jsonSchemaGrammar.js";
import { tokenBytesOf } from "./tokenBytes.js";

/**
 * A chat template whose call syntax starts with text the test model writes in almost every story (" was"): with
 * tool_choice auto, the model then begins a call by itself, and the answer must go on from its text into a call
 * whose arguments match the schema. (The real fallback's "||call: " is never written by this model.)
 */
class EagerCaller extends FallbackChatWrapper {
  constructor() {
    super();
    const base = this.settings;
    const settings: ChatWrapperSettings = { ...base, functions: { ...base.functions, call: { ...base.functions.call, prefix: " was", prefixAlternateMatches: [] } } };
    (this as { settings: ChatWrapperSettings }).settings = settings;
  }
}

const schema = { type: "object", properties: { city: { type: "string", maxLength: 10 }, days: { type: "integer", minimum: 1, maximum: 3 } }, required: ["city", "days"], additionalProperties: false };
const validate = new Ajv().compile(schema);

let llama: Llama;
let model: LlamaModel;
let context: LlamaContext;
let slot: Slot;
let grammars: GrammarCache;

beforeAll(async () => {
  llama = await getSharedLlama(1, false);
  model = await llama.loadModel({ modelPath: testModelPath() });
  context = await model.createContext({ contextSize: 1024, sequences: 1, threads: 1 });
  const sequence = context.getSequence();
  slot = { sequence, completion: new LlamaCompletion({ contextSequence: sequence }) };
  grammars = new GrammarCache(llama);
});

afterAll(async () => {
  await context?.dispose();
  await model?.dispose();
});

async function plan(wrapper: FallbackChatWrapper, mode: ChoicePlan["mode"], parallel = true): Promise<{ plan: ChoicePlan; runtime: ChoiceRuntime }> {
  const params = toGrammarSchema(schema, "tools[0].function.parameters", true);
  const prompt = renderChatPrompt(model, wrapper, [{ role: "user", content: "Tell me a story." }], undefined, { get_weather: { params } });
  const runtime: ChoiceRuntime = { model, wrapper, contextSize: 1024, tokenBytes: tokenBytesOf(model) };
  return {
    runtime,
    plan: {
      mode,
      tools: [{ name: "get_weather", grammar: await grammars.forSchema(params) }],
      parallel,
      contextText: prompt.contextText,
      promptTokens: prompt.tokens,
      textStops: prompt.stopTriggers.map((t) => t.toString()),
      tokenStops: [],
      nameGrammar: await llama.createGrammar({ grammar: 'root ::= [ ]? ("get_weather")' }),
      moreCallsGrammar: await llama.createGrammar({ grammar: `root ::= (${JSON.stringify(LlamaText(wrapper.settings.functions.call.prefix).toString())})?` }),
    },
  };
}

async function run(p: { plan: ChoicePlan; runtime: ChoiceRuntime }, seed: number, maxTokens = 300) {
  const events: Extract<GenerationEvent, { type: "delta" }>[] = [];
  await slot.sequence.clearHistory();
  const result = await generateChoice(p.runtime, slot, p.plan, { temperature: 0.8, seed }, maxTokens, 0, new AbortController().signal, (e) => events.push(e));
  const content = events.map((e) => e.text).join("");
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const piece of events.flatMap((e) => e.toolCalls ?? []) as ToolCallDelta[]) {
    calls[piece.index] ??= { id: "", name: "", arguments: "" };
    if (piece.id) calls[piece.index].id = piece.id;
    if (piece.name) calls[piece.index].name = piece.name;
    calls[piece.index].arguments += piece.arguments;
  }
  const tokens = events.reduce((n, e) => n + e.tokenCount + (e.otherTokens ?? 0), 0);
  return { result, content, calls, tokens };
}

describe("generateChoice", () => {
  it("auto: text, then a call the model began by itself, with arguments that match the schema", async () => {
    const p = await plan(new EagerCaller(), "content", false);
    let began = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const { result, content, calls } = await run(p, seed);
      if (calls.length === 0) {
        // The model never wrote " was" before its answer ended: plain text.
        expect(result.finishReason === "stop" || result.finishReason === "length").toBe(true);
        continue;
      }
      began++;
      expect(result.finishReason).toBe("tool_calls");
      expect(content).not.toContain(" was");
      for (const call of calls) {
        expect(call.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
        expect(call.name).toBe("get_weather");
        expect(validate(JSON.parse(call.arguments))).toBe(true);
      }
    }
    expect(began).toBeGreaterThan(0);
  });

  it("required: calls only; completion tokens cover the call syntax written into the answer", async () => {
    const p = await plan(new FallbackChatWrapper(), "calls", false);
    for (let seed = 1; seed <= 3; seed++) {
      const { result, content, calls, tokens } = await run(p, seed);
      expect(content).toBe("");
      expect(calls).toHaveLength(1);
      expect(validate(JSON.parse(calls[0].arguments))).toBe(true);
      expect(result.finishReason).toBe("tool_calls");
      // Streamed argument tokens are part of the count, and the written syntax ("||call: get_weather(…)") too.
      expect(result.completionTokens).toBeGreaterThan(tokens);
    }
  });

  it("a fixed name is written, not generated, and the answer ends with 'stop' as OpenAI's named tool choice does", async () => {
    const p = await plan(new FallbackChatWrapper(), "calls");
    p.plan.fixedName = "get_weather";
    const { result, calls } = await run(p, 3);
    expect(calls.map((c) => c.name)).toEqual(["get_weather"]);
    expect(result.finishReason).toBe("stop");
  });

  it("parallel calls stop at MAX_CALLS_PER_ANSWER, and before max_tokens could cut one", async () => {
    const p = await plan(new FallbackChatWrapper(), "calls");
    const counts: number[] = [];
    for (let seed = 1; seed <= 4; seed++) {
      const { result, calls } = await run(p, seed, 1000);
      counts.push(calls.length);
      expect(result.finishReason).toBe("tool_calls");
      for (const call of calls) expect(validate(JSON.parse(call.arguments))).toBe(true);
    }
    expect(Math.max(...counts), counts.join(",")).toBe(MAX_CALLS_PER_ANSWER);
    // With room for about three calls, no call is started that the tokens left could not hold twice over.
    for (let seed = 1; seed <= 4; seed++) {
      const { result, calls } = await run(p, seed, 90);
      expect(result.finishReason, `seed ${seed}: ${calls.length} calls`).toBe("tool_calls");
      for (const call of calls) expect(validate(JSON.parse(call.arguments))).toBe(true);
    }
  });

  it("max_tokens cuts a call: finish_reason length, the tokens within the limit", async () => {
    const p = await plan(new FallbackChatWrapper(), "calls");
    const events: GenerationEvent[] = [];
    await slot.sequence.clearHistory();
    const result = await generateChoice(p.runtime, slot, p.plan, { temperature: 0 }, 9, 0, new AbortController().signal, (e) => events.push(e));
    expect(result.finishReason).toBe("length");
    expect(result.completionTokens).toBeLessThanOrEqual(9);
  });
});
