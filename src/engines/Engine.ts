/** One chat message, in SMMF's engine-neutral form. */
export interface ChatTurn {
  role: "system" | "user" | "assistant";
  content: string;
}

/** What to generate from: chat messages or a plain prompt. */
export type GenerationInput = ({ kind: "chat"; messages: ChatTurn[] } | { kind: "prompt"; prompt: string }) & {
  /** Text already generated for this request elsewhere: the answer continues it. */
  continuation?: string;
};

export interface SamplingOptions {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: string[];
  frequencyPenalty?: number;
  presencePenalty?: number;
}

export type FinishReason = "stop" | "length" | "cancelled";

/** A generation starts with `started`, streams deltas, then ends with `done`. */
export type GenerationEvent =
  | { type: "started"; promptTokens: number }
  | { type: "delta"; text: string; tokenCount: number }
  | { type: "done"; finishReason: FinishReason; promptTokens: number; completionTokens: number; engineTimeMs: number };

export interface EmbeddingResult {
  vectors: Float32Array[];
  promptTokens: number;
}

export interface EngineInstanceInfo {
  engine: string;
  contextSize: number;
  /** 0 when the instance serves no embeddings. */
  embeddingSize: number;
  /** Concurrent generations the instance runs at once. */
  maxConcurrency: number;
}

/** A loaded model, ready to serve. Every call takes an AbortSignal; aborting frees its resources at once. */
export interface EngineInstance {
  readonly info: EngineInstanceInfo;
  /** Generations running now. */
  inFlight(): number;
  generate(input: GenerationInput, options: SamplingOptions, signal: AbortSignal): AsyncIterable<GenerationEvent>;
  embed(inputs: string[], signal: AbortSignal): Promise<EmbeddingResult>;
  countTokens(input: GenerationInput): Promise<number>;
  close(): Promise<void>;
}
