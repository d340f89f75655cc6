import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { EngineInstance, GenerationEvent, GenerationInput, RerankResult, SamplingOptions } from "./Engine.js";
import { checkProxyParams } from "./checkProxyParams.js";
import { PROXY_PRESETS } from "./proxyPresets.js";
import { resolveUpstreamKey, type UpstreamKeyOptions } from "./resolveUpstreamKey.js";
import { SequencePool } from "./SequencePool.js";
import { redact, redactForLog, upstreamError, upstreamErrorDetail } from "./upstreamError.js";
import { createUpstreamAgent } from "./createUpstreamAgent.js";
import { finishResponse, readBody, readSseData, upstreamRequest } from "./upstreamRequest.js";
import { checkUnsupportedFields, upstreamRequestBody } from "./upstreamRequestBody.js";
import { UpstreamStreamError, UpstreamStreamParser } from "./upstreamStreamParser.js";

/** Defaults of ProxyParams' zero values (the pool size defaults to max_concurrency). */
export const PROXY_DEFAULTS = { connectTimeoutMs: 5_000, readTimeoutMs: 60_000, maxConcurrency: 16, idleTimeoutMs: 30_000 } as const;

/** A rough token count for text an upstream did not count (about four characters a token). */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

function inputTokens(input: GenerationInput): number {
  if (input.kind === "prompt") return estimateTokens(input.prompt);
  return input.messages.reduce((n, m) => n + 4 + estimateTokens(m.content) + (m.toolCalls ?? []).reduce((k, c) => k + 4 + estimateTokens(c.name + c.arguments), 0), 2);
}

/** A server the worker runs itself (see createLlamaServerEngine), reached on a unix socket, with no key. */
export interface LocalUpstream {
  socketPath: string;
  /** The engine name instances report. */
  engine: string;
  /** Names it in messages. */
  name: string;
}

interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

/**
 * An OpenAI-compatible upstream (vLLM, TGI, llama-server, Ollama, OpenAI, Azure OpenAI, ...) as an engine
 * instance: chat and completions are streamed from the upstream (usage from `stream_options.include_usage`
 * where the upstream gives it, else counted), embeddings are passed through. Tools, tool messages, tool
 * choice, response format, logprobs, n and the fields SMMF does not interpret go upstream as sent (see
 * upstreamRequestBody; a preset refuses the few fields its upstream does not honour), and the upstream's
 * tool call pieces, logprobs, refusals and per-choice finish reasons come back as events (see
 * UpstreamStreamParser). At most `max_concurrency`
 * requests go upstream at once; more wait in a bounded queue. Upstream failures become SMMF errors (see
 * upstreamError); a malformed, truncated or stalled stream ends with `unavailable`, never a hang. What an
 * upstream says in its errors goes to the worker's log, not to the client. The API key is read here, on the
 * worker (see resolveUpstreamKey: which key, and whether this base URL may have it, is settled before any
 * request), and appears nowhere else: it is removed from every message and log line.
 */
export async function createProxyEngine(spec: InstanceSpec, options: UpstreamKeyOptions & { local?: LocalUpstream }): Promise<EngineInstance> {
  checkProxyParams(spec);
  const presetName = spec.engine;
  const preset = PROXY_PRESETS[presetName];
  const p = spec.proxy;
  const base = new URL(p?.baseUrl || preset.baseUrl);
  const local = options.local;
  const upstream = local ? local.name : `${base.protocol}//${base.host}`;
  const key = local ? "" : resolveUpstreamKey(spec, base.href, options);
  const logger = options.logger;
  const secrets = key ? [key] : [];
  const headers: Record<string, string> = { ...p?.headers };
  if (key) {
    if (preset.auth === "api-key") headers["api-key"] = key;
    else headers.authorization = `Bearer ${key}`;
  }
  const upstreamModel = p?.upstreamModel || spec.model;
  const maxConcurrency = p?.maxConcurrency || PROXY_DEFAULTS.maxConcurrency;
  const connectTimeoutMs = p?.connectTimeoutMs || PROXY_DEFAULTS.connectTimeoutMs;
  const readTimeoutMs = p?.readTimeoutMs || PROXY_DEFAULTS.readTimeoutMs;
  const apiVersion = preset.apiVersion ? p?.apiVersion || preset.apiVersion : "";
  const agent = createUpstreamAgent(base.protocol, {
    keepAlive: p?.keepAlive ?? true,
    poolSize: p?.poolSize || maxConcurrency,
    idleTimeoutMs: p?.idleTimeoutMs || PROXY_DEFAULTS.idleTimeoutMs,
  });
  const bodyOptions = { model: upstreamModel, preset, presetName };
  const pool = new SequencePool(Array.from({ length: maxConcurrency }, (_, i) => i), 256);

  // Each endpoint's URL is made once (a URL and its query per request showed in the relay's profile).
  const endpoints = new Map<string, URL>();
  function endpoint(path: string): URL {
    let url = endpoints.get(path);
    if (url) return url;
    url = new URL(base.href.replace(/\/+$/, "") + path);
    for (const [k, v] of base.searchParams) url.searchParams.set(k, v);
    if (apiVersion) url.searchParams.set("api-version", apiVersion);
    endpoints.set(path, url);
    return url;
  }

  async function post(path: string, body: object, signal: AbortSignal) {
    const res = await upstreamRequest({ url: endpoint(path), headers, body: JSON.stringify(body), agent, connectTimeoutMs, readTimeoutMs, signal, upstream, socketPath: local?.socketPath });
    if (res.statusCode !== 200) {
      const status = res.statusCode ?? 502;
      const text = await readBody(res, upstream, 1 << 20).catch(() => "");
      logger?.warn("upstream answered an error", { model: spec.model, upstream, path, status, detail: upstreamErrorDetail(text, secrets) });
      throw upstreamError(status, text, res.headers["retry-after"] as string | undefined, upstream);
    }
    return res;
  }

  function malformed(data: string): SmmfError {
    logger?.warn("upstream sent malformed data", { model: spec.model, upstream, detail: redactForLog(data.slice(0, 200), secrets) });
    return new SmmfError("unavailable", `upstream ${upstream} sent malformed stream data`);
  }

  async function* generate(input: GenerationInput, sampling: SamplingOptions, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    const started = performance.now();
    // Fields this upstream does not honour are refused before the request takes a slot or goes out.
    checkUnsupportedFields(sampling, preset, presetName);
    const slot = await pool.acquire(signal);
    const estimatedPrompt = inputTokens(input);
    let res: Awaited<ReturnType<typeof post>> | undefined;
    let answered = false;
    try {
      res = await post(input.kind === "chat" ? "/chat/completions" : "/completions", upstreamRequestBody(input, sampling, bodyOptions), signal);
      // The prompt's token count is the upstream's to tell, with the usage at the end: 0 here means not known yet.
      yield { type: "started", promptTokens: 0 };
      const parser = new UpstreamStreamParser(input.kind === "chat" ? "chat" : "prompt", sampling.n ?? 1);
      let done = false;
      for await (const data of readSseData(res, upstream)) {
        if (data === "[DONE]") {
          done = true;
          break;
        }
        let events: GenerationEvent[];
        try {
          events = parser.accept(data);
        } catch (err) {
          if (!(err instanceof UpstreamStreamError)) throw err;
          if (err.kind === "malformed") throw malformed(data);
          logger?.warn("upstream failed during the stream", { model: spec.model, upstream, detail: upstreamErrorDetail(data, secrets) });
          throw new SmmfError("unavailable", `upstream ${upstream} failed during the stream`);
        }
        yield* events;
      }
      if (!done && !parser.finished) throw new SmmfError("unavailable", `upstream ${upstream} ended the stream before it finished`);
      if (signal.aborted) throw new SmmfError("cancelled", "request cancelled");
      answered = true;
      yield parser.done(estimatedPrompt, performance.now() - started);
    } finally {
      // Answered: the rest of the response (after `data: [DONE]`) is read, and its connection reused.
      if (res) finishResponse(res, answered);
      pool.release(slot);
    }
  }

  /** The upstream's rerank endpoint (vLLM, llama-server, Jina and Cohere shape): `results` with `index` and `relevance_score`. */
  async function rerank(query: string, documents: string[], signal: AbortSignal): Promise<RerankResult> {
    const slot = await pool.acquire(signal);
    try {
      const res = await post("/rerank", { model: upstreamModel, query, documents, top_n: documents.length, return_documents: false }, signal);
      const text = await readBody(res, upstream);
      let parsed: { results?: { index?: unknown; relevance_score?: unknown }[]; usage?: { prompt_tokens?: number; total_tokens?: number } };
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        throw malformed(text);
      }
      const scores = new Array<number>(documents.length).fill(Number.NaN);
      for (const r of parsed.results ?? []) {
        if (!Number.isInteger(r.index) || (r.index as number) < 0 || (r.index as number) >= documents.length || typeof r.relevance_score !== "number") throw new SmmfError("unavailable", `upstream ${upstream} answered rerank in an unexpected shape`);
        scores[r.index as number] = r.relevance_score;
      }
      if (scores.some(Number.isNaN)) throw new SmmfError("unavailable", `upstream ${upstream} did not score every document`);
      const promptTokens = parsed.usage?.prompt_tokens ?? parsed.usage?.total_tokens ?? [query, ...documents].reduce((n, t) => n + estimateTokens(t), 0);
      return { scores, promptTokens, method: "upstream" };
    } finally {
      pool.release(slot);
    }
  }

  async function embed(inputs: string[], signal: AbortSignal): Promise<{ vectors: Float32Array[]; promptTokens: number }> {
    const slot = await pool.acquire(signal);
    try {
      const res = await post("/embeddings", { model: upstreamModel, input: inputs, encoding_format: "float" }, signal);
      const text = await readBody(res, upstream);
      let parsed: { data?: { index?: number; embedding?: unknown }[]; usage?: Usage };
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        throw malformed(text);
      }
      const data = [...(parsed.data ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
      if (data.length !== inputs.length || !data.every((d) => Array.isArray(d.embedding) && d.embedding.every((x) => typeof x === "number"))) {
        throw new SmmfError("unavailable", `upstream ${upstream} answered embeddings in an unexpected shape`);
      }
      return {
        vectors: data.map((d) => Float32Array.from(d.embedding as number[])),
        promptTokens: parsed.usage?.prompt_tokens ?? inputs.reduce((n, t) => n + estimateTokens(t), 0),
      };
    } finally {
      pool.release(slot);
    }
  }

  let embeddingSize = 0;
  if (p?.embeddings) {
    // One probe at load gives the vector length for the record (and proves the route works).
    const probe = await embed(["ping"], AbortSignal.timeout(connectTimeoutMs + readTimeoutMs)).catch((err: unknown) => {
      throw new SmmfError("failed_precondition", `upstream ${upstream} did not serve embeddings for '${upstreamModel}': ${redact((err as Error).message, secrets)}`, { param: "embeddings" });
    });
    embeddingSize = probe.vectors[0].length;
  }

  return {
    info: { engine: local?.engine ?? presetName, contextSize: p?.contextSize ?? 0, embeddingSize, maxConcurrency },
    inFlight: () => pool.inUse(),
    generate,
    embed,
    rerank,
    async countTokens(input) {
      return inputTokens(input);
    },
    async close() {
      pool.rejectAll(new SmmfError("unavailable", "the instance is shutting down"));
      agent.destroy();
    },
  };
}
