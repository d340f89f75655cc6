import type { IncomingHttpHeaders } from "node:http";
import { SpanKind, SpanStatusCode, type Span } from "@opentelemetry/api";
import type { Instance } from "../gen/smmf/v1/instance_pb.js";
import type { SmmfError } from "../errors/SmmfError.js";
import { TRUNCATED_CHARS, type Telemetry } from "../telemetry/Telemetry.js";

/** The endpoints observed (REST, and the gateway's gRPC InferenceService), and their GenAI operation names. */
export const OPERATIONS = {
  chat_completions: "chat",
  messages: "chat",
  responses: "chat",
  completions: "text_completion",
  embeddings: "embeddings",
  grpc_generate: "generate_content",
  grpc_embed: "embeddings",
  rerank: "rerank",
  grpc_rerank: "rerank",
} as const;
export type ObservedEndpoint = keyof typeof OPERATIONS;

export interface RequestDescription {
  model: string;
  stream?: boolean;
  /** Parameters as sent (sampling, limits). */
  params?: Record<string, unknown>;
  /** The prompt: text, or chat messages / inputs (kept as JSON). */
  prompt?: unknown;
}

export interface RequestOutcome {
  error?: SmmfError;
  usage?: { promptTokens: number; completionTokens: number; cachedTokens?: number };
  finishReason?: string;
}

/**
 * What one REST inference request did, told to metrics, the trace and the request log as it goes: the
 * gateway's span (parent: the client's `traceparent`, if any) carries the GenAI attributes; tokens are
 * counted as they stream (the first one's time is the TTFT); at the end one request-log entry is queued.
 * With telemetry off it does nothing.
 */
export class RequestObservation {
  private readonly started = performance.now();
  private readonly time = Date.now();
  private readonly span?: Span;
  private model = "";
  private modelLabel = "unknown";
  private stream = false;
  private params: Record<string, unknown> = {};
  private prompt: string | null = null;
  private instance?: Instance;
  private attempts = 0;
  private firstTokenAt?: number;
  private tokens = 0;
  private output = "";
  private ended = false;
  /** The id the caller gave the request (gRPC `request_id`, at most 128 characters), kept beside the server's own. */
  clientRequestId: string | null = null;
  /** The name of the API key the request came with (null without keys): the request log keeps it, for filtering. */
  keyName: string | null = null;

  constructor(
    private readonly telemetry: Telemetry,
    readonly endpoint: ObservedEndpoint,
    readonly id: string,
    headers: IncomingHttpHeaders,
    private readonly isKnownModel: (model: string) => boolean,
  ) {
    if (!telemetry.enabled) return;
    const { tracing } = telemetry;
    if (tracing.enabled) {
      const parent = tracing.extract(headers);
      this.span = tracing.tracer.startSpan(OPERATIONS[endpoint], { kind: SpanKind.SERVER, attributes: { "gen_ai.operation.name": OPERATIONS[endpoint], "gen_ai.response.id": id } }, parent);
    }
  }

  /** What was asked for (from the body, valid or not). */
  describe(d: RequestDescription): void {
    if (!this.telemetry.enabled) return;
    this.model = d.model;
    this.modelLabel = d.model && this.isKnownModel(d.model) ? d.model : "unknown";
    this.stream = d.stream ?? false;
    this.params = d.params ?? {};
    if (d.prompt !== undefined && this.telemetry.capture !== "off") this.prompt = this.capped(typeof d.prompt === "string" ? d.prompt : JSON.stringify(d.prompt));
    if (this.span) {
      this.span.updateName(`${OPERATIONS[this.endpoint]} ${d.model}`);
      this.span.setAttribute("gen_ai.request.model", d.model);
      const p = this.params;
      const numeric: [string, unknown][] = [
        ["gen_ai.request.max_tokens", p.max_tokens ?? p.max_completion_tokens],
        ["gen_ai.request.temperature", p.temperature],
        ["gen_ai.request.top_p", p.top_p],
        ["gen_ai.request.top_k", p.top_k],
        ["gen_ai.request.seed", p.seed],
        ["gen_ai.request.frequency_penalty", p.frequency_penalty],
        ["gen_ai.request.presence_penalty", p.presence_penalty],
      ];
      for (const [key, value] of numeric) if (typeof value === "number") this.span.setAttribute(key, value);
    }
  }

  /** An instance takes the request (attempt 1, or a retry). */
  attempt(instance: Instance, attempt: number): void {
    this.instance = instance;
    this.attempts = attempt;
  }

  /** Trace-context headers for the call to the worker. */
  traceHeaders(): Record<string, string> | undefined {
    return this.span ? this.telemetry.tracing.headersOf(this.span.spanContext()) : undefined;
  }

  /**
   * Tokens sent to the client: content pieces, and `otherTokens` of tool calls or a refusal, whose text
   * (`otherText`) the request log keeps with the content.
   */
  delta(pieces: readonly string[], otherTokens = 0, otherText = ""): void {
    if (!this.telemetry.enabled || pieces.length + otherTokens === 0) return;
    // Only the time is taken here; metrics are told at the end, after the answer has gone out.
    this.firstTokenAt ??= performance.now();
    this.tokens += pieces.length + otherTokens;
    if (this.telemetry.capture !== "off" && (this.telemetry.capture === "full" || this.output.length < TRUNCATED_CHARS)) this.output += pieces.join("") + otherText;
  }

  /** The request is over: answered with `status` (499 when the client went away). Only the first call counts. */
  end(status: number, outcome: RequestOutcome = {}): void {
    if (!this.telemetry.enabled || this.ended) return;
    this.ended = true;
    const { metrics, requestLog, capture } = this.telemetry;
    const seconds = (performance.now() - this.started) / 1000;
    const model = this.modelLabel;
    metrics.requests.inc(1, this.endpoint, model, status);
    metrics.requestDuration.observe(seconds, this.endpoint, model);
    const usage = outcome.usage;
    if (usage) {
      metrics.promptTokens.inc(usage.promptTokens, model);
      if (usage.cachedTokens) metrics.cachedPromptTokens.inc(usage.cachedTokens, model);
      if (usage.completionTokens > 0) metrics.completionTokens.inc(usage.completionTokens, model);
    }
    if (this.firstTokenAt !== undefined) metrics.timeToFirstToken.observe((this.firstTokenAt - this.started) / 1000, model);
    metrics.traffic.record(status, usage?.completionTokens ?? 0, this.firstTokenAt === undefined ? undefined : this.firstTokenAt - this.started);
    if (this.firstTokenAt !== undefined && this.tokens > 1) {
      metrics.interTokenLatency.observe((performance.now() - this.firstTokenAt) / 1000 / (this.tokens - 1), model);
    }
    const retries = Math.max(0, this.attempts - 1);
    if (this.span) {
      const span = this.span;
      if (this.instance) span.setAttributes({ "smmf.instance.id": this.instance.instanceId, "smmf.worker.id": this.instance.workerId, "smmf.engine": this.instance.engine, "server.address": this.instance.address });
      span.setAttributes({ "smmf.retries": retries, "http.response.status_code": status });
      if (usage) span.setAttributes({ "gen_ai.usage.input_tokens": usage.promptTokens, "gen_ai.usage.output_tokens": usage.completionTokens, "gen_ai.usage.cache_read.input_tokens": usage.cachedTokens ?? 0 });
      if (outcome.finishReason) span.setAttribute("gen_ai.response.finish_reasons", [outcome.finishReason]);
      if (outcome.error) {
        span.setAttribute("error.type", outcome.error.code);
        span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error.message });
      }
      span.end();
    }
    requestLog?.record({
      id: this.id,
      time: this.time,
      endpoint: this.endpoint,
      model: this.model,
      instance: this.instance?.instanceId ?? null,
      engine: this.instance?.engine ?? null,
      stream: this.stream,
      params: this.params,
      prompt: capture === "off" ? null : this.prompt,
      output: capture === "off" || OPERATIONS[this.endpoint] === "embeddings" ? null : this.capped(this.output),
      status,
      errorCode: outcome.error?.code ?? null,
      errorMessage: outcome.error?.message ?? null,
      latencyMs: seconds * 1000,
      ttftMs: this.firstTokenAt === undefined ? null : this.firstTokenAt - this.started,
      promptTokens: usage?.promptTokens ?? null,
      completionTokens: usage ? usage.completionTokens : null,
      retries,
      traceId: this.span?.spanContext().traceId ?? null,
      clientRequestId: this.clientRequestId,
      keyName: this.keyName,
    });
  }

  private capped(text: string): string {
    return this.telemetry.capture === "truncated" && text.length > TRUNCATED_CHARS ? text.slice(0, TRUNCATED_CHARS) : text;
  }
}
