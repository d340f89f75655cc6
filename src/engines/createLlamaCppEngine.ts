import { LlamaText, type ChatModelFunctions, type GbnfJsonSchema, type LlamaEmbeddingContext, type LlamaRankingContext, type LlamaGrammar, type LlamaModel, type Token } from "node-llama-cpp";
import { SmmfError } from "../errors/SmmfError.js";
import { createAsyncQueue } from "../util/createAsyncQueue.js";
import { linkSignals } from "../util/linkSignals.js";
import { renderChatPrompt } from "./chatPrompt.js";
import { generateChoice, withBos, type ChoicePlan, type ChoiceRuntime, type Slot } from "./generateChoice.js";
import { GrammarCache, toGrammarSchema } from "./jsonSchemaGrammar.js";
import { checkLlamaCppExtra } from "./llamaCppExtraFields.js";
import { tokenBytesOf } from "./tokenBytes.js";
import { defaultThreads } from "./defaultThreads.js";
import { DEFAULT_SEQUENCES, MAX_DEFAULT_CONTEXT } from "./llamaCppDefaults.js";
import type { EngineInstance, GenerationEvent, GenerationInput, RerankResult, SamplingOptions } from "./Engine.js";
import { getSharedLlama } from "./getSharedLlama.js";
import { resolveChatTemplate } from "./resolveChatTemplate.js";
import { SequencePool } from "./SequencePool.js";
import { slotPreference } from "./slotPreference.js";

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
  /** Keep each sequence's tokens after a request for the next one that shares a prefix (default true). */
  prefixCache?: boolean;
}

/** The arguments of a function that declares none: an empty object. */
const NO_ARGUMENTS = { type: "object", properties: {}, additionalProperties: false };


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
  const prefixCache = options.prefixCache ?? true;
  let embeddingContext: LlamaEmbeddingContext | undefined;
  let rankingContext: LlamaRankingContext | undefined;
  if (options.embeddings ?? true) embeddingContext = await model.createEmbeddingContext({ contextSize, threads });
  let embedQueue: Promise<unknown> = Promise.resolve();
  const chat = resolveChatTemplate(model, options.chatTemplate ?? "auto");
  const bosCount = model.tokens.shouldPrependBosToken && model.tokens.bos != null ? 1 : 0;

  const runtime: ChoiceRuntime = { model, wrapper: chat.wrapper, contextSize, tokenBytes: tokenBytesOf(model) };
  const grammars = new GrammarCache(llama);
  const nameGrammars = new Map<string, Promise<LlamaGrammar>>();

  /** A grammar from GBNF text, kept per text (tool names, the start of another call). */
  function gbnfGrammar(gbnf: string): Promise<LlamaGrammar> {
    let grammar = nameGrammars.get(gbnf);
    if (!grammar) {
      if (nameGrammars.size >= 256) nameGrammars.delete(nameGrammars.keys().next().value as string);
      nameGrammars.set(gbnf, (grammar = llama.createGrammar({ grammar: gbnf })));
      grammar.catch(() => nameGrammars.delete(gbnf));
    }
    return grammar;
  }

  /** A schema's grammar; one llama.cpp cannot build is the caller's schema's fault, not a server error. */
  async function schemaGrammar(schema: GbnfJsonSchema, param: string): Promise<LlamaGrammar> {
    try {
      return await grammars.forSchema(schema);
    } catch (err) {
      if (err instanceof SmmfError) throw err;
      throw new SmmfError("invalid_argument", `${param}: this schema cannot be turned into a grammar (${String((err as Error)?.message ?? err).slice(0, 200)})`, { param });
    }
  }

  function promptOnly(tokens: Token[]): ChoicePlan {
    return { mode: "content", tools: [], parallel: false, promptTokens: tokens, textStops: [], tokenStops: [] };
  }

  /** The prompt and the plan of each answer: tools, grammars, stop strings. */
  async function prepare(input: GenerationInput, sampling: SamplingOptions): Promise<{ plan: ChoicePlan; promptTokens: number }> {
    if (input.kind === "prompt") {
      const tokens = model.tokenize(input.prompt + (input.continuation ?? ""));
      return { plan: promptOnly(tokens), promptTokens: tokens.length + bosCount };
    }
    const toolsOn = (input.tools?.length ?? 0) > 0 && input.toolChoice?.mode !== "none";
    const schemas = toolsOn
      ? input.tools!.map((t, i) => toGrammarSchema(t.parameters ?? NO_ARGUMENTS, `tools[${i}].function.parameters`, t.strict))
      : [];
    const functions: ChatModelFunctions | undefined = toolsOn
      ? Object.fromEntries(input.tools!.map((t, i) => [t.name, { ...(t.description ? { description: t.description } : {}), params: schemas[i] }]))
      : undefined;
    const { tokens, stopTriggers, contextText } = renderChatPrompt(model, chat.wrapper, input.messages, input.continuation, functions);
    const plan: ChoicePlan = {
      mode: "content",
      tools: [],
      parallel: input.parallelToolCalls ?? true,
      contextText,
      promptTokens: tokens,
      textStops: stopTriggers.filter(isPlainText).map((t) => t.toString()),
      tokenStops: stopTriggers.filter((t) => !isPlainText(t)),
    };
    const format = input.responseFormat;
    if (format?.type === "json_object") plan.contentGrammar = await grammars.json();
    else if (format?.type === "json_schema") plan.contentGrammar = await schemaGrammar(toGrammarSchema(format.schema, "response_format.json_schema.schema", format.strict), "response_format.json_schema.schema");
    if (plan.contentGrammar && sampling.logprobs) {
      throw new SmmfError("invalid_argument", "'logprobs' cannot be combined with 'response_format' on this model (llama.cpp reports probabilities after its grammar has changed them).", { param: "logprobs" });
    }
    if (toolsOn) {
      plan.tools = await Promise.all(input.tools!.map(async (t, i) => ({ name: t.name, grammar: await schemaGrammar(schemas[i], `tools[${i}].function.parameters`) })));
      const choice = input.toolChoice;
      if (choice?.mode === "required" || choice?.mode === "function") plan.mode = "calls";
      if (choice?.mode === "function") plan.fixedName = choice.name;
      const settings = chat.wrapper.settings.functions;
      const space = settings.call.optionalPrefixSpace ? "[ ]? " : "";
      plan.nameGrammar = await gbnfGrammar(`root ::= ${space}(${plan.tools.map((t) => JSON.stringify(t.name)).join(" | ")})`);
      const next = LlamaText([settings.parallelism?.call.betweenCalls ?? "", settings.call.prefix]);
      if (next.values.every((v) => typeof v === "string")) plan.moreCallsGrammar = await gbnfGrammar(`root ::= (${JSON.stringify(next.toString())})?`);
    }
    return { plan, promptTokens: tokens.length + bosCount };
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
    const n = sampling.n ?? 1;
    checkLlamaCppExtra(sampling.extra, n);
    const { plan, promptTokens } = await prepare(input, sampling);
    const maxTokens = checkLength(promptTokens, sampling.maxTokens);
    // The sequence whose cache holds most of the prompt (a previous turn, a shared system prompt; see
    // slotPreference); only the tokens after the common part are evaluated. Else the least recently used.
    const fed = withBos(model, plan.promptTokens); // as the sequence will hold them (LlamaCompletion adds BOS too)
    const common = (slot: Slot) => slot.sequence.compareContextTokens(fed).firstDifferentIndex;
    const prefer = (slot: Slot) => slotPreference(slot.sequence.nextTokenIndex, common(slot), fed.length);
    // The first answer's sequence is had before the generation counts as started (a full queue fails it here).
    const firstSlot = await pool.acquire(signal, prefer);
    // At least the prompt's last token is evaluated again (its logits start the answer).
    const cachedPromptTokens = Math.min(common(firstSlot), fed.length - 1);
    yield { type: "started", promptTokens };
    const abort = linkSignals(signal);
    const queue = createAsyncQueue<GenerationEvent>({ deferWake: true });
    const emit = (event: GenerationEvent) => queue.push(event);
    const answer = async (index: number, slot?: Slot) => {
      slot ??= await pool.acquire(abort.signal, prefer);
      let failed = true;
      try {
        // Each answer of n draws its own tokens: a given seed seeds answer i with seed + i.
        const own = index === 0 || sampling.seed === undefined ? sampling : { ...sampling, seed: (sampling.seed + index) >>> 0 };
        const result = await generateChoice(runtime, slot, plan, own, maxTokens, index, abort.signal, emit);
        failed = false;
        return result;
      } finally {
        // The sequence keeps this request's tokens for the next one that shares a prefix with them (the next
        // request erases what differs; node-llama-cpp is patched so that waits for one decode at most). After
        // a failure (or with the prefix cache off), it is cleared first, off this request's path.
        const used = slot;
        if (failed || !prefixCache) {
          void used.sequence
            .clearHistory()
            .catch(() => undefined)
            .finally(() => pool.release(used));
        } else pool.release(used);
      }
    };
    const run = Promise.all(Array.from({ length: n }, (_, i) => answer(i, i === 0 ? firstSlot : undefined))).then((results) => {
      const completionTokens = results.reduce((sum, r) => sum + r.completionTokens, 0);
      const finishReasons = results.map((r) => r.finishReason);
      queue.push({
        type: "done",
        finishReason: finishReasons[0],
        promptTokens,
        completionTokens,
        cachedPromptTokens,
        engineTimeMs: performance.now() - started,
        ...(n > 1 ? { choiceFinishReasons: finishReasons } : {}),
        ...(results[0].stopSequence !== undefined ? { stopSequence: results[0].stopSequence } : {}),
      });
      queue.end();
    }, (err: unknown) => {
      abort.abort();
      queue.fail(err);
    });
    let finished = false;
    try {
      yield* queue;
      finished = true;
    } finally {
      // Finished: the run is over and only lets go of the caller's signal; ended early: stop the run.
      if (finished) abort.unlink();
      else abort.abort();
      await run.catch(() => undefined);
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
    // A reranker GGUF (a ranking head and template): its own scores; other models have no rerank here.
    ...(model.fileInsights.supportsRanking
      ? {
          rerank(query: string, documents: string[], signal: AbortSignal) {
            const job = embedQueue.then(async (): Promise<RerankResult> => {
              if (signal.aborted) throw new SmmfError("cancelled", "request cancelled");
              rankingContext ??= await model.createRankingContext({ contextSize, threads });
              const scores = await rankingContext.rankAll(query, documents);
              const promptTokens = [query, ...documents].reduce((n, t) => n + model.tokenize(t).length + bosCount, 0);
              return { scores, promptTokens, method: "ranking" };
            });
            embedQueue = job.catch(() => undefined);
            return job;
          },
        }
      : {}),
    async countTokens(input) {
      return (await prepare(input, {})).promptTokens;
    },
    async close() {
      pool.rejectAll(new SmmfError("unavailable", "the instance is shutting down"));
      await embeddingContext?.dispose();
      await rankingContext?.dispose();
      await context.dispose();
      await model.dispose();
    },
  };
}
