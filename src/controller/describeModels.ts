import { create } from "@bufbuild/protobuf";
import { ModelSchema, type Model } from "../gen/smmf/v1/controller_pb.js";
import { InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import type { ModelRecord, ModelStatus } from "../gen/smmf/v1/model_pb.js";

/**
 * Every model: those of the desired state (with their spec, desired and ready replicas, and the leading
 * controller's message), and those only static worker configurations serve. Sorted by name.
 */
export function describeModels(records: readonly ModelRecord[], instances: readonly Instance[], statuses: readonly ModelStatus[]): Model[] {
  const byName = new Map<string, Model>();
  const statusOf = new Map(statuses.map((s) => [s.name, s]));
  for (const record of records) {
    const spec = record.spec!;
    byName.set(
      spec.name,
      create(ModelSchema, {
        name: spec.name,
        managed: true,
        desiredReplicas: spec.replicas,
        spec,
        generation: record.generation,
        created: record.createdAt?.seconds ?? 0n,
        message: statusOf.get(spec.name)?.message ?? "",
      }),
    );
  }
  for (const instance of instances) {
    let model = byName.get(instance.model);
    if (!model) {
      model = create(ModelSchema, { name: instance.model, created: instance.startedAt?.seconds ?? 0n });
      byName.set(instance.model, model);
    }
    model.instances.push(instance);
    if (!model.engines.includes(instance.engine)) model.engines.push(instance.engine);
    if (instance.state === InstanceState.ONLINE) model.readyReplicas++;
    model.inFlight += instance.inFlight;
    const started = instance.startedAt?.seconds ?? 0n;
    if (!model.managed && started && (model.created === 0n || started < model.created)) model.created = started;
  }
  for (const model of byName.values()) {
    model.instances.sort((a, b) => a.workerId.localeCompare(b.workerId) || a.instanceId.localeCompare(b.instanceId));
    if (model.managed && model.engines.length === 0) model.engines.push(model.spec!.engine || "llama.cpp");
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}
