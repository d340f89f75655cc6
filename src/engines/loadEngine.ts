import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { Logger } from "../telemetry/createLogger.js";
import type { EngineInstance } from "./Engine.js";
import { ENGINE_NAMES, LLAMA_SERVER_ENGINE, isProxyEngine } from "./proxyPresets.js";
import type { UpstreamCredential } from "./UpstreamCredential.js";

export interface EngineDefaults {
  threads?: number;
  gpu?: "auto" | false;
  /** The worker loading it, for messages. */
  workerId?: string;
  /** Upstream engines: the credentials the worker's operator defines (`upstreamCredentials`). */
  upstreamCredentials?: readonly UpstreamCredential[];
  /** Upstream engines: where what upstreams say in their errors is logged (it is not shown to clients). */
  logger?: Logger;
}

/** The settings both GGUF engines take from a spec: its file, and llama.cpp's parameters. */
function ggufOptions(spec: InstanceSpec, defaults: EngineDefaults) {
  const engine = spec.engine || "llama.cpp";
  if (!spec.source) throw new SmmfError("invalid_argument", `a ${engine} instance needs 'source', the path of a GGUF file`, { param: "source" });
  const p = spec.llamaCpp;
  const chatTemplate = p?.chatTemplate || "auto";
  if (chatTemplate !== "auto" && chatTemplate !== "fallback") {
    throw new SmmfError("invalid_argument", "chat_template must be 'auto' or 'fallback'", { param: "chat_template" });
  }
  return {
    modelPath: spec.source,
    contextSize: p?.contextSize,
    sequences: p?.sequences,
    threads: p?.threads || defaults.threads,
    gpuLayers: p?.gpuLayers,
    gpu: defaults.gpu,
    chatTemplate: chatTemplate as "auto" | "fallback",
    prefixCache: p?.prefixCache ?? true,
  };
}

/** Creates the engine an InstanceSpec names; engine modules are imported only when used. */
export async function loadEngine(spec: InstanceSpec, defaults: EngineDefaults): Promise<EngineInstance> {
  switch (spec.engine || "llama.cpp") {
    case "llama.cpp": {
      const options = ggufOptions(spec, defaults);
      const { createLlamaCppEngine } = await import("./createLlamaCppEngine.js");
      return createLlamaCppEngine({ ...options, embeddings: spec.llamaCpp ? spec.llamaCpp.embeddings : true });
    }
    case LLAMA_SERVER_ENGINE: {
      const options = ggufOptions(spec, defaults);
      const { createLlamaServerEngine } = await import("./llamaServer/createLlamaServerEngine.js");
      return createLlamaServerEngine({ ...options, model: spec.model, logger: defaults.logger });
    }
    default: {
      if (!isProxyEngine(spec.engine)) throw new SmmfError("invalid_argument", `unknown engine '${spec.engine}'; known engines: ${ENGINE_NAMES.join(", ")}`, { param: "engine" });
      const { createProxyEngine } = await import("./createProxyEngine.js");
      return createProxyEngine(spec, { workerId: defaults.workerId ?? "", credentials: defaults.upstreamCredentials, logger: defaults.logger });
    }
  }
}
