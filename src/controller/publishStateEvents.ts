import { EventType } from "../gen/smmf/v1/controller_pb.js";
import { InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import type { Registry } from "../registry/Registry.js";
import type { EventHub } from "./EventHub.js";
import type { ModelStore } from "./ModelStore.js";
import type { StatusStore } from "./StatusStore.js";

const stateName = (s: InstanceState) => InstanceState[s]?.toLowerCase() ?? String(s);

/**
 * Turns changes of the watched state (desired models, model statuses, instances, workers) into events, so
 * every controller and gateway tells the same story. Returns the function that stops it.
 */
export function publishStateEvents(hub: EventHub, registry: Registry, store: ModelStore, statuses: StatusStore): () => void {
  let models = new Map(store.list().map((r) => [r.spec!.name, r]));
  let messages = new Map(statuses.list().map((s) => [s.name, s.message]));
  let instances = new Map(registry.snapshot().map((i) => [i.instanceId, i]));
  let workers = new Map(registry.workers().map((w) => [w.workerId, w]));

  const onModels = () => {
    const next = new Map(store.list().map((r) => [r.spec!.name, r]));
    for (const [name, record] of next) {
      const before = models.get(name);
      if (!before) hub.publish({ type: EventType.MODEL_STARTED, model: name, message: `desired replicas ${record.spec!.replicas}` });
      else if (before.generation !== record.generation) hub.publish({ type: EventType.MODEL_UPDATED, model: name, message: `generation ${record.generation}: instances are replaced one at a time` });
      else if (before.spec!.replicas !== record.spec!.replicas) hub.publish({ type: EventType.MODEL_UPDATED, model: name, message: `replicas ${before.spec!.replicas} → ${record.spec!.replicas}` });
    }
    for (const name of models.keys()) if (!next.has(name)) hub.publish({ type: EventType.MODEL_STOPPED, model: name });
    models = next;
  };
  const onStatuses = () => {
    const next = new Map(statuses.list().map((s) => [s.name, s.message]));
    for (const [name, message] of next) if (message && messages.get(name) !== message) hub.publish({ type: EventType.WARNING, model: name, message });
    messages = next;
  };
  const onInstances = () => {
    const next = new Map(registry.snapshot().map((i) => [i.instanceId, i]));
    const describe = (i: Instance) => ({ model: i.model, instanceId: i.instanceId, workerId: i.workerId });
    for (const [id, instance] of next) {
      const before = instances.get(id);
      if (!before) hub.publish({ type: EventType.INSTANCE_ADDED, ...describe(instance), message: stateName(instance.state) });
      else if (before.state !== instance.state) hub.publish({ type: EventType.INSTANCE_STATE_CHANGED, ...describe(instance), message: `${stateName(before.state)} → ${stateName(instance.state)}` });
    }
    for (const [id, instance] of instances) if (!next.has(id)) hub.publish({ type: EventType.INSTANCE_REMOVED, ...describe(instance) });
    instances = next;
  };
  const onWorkers = () => {
    const next = new Map(registry.workers().map((w) => [w.workerId, w]));
    for (const [id, worker] of next) if (!workers.has(id)) hub.publish({ type: EventType.WORKER_JOINED, workerId: id, message: worker.address });
    for (const id of workers.keys()) if (!next.has(id)) hub.publish({ type: EventType.WORKER_LEFT, workerId: id });
    workers = next;
  };
  const stops = [store.subscribe(onModels), statuses.subscribe(onStatuses), registry.subscribe(onInstances), registry.subscribeWorkers(onWorkers)];
  return () => stops.forEach((stop) => stop());
}
