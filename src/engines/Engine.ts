/** A tool call of an assistant message. */
export interface ToolCall {
  id: string;
  name: string;
  /** The arguments as JSON text (as the model wrote them). */
  arguments: string;
}

/** One chat message, in SMMF's engine-neutral form. */
export interface ChatTurn {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  /** An assistant message's tool calls. */
  toolCalls?: ToolCall[];
  /** A tool message: the id of the call it answers. */
  toolCallId?: string;
  name?: string;
}

/** A function the model may call. */
export interface ToolDefinition {
  name: string;
  description?: string;
  /** JSON Schema of the arguments; undefined: no arguments. */
  parameters?: Record<string, unknown>;
  strict: boolean;
}

export type ToolChoice = { mode: "auto" | "none" | "required" } | { mode: "function"; name: string };

export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; name: string; schema: Record<string, unknown>; strict: boolean };

/** What to generate from: chat messages or a plain prompt. */
export type GenerationInput = ({ kind: "chat"; messages: ChatTurn[] } | { kind: "prompt"; prompt: string }) & {
  /** Text already generated for this request elsewhere: the answer continues it. */
  continuation?: string;
  /** Tools the model may call (chat only). */
  tools?: ToolDefinition[];
  /** Unset: "auto" when there are tools. */
  toolChoice?: ToolChoice;
  /** Unset: true. */
  parallelToolCalls?: boolean;
  responseFormat?: ResponseFormat;
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
  /** Answers to generate; unset: 1. */
  n?: number;
  /** Report log-probabilities of content tokens, with `topLogprobs` alternatives each. */
  logprobs?: boolean;
  topLogprobs?: number;
  /** Request fields SMMF does not interpret (see GenerateStart.extra_json). */
  extra?: Record<string, unknown>;
}

export type FinishReason = "stop" | "length" | "cancelled" | "tool_calls" | "content_filter";

/** A piece of a tool call: the first one of a call has its id and name, later ones more of its arguments. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  name?: string;
  arguments: string;
}

export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top: { token: string; logprob: number; bytes: number[] }[];
}

/**
 * A generation starts with `started`, streams deltas, then ends with `done`. A delta carries content text
 * (`tokenCount` tokens of it), and optionally pieces of tool calls, log-probabilities (one per content token)
 * or a refusal; `index` is its answer when n > 1.
 */
export type GenerationEvent =
  | { type: "started"; promptTokens: number }
  | {
      type: "delta";
      text: string;
      tokenCount: number;
      index?: number;
      toolCalls?: ToolCallDelta[];
      logprobs?: TokenLogprob[];
      refusal?: string;
      /** Tokens of tool calls or refusal in this delta. */
      otherTokens?: number;
    }
  | {
      type: "done";
      finishReason: FinishReason;
      promptTokens: number;
      completionTokens: number;
      /** Prompt tokens taken from the engine's cache instead of being evaluated (part of promptTokens). */
      cachedPromptTokens?: number;
      engineTimeMs: number;
      /** n > 1: each answer's finish reason, by index. */
      choiceFinishReasons?: FinishReason[];
      /** finishReason "stop" because of one of the caller's stop strings: that string (answer 0's). */
      stopSequence?: string;
    };

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

/** Relevance scores, one per document in order, and how they were made. */
export interface RerankResult {
  scores: number[];
  promptTokens: number;
  method: "ranking" | "upstream";
}

/** A loaded model, ready to serve. Every call takes an AbortSignal; aborting frees its resources at once. */
export interface EngineInstance {
  readonly info: EngineInstanceInfo;
  /** Generations running now. */
  inFlight(): number;
  generate(input: GenerationInput, options: SamplingOptions, signal: AbortSignal): AsyncIterable<GenerationEvent>;
  embed(inputs: string[], signal: AbortSignal): Promise<EmbeddingResult>;
  countTokens(input: GenerationInput): Promise<number>;
  /**
   * Scores documents by relevance to a query, by the engine's own means (a model's ranking head, an upstream's
   * rerank endpoint); absent where it has none (the worker then falls back to embedding similarity).
   */
  rerank?(query: string, documents: string[], signal: AbortSignal): Promise<RerankResult>;
  /**
   * Engines that run something that can die on its own (a child process) call `listener` once when the
   * instance cannot serve any more; the worker then unloads it.
   */
  onFailure?(listener: (err: Error) => void): void;
  close(): Promise<void>;
}
