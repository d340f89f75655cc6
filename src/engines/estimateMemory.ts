import { statSync } from "node:fs";
import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { EngineDefaults } from "./loadEngine.js";
import { ENGINE_NAMES, LLAMA_SERVER_ENGINE, PROXY_PRESETS, isProxyEngine } from "./proxyPresets.js";
import { checkProxyParams } from "./checkProxyParams.js";
import { upstreamKeySource } from "./resolveUpstreamKey.js";
import { hasNodeLlamaCpp } from "./availableEngines.js";

function ggufFileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (err) {
    throw new SmmfError("failed_precondition", `cannot read the GGUF file ${path}: ${(err as Error).message}`, { param: "source", cause: err });
  }
}

/**
 * Estimated memory an instance of `spec` needs (weights plus contexts, all devices together), in bytes,
 * without loading it. `spec.source` must already be a resolved file path.
 */
export async function estimateMemory(spec: InstanceSpec, defaults: EngineDefaults): Promise<number> {
  switch (spec.engine || "llama.cpp") {
    case "llama.cpp": {
      const { estimateLlamaCppMemory } = await import("./estimateLlamaCppMemory.js");
      return estimateLlamaCppMemory(spec, defaults);
    }
    case LLAMA_SERVER_ENGINE: {
      // A worker without node-llama-cpp (a light install running SMMF_LLAMA_SERVER) cannot read the model's
      // insights: the file's size, the weights, is the estimate.
      if (!hasNodeLlamaCpp()) return ggufFileSize(spec.source);
      // The same weights and KV cache in llama-server's process (its slots are the sequences); no embedding context.
      const { estimateLlamaCppMemory } = await import("./estimateLlamaCppMemory.js");
      return estimateLlamaCppMemory({ ...spec, llamaCpp: { ...spec.llamaCpp!, embeddings: false } } as InstanceSpec, defaults);
    }
    default:
      if (!isProxyEngine(spec.engine)) throw new SmmfError("invalid_argument", `unknown engine '${spec.engine}'; known engines: ${ENGINE_NAMES.join(", ")}`, { param: "engine" });
      // An upstream holds its model elsewhere: here only buffers and sockets. Its key settings are checked
      // now (nothing read), so that the controller refuses a model this worker would refuse to load.
      checkProxyParams(spec);
      upstreamKeySource(spec, new URL(spec.proxy?.baseUrl || PROXY_PRESETS[spec.engine].baseUrl).href, { workerId: defaults.workerId ?? "", credentials: defaults.upstreamCredentials });
      return 0;
  }
}
