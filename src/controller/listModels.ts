import { InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";

export interface ModelSummary {
  name: string;
  engines: string[];
  readyReplicas: number;
  /** Unix seconds of the oldest instance. */
  created: number;
}

/** Groups registry instances into models, sorted by name. */
export function listModels(instances: readonly Instance[]): ModelSummary[] {
  const models = new Map<string, ModelSummary>();
  for (const instance of instances) {
    let model = models.get(instance.model);
    const created = Number(instance.startedAt?.seconds ?? 0n);
    if (!model) {
      model = { name: instance.model, engines: [], readyReplicas: 0, created };
      models.set(instance.model, model);
    }
    if (!model.engines.includes(instance.engine)) model.engines.push(instance.engine);
    if (instance.state === InstanceState.ONLINE) model.readyReplicas++;
    if (created && created < model.created) model.created = created;
  }
  return [...models.values()].sort((a, b) => a.name.localeCompare(b.name));
}

export function openAiModel(model: ModelSummary): unknown {
  return { id: model.name, object: "model", created: model.created, owned_by: "smmf" };
}
