import type { LogLevel } from "../telemetry/createLogger.js";

/** One model the embedded worker (or `smmf worker`) loads at start. */
export interface ModelConfig {
  /** Name clients ask for. */
  name: string;
  /** GGUF file; a relative path is looked up in `modelDir`. */
  file: string;
  contextSize?: number;
  sequences?: number;
  threads?: number;
  gpuLayers?: number;
  embeddings?: boolean;
  chatTemplate?: "auto" | "fallback";
}

export interface SmmfConfig {
  /** Gateway address. */
  host: string;
  port: number;
  /** Worker gRPC address; port 0 picks a free port. */
  workerHost: string;
  workerPort: number;
  modelDir: string;
  models: ModelConfig[];
  /** Default CPU threads per llama.cpp instance; 0 = from the machine's cores. */
  threads: number;
  /** Default concurrent generations per instance. */
  sequences: number;
  /** Default context size per sequence; 0 = the model's training context, at most 4096. */
  contextSize: number;
  gpu: "auto" | "off";
  maxBodyBytes: number;
  /** Tokens produced within this many milliseconds of the last streamed message are sent together; 0 sends each at once. */
  streamIntervalMs: number;
  logLevel: LogLevel;
  /** How long a stopping server waits for requests in flight. */
  shutdownGraceMs: number;
}
