import type { Llama } from "node-llama-cpp";

let shared: Promise<Llama> | undefined;

/**
 * The process-wide llama.cpp runtime, loaded on first use so that node-llama-cpp (an optional, heavy
 * dependency) is only imported when a llama.cpp instance is configured. Never compiles at run time.
 */
export function getSharedLlama(maxThreads: number, gpu: "auto" | false = "auto"): Promise<Llama> {
  shared ??= (async () => {
    const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
    return getLlama({ build: "never", gpu, maxThreads, logLevel: LlamaLogLevel.error, progressLogs: false });
  })();
  shared.catch(() => (shared = undefined));
  return shared;
}
