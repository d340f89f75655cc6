import { create } from "@bufbuild/protobuf";
import { createHandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import type { GenerationEvent } from "../engines/Engine.js";
import { FinishReason, GenerateRequestSchema, InferenceService, type GenerateRequest, type GenerateResponse } from "../gen/smmf/v1/inference_pb.js";
import { createLogger } from "../telemetry/createLogger.js";
import { createWorkerInferenceService, toGenerateResponses } from "./createWorkerInferenceService.js";
import type { Worker } from "./Worker.js";

async function* events(list: (GenerationEvent | { wait: number })[]): AsyncGenerator<GenerationEvent> {
  for (const item of list) {
    if ("wait" in item) await new Promise((r) => setTimeout(r, item.wait));
    else yield item;
  }
}

const delta = (text: string, tokenCount = 1): GenerationEvent => ({ type: "delta", text, tokenCount });
const done: GenerationEvent = { type: "done", finishReason: "length", promptTokens: 3, completionTokens: 5, engineTimeMs: 1 };

async function collect(source: AsyncIterable<GenerateResponse>) {
  const out: GenerateResponse[] = [];
  for await (const r of source) out.push(r);
  return out.map((r) => (r.kind.case === "delta" ? r.kind.value.pieces : r.kind.case === "done" ? r.kind.value : undefined));
}

describe("toGenerateResponses", () => {
  it("with interval 0 sends every token at once", async () => {
    const out = await collect(toGenerateResponses(events([delta("a"), delta("b"), delta("c"), done]), "i1", 0));
    expect(out.slice(0, 3)).toEqual([["a"], ["b"], ["c"]]);
    expect(out[3]).toMatchObject({ finishReason: FinishReason.LENGTH, instanceId: "i1", usage: { promptTokens: 3, completionTokens: 5 } });
  });

  it("sends the first token at once and groups the tokens that follow within the interval", async () => {
    const out = await collect(toGenerateResponses(events([delta("a"), delta("b"), delta("c"), { wait: 30 }, delta("d"), delta("e"), done]), "i1", 20));
    expect(out.slice(0, -1)).toEqual([["a"], ["b", "c", "d"], ["e"]]);
  });

  it("gives a delta that stands for several tokens one piece each, empty after the first", async () => {
    const out = await collect(toGenerateResponses(events([delta("é", 2), delta("x"), done]), "i1", 1000));
    expect(out.slice(0, -1)).toEqual([["é", ""], ["x"]]);
    expect(out.slice(0, -1).flat()).toHaveLength(3);
  });

  it("ends with done even when no token was generated", async () => {
    const out = await collect(toGenerateResponses(events([done]), "i1", 20));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ instanceId: "i1" });
  });
});

describe("createWorkerInferenceService: the engine's signal", () => {
  /** A worker with one instance whose engine answers two tokens and remembers the signal it was given. */
  function workerWithEngine() {
    const seen: { signal?: AbortSignal; aborts: number } = { aborts: 0 };
    const engine = {
      async *generate(_input: unknown, _sampling: unknown, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
        seen.signal = signal;
        signal.addEventListener("abort", () => seen.aborts++);
        yield { type: "started", promptTokens: 2 };
        yield delta("a");
        yield delta("b");
        yield done;
      },
    };
    const worker = { id: "w1", resolve: () => ({ record: { instanceId: "i1", model: "m", engine: "fake" }, engine }) } as unknown as Worker;
    return { seen, service: createWorkerInferenceService(worker, createLogger("error", "test")) };
  }

  async function* startOnly(): AsyncGenerator<GenerateRequest> {
    yield create(GenerateRequestSchema, { kind: { case: "start", value: { model: "m", input: { case: "prompt", value: "Once" } } } });
  }

  const context = () =>
    createHandlerContext({ service: InferenceService, method: InferenceService.method.generate, protocolName: "grpc", requestMethod: "POST", url: "http://127.0.0.1/smmf.v1.InferenceService/Generate" });

  it("a generation that finishes never aborts its engine's signal (an upstream connection stays reusable)", async () => {
    const { seen, service } = workerWithEngine();
    const out = await collect(service.generate!(startOnly(), context()) as AsyncIterable<GenerateResponse>);
    expect(out.at(-1)).toMatchObject({ finishReason: FinishReason.LENGTH });
    expect(seen.signal?.aborted).toBe(false);
    expect(seen.aborts).toBe(0);
  });

  it("a call that ends early (the caller stopped reading) aborts it", async () => {
    const { seen, service } = workerWithEngine();
    const responses = (service.generate!(startOnly(), context()) as AsyncGenerator<GenerateResponse>)[Symbol.asyncIterator]();
    await responses.next();
    await responses.return(undefined);
    expect(seen.signal?.aborted).toBe(true);
    expect(seen.aborts).toBe(1);
  });
});

describe("toGenerateResponses: tool calls, logprobs, refusals, n answers", () => {
  type Delta = Extract<GenerationEvent, { type: "delta" }>;
  const d = (text: string, more: Partial<Delta> = {}): GenerationEvent => ({ type: "delta", text, tokenCount: text ? 1 : 0, ...more });

  async function responses(list: (GenerationEvent | { wait: number })[], intervalMs: number) {
    const out: GenerateResponse[] = [];
    for await (const r of toGenerateResponses(events(list), "i1", intervalMs)) out.push(r);
    const deltas = out.flatMap((r) => (r.kind.case === "delta" ? [r.kind.value] : []));
    const last = out.at(-1)!;
    expect(last.kind.case).toBe("done");
    return { deltas, done: last.kind.case === "done" ? last.kind.value : undefined };
  }

  it("never merges deltas of different answers into one message, even within the interval", async () => {
    const { deltas } = await responses([d("a", { index: 0 }), d("b", { index: 1 }), d("c", { index: 1 }), d("d", { index: 0 }), d("e"), d("f", { index: 2 }), done], 10_000);
    expect(deltas.map((x) => [x.index, x.pieces])).toEqual([
      [0, ["a"]],
      [1, ["b", "c"]],
      [0, ["d", "e"]],
      [2, ["f"]],
    ]);
  });

  it("with interval 0 each delta keeps its own answer's index", async () => {
    const { deltas } = await responses([d("a", { index: 1 }), d("b", { index: 0 }), d("c", { index: 1 }), done], 0);
    expect(deltas.map((x) => [x.index, x.pieces])).toEqual([
      [1, ["a"]],
      [0, ["b"]],
      [1, ["c"]],
    ]);
  });

  it("the first message carries the prompt tokens, whatever its answer", async () => {
    const { deltas } = await responses([{ type: "started", promptTokens: 7 }, d("a", { index: 1 }), d("b", { index: 0 }), done], 10_000);
    expect(deltas.map((x) => x.promptTokens)).toEqual([7, 0]);
  });

  it("carries tool-call pieces in order (id and name first), with their tokens in otherTokens and no content pieces", async () => {
    const { deltas } = await responses(
      [
        d("", { toolCalls: [{ index: 0, id: "call_1", name: "get_weather", arguments: "" }], otherTokens: 0 }),
        d("", { toolCalls: [{ index: 0, arguments: '{"city":' }], otherTokens: 3 }),
        d("", { toolCalls: [{ index: 0, arguments: '"Paris"}' }], otherTokens: 2 }),
        d("", { toolCalls: [{ index: 1, id: "call_2", name: "now", arguments: "{}" }], otherTokens: 1 }),
        { ...done, finishReason: "tool_calls" },
      ],
      10_000,
    );
    expect(deltas.map((x) => x.pieces)).toEqual([[], []]);
    expect(deltas[0].toolCalls.map((c) => ({ index: c.index, id: c.id, name: c.name, arguments: c.arguments }))).toEqual([{ index: 0, id: "call_1", name: "get_weather", arguments: "" }]);
    expect(deltas[1].toolCalls.map((c) => ({ index: c.index, id: c.id, name: c.name, arguments: c.arguments }))).toEqual([
      { index: 0, id: "", name: "", arguments: '{"city":' },
      { index: 0, id: "", name: "", arguments: '"Paris"}' },
      { index: 1, id: "call_2", name: "now", arguments: "{}" },
    ]);
    expect(deltas.map((x) => x.otherTokens)).toEqual([0, 6]);
    const args = deltas.flatMap((x) => x.toolCalls).filter((c) => c.index === 0).map((c) => c.arguments).join("");
    expect(JSON.parse(args)).toEqual({ city: "Paris" });
  });

  it("a delta with tokenCount 0 carries no pieces; one of several tokens carries one piece per token", async () => {
    const { deltas } = await responses([d("", { tokenCount: 0, toolCalls: [{ index: 0, id: "c", name: "f", arguments: "" }] }), d("ab", { tokenCount: 3 }), done], 0);
    expect(deltas.map((x) => x.pieces)).toEqual([[], ["ab", "", ""]]);
  });

  it("carries logprobs, one per content token, with their bytes as bytes", async () => {
    const lp = (token: string, logprob: number, bytes: number[], top: { token: string; logprob: number; bytes: number[] }[] = []) => ({ token, logprob, bytes, top });
    const { deltas } = await responses(
      [
        d("Hi", { logprobs: [lp("Hi", -0.5, [72, 105], [{ token: "Hi", logprob: -0.5, bytes: [72, 105] }, { token: "Yo", logprob: -1.25, bytes: [89, 111] }])] }),
        d("", { tokenCount: 1, logprobs: [lp("\uFFFD", -2, [0xe6])] }),
        d("日", { tokenCount: 2, logprobs: [lp("\uFFFD", -0.1, [0x97]), lp("\uFFFD", -0.2, [0xa5])] }),
        done,
      ],
      10_000,
    );
    expect(deltas.map((x) => x.pieces)).toEqual([["Hi"], ["", "日", ""]]);
    const all = deltas.flatMap((x) => x.logprobs);
    expect(deltas.map((x) => x.logprobs.length)).toEqual(deltas.map((x) => x.pieces.length));
    expect(all.map((x) => x.logprob)).toEqual([-0.5, -2, -0.1, -0.2]);
    for (const x of all) expect(x.bytes).toBeInstanceOf(Uint8Array);
    expect(Array.from(all[0].bytes)).toEqual([72, 105]);
    expect(Buffer.concat(all.slice(1).map((x) => x.bytes)).toString("utf8")).toBe("日");
    expect(all[0].top.map((t) => [t.token, t.logprob, Array.from(t.bytes)])).toEqual([
      ["Hi", -0.5, [72, 105]],
      ["Yo", -1.25, [89, 111]],
    ]);
    expect(all[0].top[1].bytes).toBeInstanceOf(Uint8Array);
    expect(all[1].top).toEqual([]);
  });

  it("carries a refusal, its pieces joined within one message, its tokens in otherTokens", async () => {
    const { deltas, done: end } = await responses(
      [d("", { refusal: "I can't ", otherTokens: 2 }), d("", { refusal: "help ", otherTokens: 1 }), d("", { refusal: "with that.", otherTokens: 3 }), { ...done, finishReason: "content_filter" }],
      10_000,
    );
    expect(deltas.map((x) => [x.refusal, x.otherTokens, x.pieces])).toEqual([
      ["I can't ", 2, []],
      ["help with that.", 4, []],
    ]);
    expect(end?.finishReason).toBe(FinishReason.CONTENT_FILTER);
  });

  it("done carries the TOOL_CALLS finish reason and, with n > 1, each answer's finish reason", async () => {
    const { done: end } = await responses(
      [d("a", { index: 0 }), d("", { index: 1, toolCalls: [{ index: 0, id: "c", name: "f", arguments: "{}" }], otherTokens: 4 }), { ...done, finishReason: "stop", choiceFinishReasons: ["stop", "tool_calls", "length", "content_filter"] }],
      0,
    );
    expect(end?.finishReason).toBe(FinishReason.STOP);
    expect(end?.choiceFinishReasons).toEqual([FinishReason.STOP, FinishReason.TOOL_CALLS, FinishReason.LENGTH, FinishReason.CONTENT_FILTER]);
    const single = await responses([{ ...done, finishReason: "tool_calls" }], 0);
    expect(single.done?.finishReason).toBe(FinishReason.TOOL_CALLS);
    expect(single.done?.choiceFinishReasons).toEqual([]);
  });
});
