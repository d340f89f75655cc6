import type { InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { defaultThreads } from "./defaultThreads.js";
import { getSharedLlama } from "./getSharedLlama.js";
import type { EngineDefaults } from "./loadEngine.js";
import { DEFAULT_SEQUENCES, MAX_DEFAULT_CONTEXT } from "./llamaCppDefaults.js";

/** llama.cpp's own estimate (node-llama-cpp's GgufInsights) of a GGUF model with its contexts, from the file's header. */
export async function estimateLlamaCppMemory(spec: InstanceSpec, defaults: EngineDefaults): Promise<number> {
  const { readGgufFileInfo, GgufInsights } = await import("node-llama-cpp");
  let info;
  try {
    info = await readGgufFileInfo(spec.source, { sourceType: "filesystem", logWarnings: false, readTensorInfo: true });
  } catch (err) {
    throw new SmmfError("failed_precondition", `cannot read the GGUF file ${spec.source}: ${(err as Error).message}`, { param: "source", cause: err });
  }
  const llama = await getSharedLlama(spec.llamaCpp?.threads || defaults.threads || defaultThreads(), defaults.gpu ?? "auto");
  const insights = await GgufInsights.from(info, llama);
  const p = spec.llamaCpp;
  const gpuLayers = llama.gpu === false ? 0 : (p?.gpuLayers ?? insights.totalLayers);
  const model = await insights.estimateModelResourceRequirementsV2({ gpuLayers });
  const contextSize = p?.contextSize || Math.min(insights.trainContextSize ?? MAX_DEFAULT_CONTEXT, MAX_DEFAULT_CONTEXT);
  const context = await insights.estimateContextResourceRequirementsV2({ contextSize, modelGpuLayers: gpuLayers, sequences: p?.sequences || DEFAULT_SEQUENCES });
  let total = model.cpuRam + model.gpuVram + context.cpuRam + context.gpuVram;
  if (p ? p.embeddings : true) {
    const embedding = await insights.estimateContextResourceRequirementsV2({ contextSize, modelGpuLayers: gpuLayers, sequences: 1, isEmbeddingContext: true });
    total += embedding.cpuRam + embedding.gpuVram;
  }
  return Math.ceil(total);
}
