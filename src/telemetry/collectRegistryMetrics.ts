import { InstanceState } from "../gen/smmf/v1/instance_pb.js";
import { EtcdRegistry } from "../registry/EtcdRegistry.js";
import type { Registry } from "../registry/Registry.js";
import { mirror, type Metrics } from "./Metrics.js";

/** At each scrape: instances by model, engine and state; for an etcd registry, its watch events, re-lists and connectivity. */
export function collectRegistryMetrics(metrics: Metrics, registry: Registry): () => void {
  const events = mirror(metrics.watchEvents, { prefix: "instances" });
  const relists = mirror(metrics.relists, { prefix: "instances" });
  return metrics.onCollect(() => {
    metrics.instances.reset();
    for (const i of registry.snapshot()) {
      metrics.instances.inc({ model: i.model, engine: i.engine, state: (InstanceState[i.state] ?? "UNSPECIFIED").toLowerCase() });
    }
    if (registry instanceof EtcdRegistry) {
      events(registry.stats.events);
      relists(registry.stats.relists);
      metrics.etcdUp.set(registry.watching ? 1 : 0);
    }
  });
}
