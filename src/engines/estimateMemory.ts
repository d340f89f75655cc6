import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { EngineDefaults } from "./loadEngine.js";

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
    default:
      throw new SmmfError("invalid_argument", `unknown engine '${spec.engine}'; known engines: llama.cpp`, { param: "engine" });
  }
}
