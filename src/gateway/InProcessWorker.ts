import {
  type CountTokensRequest,
  type CountTokensResponse,
  type EmbedRequest,
  type EmbedResponse,
  type GenerateRequest,
  type GenerateResponse, RerankRequest, RerankResponse } from "../gen/smmf/v1/inference_pb.js";
import type { CallContext, WorkerInference } from "../worker/createWorkerInferenceService.js";
import type { WorkerConnection } from "./WorkerConnection.js";

/** No metadata (no trace context): one empty object, never written, for every call without. */
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** One request message, as the request stream of a bidirectional call (then half-closed: no cancel message will come). */
class OneRequest implements AsyncIterableIterator<GenerateRequest> {
  private sent = false;
  constructor(private readonly request: GenerateRequest) {}
  next(): Promise<IteratorResult<GenerateRequest>> {
    if (this.sent) return Promise.resolve({ done: true, value: undefined });
    this.sent = true;
    return Promise.resolve({ done: false, value: this.request });
  }
  [Symbol.asyncIterator](): AsyncIterableIterator<GenerateRequest> {
    return this;
  }
}

/**
 * The worker of `smmf serve`, called in process by its own gateway: the worker's InferenceService code runs
 * as over gRPC (instance resolution, the engine, streaming intervals, metrics, spans, errors as ConnectErrors
 * with the SMMF code), without HTTP/2, framing or protobuf encoding in between. The cluster credential is not
 * checked: the caller is the process itself. The gateway's abort signal is the call's signal.
 */
export class InProcessWorker implements WorkerConnection {
  readonly down = false;

  constructor(private readonly address: string, private readonly inference: WorkerInference) {}

  private context(signal: AbortSignal, metadata?: Record<string, string>): CallContext {
    return { signal, requestHeader: metadata ?? NO_HEADERS };
  }

  generate(request: GenerateRequest, signal: AbortSignal, metadata?: Record<string, string>): AsyncGenerator<GenerateResponse> {
    return this.inference.generate(new OneRequest(request), this.context(signal, metadata));
  }

  embed(request: EmbedRequest, signal: AbortSignal, metadata?: Record<string, string>): Promise<EmbedResponse> {
    return this.inference.embed(request, this.context(signal, metadata));
  }

  countTokens(request: CountTokensRequest, signal: AbortSignal): Promise<CountTokensResponse> {
    return this.inference.countTokens(request, this.context(signal));
  }

  rerank(request: RerankRequest, signal: AbortSignal, metadata?: Record<string, string>): Promise<RerankResponse> {
    return this.inference.rerank(request, this.context(signal, metadata));
  }

  /** Nothing to close: the worker's own life is its composition root's. */
  close(): void {}
}
