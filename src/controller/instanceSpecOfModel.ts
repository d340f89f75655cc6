import { create } from "@bufbuild/protobuf";
import { InstanceSpecSchema, type InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import type { ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { isFileEngine } from "../engines/proxyPresets.js";

/** What a worker loads for one instance of a model of the desired state. */
export function instanceSpecOfModel(record: ModelRecord, instanceId = ""): InstanceSpec {
  const spec = record.spec!;
  return create(InstanceSpecSchema, {
    model: spec.name,
    engine: spec.engine || "llama.cpp",
    source: spec.source,
    instanceId,
    llamaCpp: isFileEngine(spec.engine) ? spec.llamaCpp : undefined,
    proxy: spec.proxy,
    labels: spec.labels,
    weight: spec.weight,
    managed: true,
    generation: record.generation,
  });
}
