import { getLlama, LlamaCompletion, LlamaLogLevel, type LlamaContext, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testModelPath } from "../helpers/testModel.js";

// patches/node-llama-cpp+3.21.1.patch (applied by `npm ci`'s postinstall): node-llama-cpp's batch dispatcher
// used to hold the context's lock for as long as any sequence kept queueing tokens, so erasing another
// sequence's tokens (what prefix reuse does at the start of every request) waited until every other
// generation had finished. Patched, the dispatcher lets go of the lock between batches. See
// docs/node-llama-cpp-patch.md for the reproduction sent upstream.

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

describe("node-llama-cpp context lock (patched)", () => {
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
