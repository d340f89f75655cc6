import { getLlama, LlamaCompletion, LlamaLogLevel, type LlamaContext, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testModelPath } from "../helpers/testModel.js";

// patches/node-llama-cpp+3.21.1.patch (applied by `npm ci`'s postinstall) changes two things in node-llama-cpp's
// batch dispatcher (docs/node-llama-cpp-patch.md has the reproductions for upstream):
// - it used to hold the context's lock for as long as any sequence kept queueing tokens, so erasing another
//   sequence's tokens (what prefix reuse does at the start of every request) waited until every other
//   generation had finished; patched, it lets go of the lock between batches;
// - it started a batch before every sequence of the last one had queued its next token, and the streams
//   split into groups decoded one after the other (twice the decodes for the same tokens); patched, a
//   batch waits (a macrotask turn) for them.

let model: LlamaModel;
let context: LlamaContext;

beforeAll(async () => {
  const llama = await getLlama({ build: "never", gpu: false, maxThreads: 1, logLevel: LlamaLogLevel.error });
  model = await llama.loadModel({ modelPath: testModelPath() });
  context = await model.createContext({ sequences: 4, contextSize: 1024, threads: 1 });
});
afterAll(async () => {
  await context?.dispose();
  await model?.dispose();
});

/** Counts the context's native decode calls (the addon object is frozen; the context's reference to it is not). */
function countDecodes(ctx: LlamaContext): { decodes: number } {
  const counter = { decodes: 0 };
  const holder = ctx as unknown as { _ctx: Record<string | symbol, unknown> };
  const native = holder._ctx;
  holder._ctx = new Proxy(native, {
    get(target, key) {
      const value = target[key];
      if (typeof value !== "function") return value;
      if (key === "decodeBatch") return (...args: unknown[]) => (counter.decodes++, (value as (...a: unknown[]) => unknown).apply(target, args));
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return counter;
}

describe("node-llama-cpp batch dispatcher (patched)", () => {
  it("decodes concurrent streams together: one decode per step, not one per group", async () => {
    const own = await model.createContext({ sequences: 8, contextSize: 256, threads: 1 });
    try {
      const counter = countDecodes(own);
      const steps = 48;
      const sequences = Array.from({ length: 8 }, () => own.getSequence());
      await Promise.all(
        sequences.map((sequence, i) =>
          new LlamaCompletion({ contextSequence: sequence }).generateCompletion(model.tokenize(`Story ${i}: the sun was shining`), { maxTokens: steps, temperature: 0, disableContextShift: true }),
        ),
      );
      // One decode per step for all 8 streams, their prompts in the first (measured: 48; unpatched 55–57 on this
      // model, up to twice the steps on larger ones, where the split persists).
      expect(counter.decodes).toBeLessThanOrEqual(steps + 2);
    } finally {
      await own.dispose();
    }
  });

  it("erasing one sequence's tokens completes while other sequences are still generating", async () => {
    const [idle, ...busy] = [context.getSequence(), context.getSequence(), context.getSequence(), context.getSequence()];
    await new LlamaCompletion({ contextSequence: idle }).generateCompletion(model.tokenize("Once upon a time there was a little dog."), { maxTokens: 1, temperature: 0 });
    expect(idle.nextTokenIndex).toBeGreaterThan(8);

    const maxTokens = 400;
    let generated = 0;
    let firstTokens!: () => void;
    const started = new Promise<void>((resolve) => (firstTokens = resolve));
    const runs = busy.map((sequence) =>
      new LlamaCompletion({ contextSequence: sequence }).generateCompletion(model.tokenize("The sun was shining"), {
        maxTokens,
        temperature: 0,
        disableContextShift: true,
        onToken: (tokens) => {
          generated += tokens.length;
          if (generated >= busy.length) firstTokens();
        },
      }),
    );
    await started;
    await idle.eraseContextTokenRanges([{ start: 4, end: idle.nextTokenIndex }]);
    const generatedAtErase = generated;
    await Promise.all(runs);
    expect(idle.nextTokenIndex).toBe(4);
    // Unpatched, the erase waits for all 3 × 400 tokens; patched, for the batch being decoded when it asked.
    expect(generated).toBe(busy.length * maxTokens);
    expect(generatedAtErase).toBeLessThan(generated / 2);
  });
});
