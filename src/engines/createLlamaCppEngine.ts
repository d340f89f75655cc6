import type { LlamaCompletion, LlamaContextSequence, LlamaEmbeddingContext, LlamaModel, LlamaText, Token } from "node-llama-cpp";
import { SmmfError } from "../errors/SmmfError.js";
import { createAsyncQueue } from "../util/createAsyncQueue.js";
import { linkSignals } from "../util/linkSignals.js";
import { renderChatPrompt } from "./chatPrompt.js";
import { defaultThreads } from "./defaultThreads.js";
import type { EngineInstance, FinishReason, GenerationEvent, GenerationInput, SamplingOptions } from "./Engine.js";
import { getSharedLlama } from "./getSharedLlama.js";
import { resolveChatTemplate } from "./resolveChatTemplate.js";
import { SequencePool } from "./SequencePool.js";
import { StopMatcher, type Release } from "./StopMatcher.js";

/** A stop trigger made of plain text only (no special tokens). */
function isPlainText(trigger: LlamaText): boolean {
  return trigger.values.every((v) => typeof v === "string");
}

export interface LlamaCppEngineOptions {
  modelPath: string;
  /** Tokens of context per sequence; 0 or unset = the model's training context, at most 4096. */
  contextSize?: number;
  /** Concurrent generations; default 4. */
  sequences?: number;
  /** CPU threads; default from the machine's cores. */
  threads?: number;
  gpuLayers?: number;
  /** Use a GPU when one is usable ("auto", the default) or never (false). */
  gpu?: "auto" | false;
  /** Serve embeddings (an extra embedding context); default true. */
  embeddings?: boolean;
  chatTemplate?: "auto" | "fallback";
  /** Requests that may wait for a free sequence; more get resource_exhausted. */
  maxQueue?: number;
}

interface Slot {
  sequence: LlamaContextSequence;
  completion: LlamaCompletion;
}

/** Context size when neither the spec nor the model says less. */
export const MAX_DEFAULT_CONTEXT = 4096;
export const DEFAULT_SEQUENCES = 4;

/** Loads a GGUF model with node-llama-cpp and serves it as an EngineInstance. */
export async function createLlamaCppEngine(options: LlamaCppEngineOptions): Promise<EngineInstance> {
  const threads = options.threads || defaultThreads();
  const llama = await getSharedLlama(threads, options.gpu ?? "auto");
  const { LlamaCompletion } = await import("node-llama-cpp");
  let model: LlamaModel;
  try {
    model = await llama.loadModel({ modelPath: options.modelPath, gpuLayers: options.gpuLayers });
  } catch (err) {
    throw new SmmfError("failed_precondition", `could not load the GGUF model ${options.modelPath}: ${(err as Error).message}`, { cause: err });
  }
  const sequences = options.sequences || DEFAULT_SEQUENCES;
  const contextSize = options.contextSize || Math.min(model.trainContextSize, MAX_DEFAULT_CONTEXT);
  const context = await model.createContext({ sequences, contextSize, threads });
  const slots: Slot[] = [];
  for (let i = 0; i < sequences; i++) {
    const sequence = context.getSequence();
    slots.push({ sequence, completion: new LlamaCompletion({ contextSequence: sequence }) });
  }
  const pool = new SequencePool(slots, options.maxQueue ?? 256);
  let embeddingContext: LlamaEmbeddingContext | undefined;
  if (options.embeddings ?? true) embeddingContext = await model.createEmbeddingContext({ contextSize, threads });
  let embedQueue: Promise<unknown> = Promise.resolve();
  const chat = resolveChatTemplate(model, options.chatTemplate ?? "auto");
  const bosCount = model.tokens.shouldPrependBosToken && model.tokens.bos != null ? 1 : 0;

  function prepare(input: GenerationInput): { tokens: Token[]; stopTriggers: LlamaText[]; promptTokens: number } {
    if (input.kind === "prompt") {
      const tokens = model.tokenize(input.prompt + (input.continuation ?? ""));
      return { tokens, stopTriggers: [], promptTokens: tokens.length + bosCount };
    }
    const { tokens, stopTriggers } = renderChatPrompt(model, chat.wrapper, input.messages, input.continuation);
    return { tokens, stopTriggers, promptTokens: tokens.length + bosCount };
  }

  function checkLength(promptTokens: number, maxTokens: number | undefined): number {
    const requested = promptTokens + (maxTokens ?? 1);
    if (requested > contextSize) {
      const detail = maxTokens === undefined
        ? `your prompt has ${promptTokens} tokens`
        : `you requested ${requested} tokens (${promptTokens} in the prompt, ${maxTokens} in the completion)`;
      throw new SmmfError("context_length_exceeded", `This model's maximum context length is ${contextSize} tokens. However, ${detail}. Please reduce the length of the prompt or of max_tokens.`, {
        param: maxTokens !== undefined && promptTokens < contextSize ? "max_tokens" : "messages",
      });
    }
    return maxTokens ?? contextSize - promptTokens;
  }

  async function* generate(input: GenerationInput, sampling: SamplingOptions, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    const started = performance.now();
    const { tokens, stopTriggers, promptTokens } = prepare(input);
    const maxTokens = checkLength(promptTokens, sampling.maxTokens);
    const slot = await pool.acquire(signal);
    yield { type: "started", promptTokens };
    const abort = linkSignals(signal);
    const queue = createAsyncQueue<GenerationEvent>({ deferWake: true });
    let completionTokens = 0;
    let pendingTokens = 0;
    // Text stop strings are matched here, so that text held back while it might begin one is still sent
    // (and counted) when the generation ends for another reason; special-token triggers stay with llama.cpp.
    const textStops = [...stopTriggers.filter(isPlainText).map((t) => t.toString()), ...(sampling.stop ?? [])];
    const tokenStops = stopTriggers.filter((t) => !isPlainText(t));
    const matcher = new StopMatcher(textStops.filter((t) => t.length > 0));
    const release = (releases: Release[]) => {
      for (const r of releases) {
        completionTokens += r.tokenCount;
        queue.push({ type: "delta", text: r.text, tokenCount: r.tokenCount });
      }
    };
    const penalties = sampling.frequencyPenalty || sampling.presencePenalty;
    const run = slot.completion
      .generateCompletionWithMeta(tokens, {
        signal: abort.signal,
        stopOnAbortSignal: true,
        maxTokens,
        temperature: sampling.temperature,
        topP: sampling.topP,
        topK: sampling.topK,
        seed: sampling.seed,
        repeatPenalty: penalties
          ? { penalty: 1, frequencyPenalty: sampling.frequencyPenalty, presencePenalty: sampling.presencePenalty }
          : false,
        customStopTriggers: tokenStops.length > 0 ? tokenStops : undefined,
        contextShiftSize: 1,
        disableContextShift: true,
        onToken(generated) {
          pendingTokens += generated.length;
        },
        onTextChunk(text) {
          if (pendingTokens === 0) return;
          const count = pendingTokens;
          pendingTokens = 0;
          release(matcher.push(text, count));
          if (matcher.hasStopped) abort.abort();
        },
      })
      .then(({ metadata }) => {
        release(matcher.flush());
        if (pendingTokens > 0) release([{ text: "", tokenCount: pendingTokens }]);
        const finishReason: FinishReason = matcher.hasStopped
          ? "stop"
          : metadata.stopReason === "abort"
            ? "cancelled"
            : metadata.stopReason === "maxTokens"
              ? "length"
              : "stop";
        queue.push({ type: "done", finishReason, promptTokens, completionTokens, engineTimeMs: performance.now() - started });
        queue.end();
      }, (err: unknown) => queue.fail(err));
    let finished = false;
    try {
      yield* queue;
      finished = true;
    } finally {
      // Finished: the run is over and only lets go of the caller's signal; ended early: stop the run.
      if (finished) abort.unlink();
      else abort.abort();
      await run.catch(() => undefined);
      // Clear the sequence before it serves again, off this request's path: reusing one that still holds an
      // old answer makes the next request erase it first, and that erase waits behind every other sequence's
      // decoding (measured: first tokens ~1.5 s late under load). Prefix reuse between requests is given up.
      void slot.sequence
        .clearHistory()
        .catch(() => undefined)
        .finally(() => pool.release(slot));
    }
  }

  async function embedOne(text: string): Promise<{ vector: Float32Array; tokens: number }> {
    if (!embeddingContext) throw new SmmfError("invalid_argument", "this model instance does not serve embeddings", { param: "model" });
    const tokens = model.tokenize(text).length + bosCount;
    if (tokens > contextSize) {
      throw new SmmfError("context_length_exceeded", `This model's maximum context length is ${contextSize} tokens, but an input has ${tokens} tokens.`, { param: "input" });
    }
    const embedding = await embeddingContext.getEmbeddingFor(text);
    return { vector: Float32Array.from(embedding.vector), tokens };
  }

  return {
    info: { engine: "llama.cpp", contextSize, embeddingSize: embeddingContext ? model.embeddingVectorSize : 0, maxConcurrency: sequences },
    inFlight: () => pool.inUse(),
    generate,
    embed(inputs, signal) {
      const job = embedQueue.then(async () => {
        const vectors: Float32Array[] = [];
        let promptTokens = 0;
        for (const text of inputs) {
          if (signal.aborted) throw new SmmfError("cancelled", "request cancelled");
          const { vector, tokens } = await embedOne(text);
          vectors.push(vector);
          promptTokens += tokens;
        }
        return { vectors, promptTokens };
      });
      embedQueue = job.catch(() => undefined);
      return job;
    },
    async countTokens(input) {
      return prepare(input).promptTokens;
    },
    async close() {
      pool.rejectAll(new SmmfError("unavailable", "the instance is shutting down"));
      await embeddingContext?.dispose();
      await context.dispose();
      await model.dispose();
    },
  };
}
