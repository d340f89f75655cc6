import type { MessageInitShape } from "@bufbuild/protobuf";
import { modelPath } from "./loadConfig.js";
import type { ModelConfig, SmmfConfig } from "./SmmfConfig.js";
import type { InstanceSpecSchema } from "../gen/smmf/v1/instance_pb.js";

/** The InstanceSpec a configured model is loaded with. */
export function instanceSpecOf(config: SmmfConfig, model: ModelConfig): MessageInitShape<typeof InstanceSpecSchema> {
  return {
    model: model.name,
    engine: "llama.cpp",
    source: modelPath(config, model),
    weight: model.weight ?? 0,
    llamaCpp: {
      contextSize: model.contextSize ?? config.contextSize,
      sequences: model.sequences ?? config.sequences,
      threads: model.threads ?? config.threads,
      gpuLayers: model.gpuLayers,
      embeddings: model.embeddings ?? true,
      chatTemplate: model.chatTemplate ?? "auto",
    },
  };
}
