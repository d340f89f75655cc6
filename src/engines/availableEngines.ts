import { PROXY_PRESETS } from "./proxyPresets.js";

let cached: string[] | undefined;

/** The engines this installation can run: llama.cpp when node-llama-cpp (an optional dependency) is installed, and every upstream preset. */
export function availableEngines(): string[] {
  if (!cached) {
    let llama = true;
    try {
      import.meta.resolve("node-llama-cpp");
    } catch {
      llama = false;
    }
    cached = [...(llama ? ["llama.cpp"] : []), ...Object.keys(PROXY_PRESETS)];
  }
  return cached;
}
