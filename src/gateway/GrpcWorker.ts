import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  CountTokensRequestSchema,
  CountTokensResponseSchema,
  EmbedRequestSchema,
  EmbedResponseSchema,
  GenerateRequestSchema,
  GenerateResponseSchema,
  type CountTokensRequest,
  type CountTokensResponse,
  type EmbedRequest,
  type EmbedResponse,
  type GenerateRequest,
  type GenerateResponse,
  RerankRequestSchema,
  RerankResponseSchema,
  type RerankRequest,
  type RerankResponse,
} from "../gen/smmf/v1/inference_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { fastCodec } from "../net/fastCodec.js";
import { grpcFrame } from "../net/grpcFrames.js";
import { GrpcChannel, type ChannelOptions } from "./GrpcChannel.js";
import type { WorkerConnection } from "./WorkerConnection.js";

const GENERATE = "/smmf.v1.InferenceService/Generate";
const EMBED = "/smmf.v1.InferenceService/Embed";
const COUNT_TOKENS = "/smmf.v1.InferenceService/CountTokens";
const RERANK = "/smmf.v1.InferenceService/Rerank";

// Generate's messages through the request path's own codec (fastCodec); the rest through protobuf-es.
const generateRequests = fastCodec(GenerateRequestSchema);
const generateResponses = fastCodec(GenerateResponseSchema);
const decodeGenerateResponse = (bytes: Uint8Array): GenerateResponse => generateResponses.decode(bytes);

/** A worker in another process, over gRPC: binary protobuf on one HTTP/2 connection (GrpcChannel). */
export class GrpcWorker implements WorkerConnection {
  private readonly channel: GrpcChannel;

  constructor(address: string, options: ChannelOptions) {
    this.channel = new GrpcChannel(address, options);
  }

  get down(): boolean {
    return this.channel.down;
  }

  generate(request: GenerateRequest, signal: AbortSignal, metadata?: Record<string, string>): AsyncGenerator<GenerateResponse> {
    return this.channel.call(GENERATE, generateRequests.encodeFrame(request), signal, metadata, decodeGenerateResponse);
  }

  embed(request: EmbedRequest, signal: AbortSignal, metadata?: Record<string, string>): Promise<EmbedResponse> {
    return this.unary(EMBED, toBinary(EmbedRequestSchema, request), EmbedResponseSchema, signal, metadata);
  }

  countTokens(request: CountTokensRequest, signal: AbortSignal): Promise<CountTokensResponse> {
    return this.unary(COUNT_TOKENS, toBinary(CountTokensRequestSchema, request), CountTokensResponseSchema, signal);
  }

  rerank(request: RerankRequest, signal: AbortSignal, metadata?: Record<string, string>): Promise<RerankResponse> {
    return this.unary(RERANK, toBinary(RerankRequestSchema, request), RerankResponseSchema, signal, metadata);
  }

  close(): void {
    this.channel.close();
  }

  /** A unary call: one message each way. */
  private async unary<O extends DescMessage>(path: string, request: Uint8Array, output: O, signal: AbortSignal, metadata?: Record<string, string>): Promise<MessageShape<O>> {
    let result: MessageShape<O> | undefined;
    for await (const bytes of this.channel.call(path, grpcFrame(request), signal, metadata)) result = fromBinary(output, bytes);
    if (!result) throw new SmmfError("unavailable", "the worker sent no answer");
    return result;
  }
}
