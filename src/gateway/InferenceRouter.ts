import { create } from "@bufbuild/protobuf";
import type { CertificateFiles } from "../net/CertificateFiles.js";
import { ConnectError } from "@connectrpc/connect";
import {
  FinishReason,
  GenerateResponseSchema,
  ResponseFormat_Type,
  type CountTokensRequest,
  type CountTokensResponse,
  type EmbedRequest,
  type EmbedResponse,
  type GenerateRequest,
  type GenerateResponse,
  type GenerateStart,
  type SamplingParams,
  type RerankRequest,
  type RerankResponse,
} from "../gen/smmf/v1/inference_pb.js";
import { InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import type { Registry } from "../registry/Registry.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import { chooseInstance, type BalancingPolicy } from "./chooseInstance.js";
import { PrefixAffinity, type PrefixAffinityOptions, type PrefixOutcome } from "./PrefixAffinity.js";
import { prefixKeysOf, type PrefixKeys } from "./prefixKeys.js";
import { DEFAULT_EJECTION, InstanceHealth, type EjectionOptions } from "./InstanceHealth.js";
import { RetryBudget } from "./RetryBudget.js";
import { WorkerClients } from "./WorkerClients.js";
import { unknownModel } from "./unknownModel.js";
import { clusterHeaders } from "../auth/clusterCredential.js";
import type { WorkerInference } from "../worker/createWorkerInferenceService.js";

export interface RouterOptions {
  logger: Logger;
  /** Policy per model name; others use `defaultPolicy`. */
  policies?: Record<string, BalancingPolicy>;
  defaultPolicy?: BalancingPolicy;
  /** Tries per request, the first included. */
  maxAttempts?: number;
  /** Requests of one model that may wait for a free instance; more get 429. */
  queueSize?: number;
  /** How long a request may wait for a free instance before it gets 503. */
  queueTimeoutMs?: number;
  ejection?: EjectionOptions;
  retryBudget?: RetryBudget;
  /** Hears of retries, failovers and ejections (metrics). */
  observer?: RouterObserver;
  /** The `prefix` policy's memory bound and slack (defaults: 50,000 keys, 0.5). */
  prefixAffinity?: PrefixAffinityOptions;
  /** Presented to workers on every call. */
  clusterSecret?: string;
  /** mTLS to workers (their CA, this gateway's client certificate). */
  clientTls?: CertificateFiles;
  /** Workers in this process (smmf serve), by the address they registered: called in process, not over gRPC. */
  localWorkers?: ReadonlyMap<string, WorkerInference>;
}

export interface RouterObserver {
  /** A request is sent again, to another instance; `midStream` when its stream had begun (a failover). */
  retried(model: string, midStream: boolean): void;
  ejected(model: string, instanceId: string): void;
  /** A generation was routed under the `prefix` policy (each try: a retry routes again). */
  prefixRouted?(model: string, outcome: PrefixOutcome): void;
}

export interface RouterStats {
  retries: number;
  failovers: number;
}

interface Waiter {
  wake: () => void;
}

/** How long a finished generation's stream may take to end (its trailers) before it is reset. */
const END_OF_CALL_MS = 10_000;
/**
 * How long a request waits when every instance of its model is behind a connection being restored (reconnects
 * are tried after 250 ms, doubling to 2 s): long enough for a worker that restarted, short for one that is gone.
 */
const RECONNECT_WAIT_MS = 5_000;

/**
 * Reads the rest of a call whose last message is in: the worker's trailers end the stream. Resetting it
 * instead (RST_STREAM on every call) looks like a "rapid reset" attack to HTTP/2 servers, which then close
 * the whole connection (GOAWAY, INTERNAL_ERROR) and fail every call on it.
 */
function readToEnd(messages: AsyncGenerator<unknown>, call: AbortController): void {
  const timer = setTimeout(() => call.abort(), END_OF_CALL_MS);
  timer.unref();
  void (async () => {
    try {
      while (!(await messages.next()).done);
    } catch {
      // The answer is complete; how its stream ended no longer matters.
    } finally {
      clearTimeout(timer);
    }
  })();
}

/**
 * Whether a failed call may be tried on another instance: transport failures (no SMMF code: connection
 * refused or reset, a dead or hung worker) and the instance's own unavailable / resource_exhausted.
 */
function isRetryable(err: unknown): { retry: boolean; healthFailure: boolean } {
  if (err instanceof SmmfError) return { retry: err.code === "unavailable" || err.code === "resource_exhausted", healthFailure: false };
  if (!(err instanceof ConnectError)) return { retry: false, healthFailure: false };
  const code = err.metadata.get("smmf-error-code");
  if (code === "resource_exhausted") return { retry: true, healthFailure: false };
  if (code === "unavailable") return { retry: true, healthFailure: true };
  if (code) return { retry: false, healthFailure: false };
  return { retry: true, healthFailure: true };
}

/** Whether another instance may continue a generation from the text already sent (mid-stream failover). */
export function canContinue(start: GenerateStart): boolean {
  const format = start.responseFormat?.type ?? ResponseFormat_Type.UNSPECIFIED;
  return start.n <= 1 && (format === ResponseFormat_Type.UNSPECIFIED || format === ResponseFormat_Type.TEXT);
}

/**
 * Routes inference calls to instances from the registry: client-side load balancing per model over online,
 * non-ejected instances with a free slot; a bounded wait queue when all are full; retries on another instance
 * before the first token, and mid-stream failover after it (the next instance continues the text already sent).
 */
export class InferenceRouter {
  private readonly inFlight = new Map<string, number>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly cursors = new Map<string, { lastId?: string }>();
  /** The `prefix` policy's memory: which instance holds which conversation (all models; bounded). */
  readonly affinity: PrefixAffinity;
  private readonly health: InstanceHealth;
  private readonly budget: RetryBudget;
  private readonly clients: WorkerClients;
  private readonly unsubscribe: () => void;
  private readonly logger: Logger;
  readonly stats: RouterStats = { retries: 0, failovers: 0 };

  constructor(private readonly registry: Registry, private readonly options: RouterOptions) {
    this.logger = options.logger;
    this.health = new InstanceHealth(options.ejection ?? DEFAULT_EJECTION);
    this.health.onEjected = (instanceId) => {
      const model = this.registry.snapshot().find((i) => i.instanceId === instanceId)?.model;
      if (model) options.observer?.ejected(model, instanceId);
    };
    this.budget = options.retryBudget ?? new RetryBudget();
    this.affinity = new PrefixAffinity(options.prefixAffinity);
    this.clients = new WorkerClients((address) => this.connectionLost(address), clusterHeaders(options.clusterSecret), options.clientTls, options.localWorkers, (address) => this.connectionRestored(address));
    this.unsubscribe = registry.subscribe(() => this.registryChanged());
  }

  get ejections(): number {
    return this.health.ejectionCount;
  }

  /** Whether a new request could be sent to this instance now: online, not ejected, and its worker's connection not lost. */
  isPickable(instance: Instance): boolean {
    return instance.state === InstanceState.ONLINE && !this.health.isEjected(instance.instanceId) && !this.clients.isDown(instance.address);
  }

  /** Requests this gateway has in flight on an instance. */
  inFlightOf(instanceId: string): number {
    return this.inFlight.get(instanceId) ?? 0;
  }

  private load = (instance: Instance): number => (this.inFlight.get(instance.instanceId) ?? 0) / Math.max(1, instance.maxConcurrency);

  private registryChanged(): void {
    const instances = this.registry.snapshot();
    this.clients.retain(new Set(instances.map((i) => i.address)));
    const ids = new Set(instances.map((i) => i.instanceId));
    this.health.retain(ids);
    this.affinity.retain(ids);
    this.wakeAll();
  }

  /** Every waiting request looks again (the instances changed, or a lost connection is back). */
  private wakeAll(): void {
    for (const list of this.waiters.values()) for (const w of list.splice(0)) w.wake();
  }

  /** A lost connection is back: the ejection its loss caused is lifted, and waiting requests look again. */
  private connectionRestored(address: string): void {
    for (const instance of this.registry.snapshot()) if (instance.address === address) this.health.readmit(instance.instanceId);
    this.wakeAll();
  }

  private connectionLost(address: string): void {
    for (const instance of this.registry.snapshot()) if (instance.address === address) this.health.eject(instance.instanceId);
    this.logger.warn("connection to a worker lost; its instances sit out a cool-down", { address });
  }

  private policyOf(model: string): BalancingPolicy {
    return this.options.policies?.[model] ?? this.options.defaultPolicy ?? "prefix";
  }

  /**
   * Waits for a free slot on an eligible instance of `model` and takes it. With `prefix` (a generation under
   * the `prefix` policy), the instance that holds the request's prefix is preferred within PrefixAffinity's
   * rule, and the request's keys are remembered on the instance chosen.
   */
  private async acquire(model: string, signal: AbortSignal, exclude: Set<string>, needsEmbeddings = false, prefix?: PrefixKeys): Promise<{ instance: Instance; release: () => void }> {
    const deadline = Date.now() + (this.options.queueTimeoutMs ?? 30_000);
    const reconnectDeadline = Date.now() + RECONNECT_WAIT_MS;
    for (;;) {
      if (signal.aborted) throw new SmmfError("cancelled", "request cancelled");
      const all = this.registry.snapshot().filter((i) => i.model === model);
      if (all.length === 0) throw unknownModel(model);
      const healthy = all.filter((i) => !exclude.has(i.instanceId) && this.isPickable(i));
      const capable = needsEmbeddings ? healthy.filter((i) => i.embeddingSize > 0) : healthy;
      if (needsEmbeddings && healthy.length > 0 && capable.length === 0) {
        throw new SmmfError("invalid_argument", `The model '${model}' does not serve embeddings`, { param: "model" });
      }
      if (capable.length === 0) {
        // Only instances whose connection is being restored (a worker that restarted, a connection that was
        // dropped): wait a little for one, as for a busy instance, rather than fail at once.
        // (Their loss ejected them too: the ejection is lifted when the connection is back.)
        const reconnecting = all.some((i) => !exclude.has(i.instanceId) && i.state === InstanceState.ONLINE && this.clients.isDown(i.address) && (!needsEmbeddings || i.embeddingSize > 0));
        if (!reconnecting || Date.now() >= reconnectDeadline) throw new SmmfError("unavailable", `No instance of model '${model}' is available now; retry later`);
        // Its timeout ends in the error above, at the next look.
        await this.wait(model, signal, Math.min(deadline, reconnectDeadline)).catch((err: unknown) => {
          if (!(err instanceof SmmfError && err.code === "unavailable")) throw err;
        });
        continue;
      }
      const free = capable.filter((i) => (this.inFlight.get(i.instanceId) ?? 0) < Math.max(1, i.maxConcurrency));
      if (free.length > 0) {
        if (prefix) {
          const choice = this.affinity.choose(prefix, free, capable, this.load);
          this.affinity.record(prefix, choice.instance.instanceId);
          this.options.observer?.prefixRouted?.(model, choice.outcome);
          return { instance: choice.instance, release: this.enter(choice.instance) };
        }
        const policy = this.policyOf(model);
        let cursor = this.cursors.get(model);
        if (!cursor) this.cursors.set(model, (cursor = {}));
        const instance = chooseInstance(policy, free, this.load, cursor);
        return { instance, release: this.enter(instance) };
      }
      await this.wait(model, signal, deadline);
    }
  }

  private wait(model: string, signal: AbortSignal, deadline: number): Promise<void> {
    let list = this.waiters.get(model);
    if (!list) this.waiters.set(model, (list = []));
    if (list.length >= (this.options.queueSize ?? 256)) {
      return Promise.reject(new SmmfError("resource_exhausted", `All instances of model '${model}' are busy and its queue is full; retry later`, { retryAfterSeconds: 1 }));
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) return Promise.reject(new SmmfError("unavailable", `Timed out waiting for a free instance of model '${model}'`));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        wake: () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const remove = () => {
        const i = list!.indexOf(waiter);
        if (i >= 0) list!.splice(i, 1);
      };
      const timer = setTimeout(() => {
        remove();
        signal.removeEventListener("abort", onAbort);
        reject(new SmmfError("unavailable", `Timed out waiting for a free instance of model '${model}'`));
      }, remaining);
      const onAbort = () => {
        remove();
        clearTimeout(timer);
        reject(new SmmfError("cancelled", "request cancelled"));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      list!.push(waiter);
    });
  }

  private enter(instance: Instance): () => void {
    this.inFlight.set(instance.instanceId, (this.inFlight.get(instance.instanceId) ?? 0) + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const n = (this.inFlight.get(instance.instanceId) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(instance.instanceId);
      else this.inFlight.set(instance.instanceId, n);
      this.waiters.get(instance.model)?.shift()?.wake();
    };
  }

  /**
   * acquire(), for a retry: when no other instance is left to try, the caller gets the error that made it
   * retry (a 429 with its Retry-After stays a 429) rather than "no instance available".
   */
  private async acquireAgain(model: string, signal: AbortSignal, tried: Set<string>, needsEmbeddings: boolean, lastError: unknown, sentTokens: number, prefix?: PrefixKeys) {
    try {
      return await this.acquire(model, signal, tried, needsEmbeddings, prefix);
    } catch (err) {
      if (lastError === undefined || signal.aborted) throw err;
      const last = toSmmfError(lastError);
      if (sentTokens > 0) {
        this.logger.warn("instance failed mid-stream; no other instance could continue", { tokens: sentTokens, error: last.message });
        throw new SmmfError("unavailable", `the model instance failed mid-stream and no other instance could continue: ${last.message}`);
      }
      throw last;
    }
  }

  /** After a failure: whether to try again (counting it), or not. */
  private shouldRetry(err: unknown, instance: Instance, attempt: number): boolean {
    const { retry, healthFailure } = isRetryable(err);
    if (healthFailure) this.health.recordFailure(instance.instanceId);
    if (!retry || attempt >= (this.options.maxAttempts ?? 3) || !this.budget.tryRetry()) return false;
    this.stats.retries++;
    return true;
  }

  /**
   * Streams a generation from instances of `start.model`. Before the first token, a failed instance is
   * replaced by another; after it, another instance continues from the prompt plus the text already sent,
   * so the caller sees one stream, with usage counting what it received.
   */
  async *generate(start: GenerateStart, signal: AbortSignal, onInstance?: (instance: Instance, attempt: number) => void, metadata?: Record<string, string>): AsyncGenerator<GenerateResponse> {
    this.budget.recordRequest();
    const tried = new Set<string>();
    let sentTokens = 0;
    let sentText = "";
    // Another instance can continue plain text only: not tool calls, a refusal, JSON under a grammar, or n answers.
    let continuable = canContinue(start);
    let promptTokens = 0;
    let lastError: unknown;
    // Computed once: each try (a retry, a failover) routes with the same keys.
    const prefix = this.policyOf(start.model) === "prefix" ? prefixKeysOf(start) : undefined;
    for (let attempt = 1; ; attempt++) {
      const maxTokens = start.params?.maxTokens;
      if (maxTokens !== undefined && sentTokens >= maxTokens) {
        // The instance died after the last token but before its done message: the answer is complete.
        yield create(GenerateResponseSchema, {
          kind: { case: "done", value: { finishReason: FinishReason.LENGTH, usage: { promptTokens, completionTokens: sentTokens } } },
        });
        return;
      }
      const { instance, release } = await this.acquireAgain(start.model, signal, tried, false, lastError, sentTokens, prefix);
      tried.add(instance.instanceId);
      // Tokens of the partial answer this try continues (part of the prompt it reports).
      const continued = sentTokens;
      onInstance?.(instance, attempt);
      // A literal, not create(): the caller's start is a complete message already (create() would convert it
      // field by field again, ~3 KB a request).
      const request: GenerateRequest = {
        $typeName: "smmf.v1.GenerateRequest",
        kind: {
          case: "start",
          value: {
            ...start,
            instanceId: instance.instanceId,
            continuation: start.continuation + sentText,
            params: this.remainingParams(start, sentTokens),
          },
        },
      };
      // The call has its own signal: once the done message is in, the caller's may fire (its request is over)
      // without resetting a stream that is about to end by itself.
      const call = new AbortController();
      const cancel = () => call.abort();
      signal.addEventListener("abort", cancel, { once: true });
      if (signal.aborted) call.abort();
      const messages = this.clients.get(instance.address).generate(request, call.signal, metadata);
      let finished = false;
      try {
        for (let next = await messages.next(); !next.done; next = await messages.next()) {
          // Cancelled: what comes after is not the caller's any more (a worker in process may still answer,
          // e.g. its engine's "cancelled" end; over gRPC the reset stream fails instead).
          if (call.signal.aborted) throw new SmmfError("cancelled", "request cancelled");
          const res = next.value;
          if (res.kind.case === "delta") {
            const delta = res.kind.value;
            if (promptTokens === 0) promptTokens = delta.promptTokens;
            else delta.promptTokens = 0; // a continuation's prompt is not the caller's
            sentTokens += delta.pieces.length + delta.otherTokens;
            sentText += delta.pieces.join("");
            if (delta.toolCalls.length > 0 || delta.refusal || delta.otherTokens > 0) continuable = false;
            yield res;
          } else if (res.kind.case === "done") {
            this.health.recordSuccess(instance.instanceId);
            const done = res.kind.value;
            if (attempt > 1) {
              // The caller's prompt: as the first try reported it; where that was not known yet (an upstream engine
              // tells it only at the end), this try's prompt less the partial answer it was given to continue.
              const prompt = promptTokens || Math.max(0, (done.usage?.promptTokens ?? 0) - continued);
              // The instance that finished may have had the caller's prompt (part of its own) in its cache.
              done.usage = { $typeName: "smmf.v1.Usage", promptTokens: prompt, completionTokens: sentTokens, cachedPromptTokens: Math.min(prompt, done.usage?.cachedPromptTokens ?? 0) };
            }
            release(); // before handing over the end: the caller may not resume this generator
            finished = true;
            signal.removeEventListener("abort", cancel);
            readToEnd(messages, call);
            yield res;
            return;
          }
        }
        throw new SmmfError("unavailable", "the model instance ended the generation without finishing it");
      } catch (err) {
        if (signal.aborted) throw new SmmfError("cancelled", "request cancelled");
        if (sentTokens > 0 && !continuable) {
          if (isRetryable(err).healthFailure) this.health.recordFailure(instance.instanceId);
          this.logger.warn("instance failed mid-stream; the answer cannot be continued elsewhere", { instance: instance.instanceId, tokens: sentTokens, error: toSmmfError(err).message });
          throw new SmmfError("unavailable", `the model instance failed mid-stream, and an answer with tool calls, a JSON format or several choices cannot be continued on another instance: ${toSmmfError(err).message}`);
        }
        if (!this.shouldRetry(err, instance, attempt)) {
          if (sentTokens > 0) {
            this.logger.warn("instance failed mid-stream; no other instance could continue", { instance: instance.instanceId, tokens: sentTokens, error: toSmmfError(err).message });
            throw new SmmfError("unavailable", `the model instance failed mid-stream and no other instance could continue: ${toSmmfError(err).message}`);
          }
          throw toSmmfError(err);
        }
        lastError = err;
        this.options.observer?.retried(instance.model, sentTokens > 0);
        if (sentTokens > 0) {
          this.stats.failovers++;
          this.logger.warn("instance failed mid-stream; continuing on another", { instance: instance.instanceId, tokens: sentTokens });
        }
      } finally {
        release();
        if (!finished) {
          signal.removeEventListener("abort", cancel);
          // Stopped early (cancelled, or failed): the channel resets the stream so the worker stops at once.
          await messages.return(undefined);
        }
      }
    }
  }

  /** The sampling parameters of a try: the caller's, with max_tokens less what was sent (shared, never changed). */
  private remainingParams(start: GenerateStart, sentTokens: number): SamplingParams | undefined {
    const params = start.params;
    if (params?.maxTokens === undefined || sentTokens === 0) return params;
    return { ...params, maxTokens: params.maxTokens - sentTokens };
  }

  async embed(req: EmbedRequest, signal: AbortSignal, onInstance?: (instance: Instance, attempt: number) => void, metadata?: Record<string, string>): Promise<EmbedResponse> {
    return this.unary(req.model, signal, true, (instance, attempt) => {
      onInstance?.(instance, attempt);
      return this.clients.get(instance.address).embed({ ...req, instanceId: instance.instanceId }, signal, metadata);
    });
  }

  /** Scores documents on an instance of the model; like embed, retried on another instance where it is safe. */
  async rerank(req: RerankRequest, signal: AbortSignal, onInstance?: (instance: Instance, attempt: number) => void, metadata?: Record<string, string>): Promise<RerankResponse> {
    return this.unary(req.model, signal, false, (instance, attempt) => {
      onInstance?.(instance, attempt);
      return this.clients.get(instance.address).rerank({ ...req, instanceId: instance.instanceId }, signal, metadata);
    });
  }

  async countTokens(req: CountTokensRequest, signal: AbortSignal): Promise<CountTokensResponse> {
    return this.unary(req.model, signal, false, (instance) =>
      this.clients.get(instance.address).countTokens({ ...req, instanceId: instance.instanceId }, signal),
    );
  }

  private async unary<T>(model: string, signal: AbortSignal, needsEmbeddings: boolean, call: (instance: Instance, attempt: number) => Promise<T>): Promise<T> {
    this.budget.recordRequest();
    const tried = new Set<string>();
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      const { instance, release } = await this.acquireAgain(model, signal, tried, needsEmbeddings, lastError, 0);
      tried.add(instance.instanceId);
      try {
        const result = await call(instance, attempt);
        this.health.recordSuccess(instance.instanceId);
        return result;
      } catch (err) {
        if (signal.aborted) throw new SmmfError("cancelled", "request cancelled");
        if (!this.shouldRetry(err, instance, attempt)) throw toSmmfError(err);
        this.options.observer?.retried(model, false);
        lastError = err;
      } finally {
        release();
      }
    }
  }

  /** Requests in flight on instances and waiting for one, by model (for metrics). */
  loadByModel(): Map<string, { inFlight: number; queued: number }> {
    const out = new Map<string, { inFlight: number; queued: number }>();
    const entry = (model: string) => {
      let e = out.get(model);
      if (!e) out.set(model, (e = { inFlight: 0, queued: 0 }));
      return e;
    };
    for (const instance of this.registry.snapshot()) entry(instance.model).inFlight += this.inFlight.get(instance.instanceId) ?? 0;
    for (const [model, waiting] of this.waiters) entry(model).queued += waiting.length;
    return out;
  }

  close(): void {
    this.unsubscribe();
    this.clients.close();
  }
}
