import { findLlamaServer } from "./llamaServer/llamaServerBuild.js";
import { LLAMA_SERVER_ENGINE, PROXY_PRESETS } from "./proxyPresets.js";

let cached: string[] | undefined;
let nodeLlamaCpp: boolean | undefined;

/** Whether node-llama-cpp (an optional dependency) is installed. */
export function hasNodeLlamaCpp(): boolean {
  if (nodeLlamaCpp === undefined) {
    try {
      import.meta.resolve("node-llama-cpp");
      nodeLlamaCpp = true;
    } catch {
      nodeLlamaCpp = false;
    }
  }
  return nodeLlamaCpp;
}

/**
 * The engines this installation can run: llama.cpp when node-llama-cpp (an optional dependency) is installed,
 * llama.cpp's server when its binary is found (`smmf engine build llama.cpp-server`, or SMMF_LLAMA_SERVER),
 * and every upstream preset.
 */
export function availableEngines(): string[] {
  if (!cached) {
    cached = [...(hasNodeLlamaCpp() ? ["llama.cpp"] : []), ...(findLlamaServer() ? [LLAMA_SERVER_ENGINE] : []), ...Object.keys(PROXY_PRESETS)];
  }
  return cached;
}
