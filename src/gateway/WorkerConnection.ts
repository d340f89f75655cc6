import type { CountTokensRequest, CountTokensResponse, EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse, RerankRequest, RerankResponse } from "../gen/smmf/v1/inference_pb.js";

/**
 * How a gateway calls one worker's InferenceService: over gRPC (GrpcWorker: HTTP/2, one connection per
 * worker), or, for the worker in its own process (`smmf serve`), in process (InProcessWorker: the same service
 * code, no sockets, no encoding). Failures are ConnectErrors carrying the SMMF code, either way.
 */
export interface WorkerConnection {
  /** One generation: the start message goes out, the response messages come back. */
  generate(request: GenerateRequest, signal: AbortSignal, metadata?: Record<string, string>): AsyncGenerator<GenerateResponse>;
  embed(request: EmbedRequest, signal: AbortSignal, metadata?: Record<string, string>): Promise<EmbedResponse>;
  countTokens(request: CountTokensRequest, signal: AbortSignal): Promise<CountTokensResponse>;
  rerank(request: RerankRequest, signal: AbortSignal, metadata?: Record<string, string>): Promise<RerankResponse>;
  /** The connection was lost and is not back yet: its instances are not picked. */
  readonly down: boolean;
  close(): void;
}
