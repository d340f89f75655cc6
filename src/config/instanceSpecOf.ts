import type { MessageInitShape } from "@bufbuild/protobuf";
import { modelPath } from "./loadConfig.js";
import type { ModelConfig, SmmfConfig } from "./SmmfConfig.js";
import type { InstanceSpecSchema } from "../gen/smmf/v1/instance_pb.js";
import { isFileEngine } from "../engines/proxyPresets.js";

/** The InstanceSpec a configured model is loaded with. */
export function instanceSpecOf(config: SmmfConfig, model: ModelConfig): MessageInitShape<typeof InstanceSpecSchema> {
  if (!isFileEngine(model.engine ?? "")) {
    return {
      model: model.name,
      engine: model.engine,
      weight: model.weight ?? 0,
      proxy: {
        baseUrl: model.baseUrl ?? "",
        upstreamModel: model.upstreamModel ?? "",
        apiKeyEnv: model.apiKeyEnv ?? "",
        apiKeyFile: model.apiKeyFile ?? "",
        credential: model.credential ?? "",
        headers: model.headers ?? {},
        connectTimeoutMs: model.connectTimeoutMs ?? 0,
        readTimeoutMs: model.readTimeoutMs ?? 0,
        maxConcurrency: model.maxConcurrency ?? 0,
        poolSize: model.poolSize ?? 0,
        idleTimeoutMs: model.idleTimeoutMs ?? 0,
        keepAlive: model.keepAlive,
        apiVersion: model.apiVersion ?? "",
        embeddings: model.embeddings ?? false,
        contextSize: model.contextSize ?? 0,
      },
    };
  }
  return {
    model: model.name,
    // A GGUF file without an engine: the configured engine of GGUF models.
    engine: model.engine || config.engine,
    source: modelPath(config, model),
    weight: model.weight ?? 0,
    llamaCpp: {
      contextSize: model.contextSize ?? config.contextSize,
      sequences: model.sequences ?? config.sequences,
      threads: model.threads ?? config.threads,
      gpuLayers: model.gpuLayers,
      embeddings: model.embeddings ?? true,
      chatTemplate: model.chatTemplate ?? "auto",
      prefixCache: model.prefixCache,
    },
  };
}
