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
