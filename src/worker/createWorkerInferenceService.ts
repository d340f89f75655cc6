import { create } from "@bufbuild/protobuf";
import {
  CountTokensResponseSchema,
  EmbedResponseSchema,
  FinishReason,
  TokenLogprobSchema,
  ToolCallSchema,
  type CountTokensRequest,
  type CountTokensResponse,
  type EmbedRequest,
  type EmbedResponse,
  type GenerateDelta,
  type GenerateRequest,
  type GenerateResponse,
  RerankMethod,
  type RerankRequest,
  type RerankResponse,
} from "../gen/smmf/v1/inference_pb.js";
import { rerankByEmbeddings } from "./rerankByEmbeddings.js";
import type { GenerationEvent } from "../engines/Engine.js";
import { asConnectError } from "../errors/asConnectError.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { linkSignals } from "../util/linkSignals.js";
import { SpanKind, SpanStatusCode, trace, type Context } from "@opentelemetry/api";
import { disabledTelemetry, type Telemetry } from "../telemetry/Telemetry.js";
import type { ResolvedInstance } from "./HostedInstance.js";
import { readGenerateStart, watchForCancel } from "../util/watchForCancel.js";
import { parseGenerateStart, parseInput } from "./parseGenerateStart.js";
import type { Worker } from "./Worker.js";

const FINISH: Record<string, FinishReason> = {
  stop: FinishReason.STOP,
  length: FinishReason.LENGTH,
  cancelled: FinishReason.CANCELLED,
  tool_calls: FinishReason.TOOL_CALLS,
  content_filter: FinishReason.CONTENT_FILTER,
};

// The request path's messages are made as literals, complete (a field added to the contract fails to compile
// here): protobuf-es's create() converts its argument field by field, ~2 KB allocated per message.

/** An empty GenerateDelta. */
function emptyDelta(): GenerateDelta {
  return { $typeName: "smmf.v1.GenerateDelta", pieces: [], promptTokens: 0, index: 0, toolCalls: [], logprobs: [], refusal: "", otherTokens: 0 };
}

function deltaOf(value: GenerateDelta): GenerateResponse {
  return { $typeName: "smmf.v1.GenerateResponse", kind: { case: "delta", value } };
}

export function deltaResponse(pieces: string[], promptTokens = 0): GenerateResponse {
  const delta = emptyDelta();
  delta.pieces = pieces;
  delta.promptTokens = promptTokens;
  return deltaOf(delta);
}

export function doneResponse(event: Extract<GenerationEvent, { type: "done" }>, instanceId: string, workerTimeMs = 0): GenerateResponse {
  return {
    $typeName: "smmf.v1.GenerateResponse",
    kind: {
      case: "done",
      value: {
        $typeName: "smmf.v1.GenerateDone",
        finishReason: FINISH[event.finishReason],
        usage: { $typeName: "smmf.v1.Usage", promptTokens: event.promptTokens, completionTokens: event.completionTokens, cachedPromptTokens: event.cachedPromptTokens ?? 0 },
        instanceId,
        engineTimeMs: event.engineTimeMs,
        workerTimeMs,
        choiceFinishReasons: event.choiceFinishReasons?.map((f) => FINISH[f]) ?? [],
        stopSequence: event.stopSequence ?? "",
      },
    },
  };
}

/**
 * Engine events as Generate responses: the first token goes out at once; later tokens that arrive within
 * `intervalMs` of the last message are sent together in one delta (one piece per token), which keeps the
 * per-message cost of gRPC and SSE off fast models' token rate while adding at most `intervalMs` of delay.
 */
export async function* toGenerateResponses(events: AsyncIterable<GenerationEvent>, instanceId: string, intervalMs: number, startedAt = performance.now(), observer?: GenerationObserver): AsyncGenerator<GenerateResponse> {
  let outcome: { err?: unknown } | undefined;
  try {
    yield* batchedResponses(events, instanceId, intervalMs, startedAt, observer);
    outcome = {};
  } catch (err) {
    outcome = { err };
    throw err;
  } finally {
    // Neither finished nor failed: the caller stopped reading (the request was cancelled).
    observer?.end(outcome ? outcome.err : new SmmfError("cancelled", "request cancelled"));
  }
}

/** The delta being gathered for the next message: tokens of one answer. */
class PendingDelta {
  delta: GenerateDelta = emptyDelta();
  empty = true;

  add(event: Extract<GenerationEvent, { type: "delta" }>): void {
    const d = this.delta;
    d.index = event.index ?? 0;
    if (event.tokenCount > 0) {
      d.pieces.push(event.text);
      for (let i = 1; i < event.tokenCount; i++) d.pieces.push("");
    }
    if (event.toolCalls) for (const c of event.toolCalls) d.toolCalls.push(create(ToolCallSchema, { index: c.index, id: c.id ?? "", name: c.name ?? "", arguments: c.arguments }));
    if (event.logprobs) {
      for (const lp of event.logprobs) {
        d.logprobs.push(create(TokenLogprobSchema, { token: lp.token, logprob: lp.logprob, bytes: Uint8Array.from(lp.bytes), top: lp.top.map((t) => create(TokenLogprobSchema, { token: t.token, logprob: t.logprob, bytes: Uint8Array.from(t.bytes) })) }));
      }
    }
    if (event.refusal) d.refusal += event.refusal;
    d.otherTokens += event.otherTokens ?? 0;
    this.empty = false;
  }

  take(promptTokens: number): GenerateResponse {
    const value = this.delta;
    value.promptTokens = promptTokens;
    this.delta = emptyDelta();
    this.empty = true;
    return deltaOf(value);
  }
}

async function* batchedResponses(events: AsyncIterable<GenerationEvent>, instanceId: string, intervalMs: number, startedAt: number, observer?: GenerationObserver): AsyncGenerator<GenerateResponse> {
  const pending = new PendingDelta();
  let lastSent = -Infinity;
  let promptTokens = 0;
  for await (const event of events) {
    observer?.event(event);
    if (event.type === "started") {
      promptTokens = event.promptTokens;
    } else if (event.type === "delta") {
      // A delta carries tokens of one answer only.
      if (!pending.empty && pending.delta.index !== (event.index ?? 0)) {
        yield pending.take(promptTokens);
        promptTokens = 0;
      }
      pending.add(event);
      const now = performance.now();
      if (now - lastSent >= intervalMs) {
        yield pending.take(promptTokens);
        promptTokens = 0;
        lastSent = now;
      }
    } else {
      if (!pending.empty) yield pending.take(promptTokens);
      // The generation is over: its metrics and spans are recorded now, within the worker's own time.
      observer?.end();
      yield doneResponse(event, instanceId, performance.now() - startedAt);
    }
  }
}

/** Hears a generation's events on the worker (metrics, the engine's span) without another stream layer. */
interface GenerationObserver {
  event(event: GenerationEvent): void;
  /** The generation is over (with the error when it failed); only the first call counts. */
  end(err?: unknown): void;
}

/**
 * The engine's part of a generation, observed: its span (a child of the worker's) ends with the generation;
 * metrics count the generation, its tokens and its duration by model, instance and engine.
 */
function observeEngine(telemetry: Telemetry, hosted: ResolvedInstance, parent: Context, signal: AbortSignal, onEnd: (failure?: SmmfError) => void): GenerationObserver {
  const { tracing, metrics } = telemetry;
  const { model, instanceId, engine } = hosted.record;
  const span = tracing.enabled ? tracing.tracer.startSpan(`engine ${engine}`, { kind: SpanKind.INTERNAL, attributes: { "smmf.engine": engine, "gen_ai.request.model": model } }, parent) : undefined;
  const started = performance.now();
  let finish = "error";
  let ended = false;
  return {
    event(event) {
      if (event.type !== "done") return;
      finish = event.finishReason;
      metrics.workerTokens.inc(event.promptTokens, model, engine, "prompt");
      metrics.workerTokens.inc(event.completionTokens, model, engine, "completion");
      span?.setAttributes({ "gen_ai.usage.input_tokens": event.promptTokens, "gen_ai.usage.output_tokens": event.completionTokens, "gen_ai.response.finish_reasons": [event.finishReason] });
    },
    end(err) {
      if (ended) return;
      ended = true;
      let failure: SmmfError | undefined;
      if (err !== undefined) {
        const error = toSmmfError(err);
        // Stopped before its done event could be read (the caller went away): a cancellation all the same.
        if (finish === "error" && (error.code === "cancelled" || signal.aborted)) finish = "cancelled";
        else failure = error;
      }
      if (failure) span?.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
      metrics.generations.inc(1, model, instanceId, engine, finish);
      metrics.generationDuration.observe((performance.now() - started) / 1000, model, engine);
      span?.end();
      onEnd(failure);
    },
  };
}

/**
 * What a worker's InferenceService reads of a call's context (Connect's HandlerContext is one): the call's
 * signal, and its request metadata for the trace context (as Headers, or as Node's header object).
 */
export interface CallContext {
  readonly signal: AbortSignal;
  readonly requestHeader: Headers | Record<string, string | string[] | undefined>;
}

/**
 * InferenceService as a worker implements it, with the concrete message types it answers: served by Connect
 * (Embed, CountTokens, and Generate in gRPC-Web and Connect), by the worker's own gRPC Generate handler
 * (serveGrpcGenerate), and called in process by the gateway of `smmf serve` (InProcessWorker).
 */
export interface WorkerInference {
  generate(requests: AsyncIterable<GenerateRequest>, ctx: CallContext): AsyncGenerator<GenerateResponse>;
  embed(req: EmbedRequest, ctx: CallContext): Promise<EmbedResponse>;
  rerank(req: RerankRequest, ctx: CallContext): Promise<RerankResponse>;
  countTokens(req: CountTokensRequest, ctx: CallContext): Promise<CountTokensResponse>;
}

/** InferenceService as a worker serves it: runs each call on one of its own instances. */
export function createWorkerInferenceService(worker: Worker, logger: Logger, streamIntervalMs = 0, telemetry: Telemetry = disabledTelemetry()): WorkerInference {
  return {
    async *generate(requests, ctx) {
      const abort = linkSignals(ctx.signal);
      let finished = false;
      try {
        const iterator = requests[Symbol.asyncIterator]();
        const start = await readGenerateStart(iterator);
        const startedAt = performance.now();
        const { input, sampling } = parseGenerateStart(start);
        const hosted = worker.resolve(start.model, start.instanceId);
        watchForCancel(iterator, () => abort.abort());
        const events = hosted.engine.generate(input, sampling, abort.signal);
        let observer: GenerationObserver | undefined;
        if (telemetry.enabled) {
          const { tracing } = telemetry;
          const parent = tracing.extract(ctx.requestHeader);
          const workerSpan = tracing.enabled
            ? tracing.tracer.startSpan(`generate ${start.model}`, { kind: SpanKind.SERVER, attributes: { "gen_ai.request.model": start.model, "smmf.instance.id": hosted.record.instanceId, "smmf.worker.id": worker.id } }, parent)
            : undefined;
          // The worker's span ends with the engine's (the observer ends it however the call ends), before the
          // last response goes out; a cancellation is no error.
          observer = observeEngine(telemetry, hosted, workerSpan ? trace.setSpan(parent, workerSpan) : parent, abort.signal, (failure) => {
            if (failure) workerSpan?.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
            workerSpan?.end();
          });
        }
        yield* toGenerateResponses(events, hosted.record.instanceId, streamIntervalMs, startedAt, observer);
        finished = true;
      } catch (err) {
        const e = ctx.signal.aborted ? new SmmfError("cancelled", "request cancelled") : toSmmfError(err);
        if (e.code === "internal") logger.error("generate failed", { error: String((err as Error)?.message ?? err) });
        throw asConnectError(e);
      } finally {
        // A finished generation is not cancelled: its engine is done with the signal (an upstream engine's
        // connection goes back to its pool). Only a call that ended early stops the engine.
        if (finished) abort.unlink();
        else abort.abort();
      }
    },
    async rerank(req, ctx) {
      try {
        if (!req.model) throw new SmmfError("invalid_argument", "'model' is required", { param: "model" });
        if (req.documents.length === 0) throw new SmmfError("invalid_argument", "'documents' must not be empty", { param: "documents" });
        const hosted = worker.resolve(req.model, req.instanceId);
        const engine = hosted.engine;
        let result: { scores: number[]; promptTokens: number };
        let method: RerankMethod;
        if (engine.rerank) {
          const ranked = await engine.rerank(req.query, req.documents, ctx.signal);
          result = ranked;
          method = ranked.method === "ranking" ? RerankMethod.RANKING : RerankMethod.UPSTREAM;
        } else if (engine.info.embeddingSize > 0) {
          result = await rerankByEmbeddings(engine, req.query, req.documents, ctx.signal);
          method = RerankMethod.EMBEDDING_SIMILARITY;
        } else {
          throw new SmmfError("invalid_argument", `model '${req.model}' can neither rank nor embed: serve a reranker GGUF, or an instance with embeddings on`, { param: "model" });
        }
        return { $typeName: "smmf.v1.RerankResponse", scores: result.scores, usage: { $typeName: "smmf.v1.Usage", promptTokens: result.promptTokens, completionTokens: 0, cachedPromptTokens: 0 }, instanceId: hosted.record.instanceId, method };
      } catch (err) {
        throw asConnectError(err);
      }
    },
    async embed(req, ctx) {
      try {
        if (!req.model) throw new SmmfError("invalid_argument", "'model' is required", { param: "model" });
        if (req.inputs.length === 0) throw new SmmfError("invalid_argument", "'input' must not be empty", { param: "input" });
        const hosted = worker.resolve(req.model, req.instanceId);
        const result = await hosted.engine.embed(req.inputs, ctx.signal);
        return create(EmbedResponseSchema, {
          embeddings: result.vectors.map((v) => ({ values: Array.from(v) })),
          usage: { promptTokens: result.promptTokens, completionTokens: 0 },
          instanceId: hosted.record.instanceId,
        });
      } catch (err) {
        throw asConnectError(err);
      }
    },
    async countTokens(req, _ctx) {
      try {
        if (!req.model) throw new SmmfError("invalid_argument", "'model' is required", { param: "model" });
        const hosted = worker.resolve(req.model, req.instanceId);
        const tokenCount = await hosted.engine.countTokens(parseInput(req.input));
        return create(CountTokensResponseSchema, { tokenCount, contextSize: hosted.engine.info.contextSize });
      } catch (err) {
        throw asConnectError(err);
      }
    },
  };
}
