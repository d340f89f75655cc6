import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { EngineInstance } from "./Engine.js";
import { ENGINE_NAMES, isProxyEngine } from "./proxyPresets.js";

export interface EngineDefaults {
  threads?: number;
  gpu?: "auto" | false;
  /** The worker loading it, for messages. */
  workerId?: string;
}

/** Creates the engine an InstanceSpec names; engine modules are imported only when used. */
export async function loadEngine(spec: InstanceSpec, defaults: EngineDefaults): Promise<EngineInstance> {
  switch (spec.engine || "llama.cpp") {
    case "llama.cpp": {
      if (!spec.source) throw new SmmfError("invalid_argument", "a llama.cpp instance needs 'source', the path of a GGUF file", { param: "source" });
      const p = spec.llamaCpp;
      const chatTemplate = p?.chatTemplate || "auto";
      if (chatTemplate !== "auto" && chatTemplate !== "fallback") {
        throw new SmmfError("invalid_argument", "chat_template must be 'auto' or 'fallback'", { param: "chat_template" });
      }
      const { createLlamaCppEngine } = await import("./createLlamaCppEngine.js");
      return createLlamaCppEngine({
        modelPath: spec.source,
        contextSize: p?.contextSize,
        sequences: p?.sequences,
        threads: p?.threads || defaults.threads,
        gpuLayers: p?.gpuLayers,
        gpu: defaults.gpu,
        embeddings: p ? p.embeddings : true,
        chatTemplate,
      });
    }
    default: {
      if (!isProxyEngine(spec.engine)) throw new SmmfError("invalid_argument", `unknown engine '${spec.engine}'; known engines: ${ENGINE_NAMES.join(", ")}`, { param: "engine" });
      const { createProxyEngine } = await import("./createProxyEngine.js");
      return createProxyEngine(spec, defaults.workerId ?? "");
    }
  }
}
