import { createContextValues, type HandlerContext } from "@connectrpc/connect";
import type { DescMethod } from "@bufbuild/protobuf";
import {
  InferenceService,
  type CountTokensRequest,
  type CountTokensResponse,
  type EmbedRequest,
  type EmbedResponse,
  type GenerateRequest,
  type GenerateResponse,
} from "../gen/smmf/v1/inference_pb.js";
import type { WorkerInference } from "../worker/createWorkerInferenceService.js";
import type { WorkerConnection } from "./WorkerConnection.js";

/** No trace context: one empty, never written Headers for every call without metadata. */
const NO_HEADERS = new Headers();
const NO_TIMEOUT = () => undefined;

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

  private context(method: DescMethod, signal: AbortSignal, metadata?: Record<string, string>): HandlerContext {
    return {
      method,
      service: InferenceService,
      signal,
      timeoutMs: NO_TIMEOUT,
      requestMethod: "POST",
      requestHeader: metadata ? new Headers(metadata) : NO_HEADERS,
      // Written by no InferenceService method of the worker; each call has its own all the same.
      get responseHeader() {
        return new Headers();
      },
      get responseTrailer() {
        return new Headers();
      },
      protocolName: "in-process",
      get values() {
        return createContextValues();
      },
      url: this.address,
    } as HandlerContext;
  }

  generate(request: GenerateRequest, signal: AbortSignal, metadata?: Record<string, string>): AsyncGenerator<GenerateResponse> {
    return this.inference.generate(new OneRequest(request), this.context(InferenceService.method.generate, signal, metadata));
  }

  embed(request: EmbedRequest, signal: AbortSignal, metadata?: Record<string, string>): Promise<EmbedResponse> {
    return this.inference.embed(request, this.context(InferenceService.method.embed, signal, metadata));
  }

  countTokens(request: CountTokensRequest, signal: AbortSignal): Promise<CountTokensResponse> {
    return this.inference.countTokens(request, this.context(InferenceService.method.countTokens, signal));
  }

  /** Nothing to close: the worker's own life is its composition root's. */
  close(): void {}
}
