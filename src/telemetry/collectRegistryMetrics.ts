import { InstanceState } from "../gen/smmf/v1/instance_pb.js";
import { EtcdRegistry } from "../registry/EtcdRegistry.js";
import type { Registry } from "../registry/Registry.js";
import { mirror, type Metrics } from "./Metrics.js";

/**
 * At each scrape: instances by model, engine and state; for an etcd registry, its watch events, re-lists and
 * connectivity. The registry's instances are also the ones whose per-instance series are kept: those of an
 * instance that left it (unloaded, gone) are dropped (`Metrics.trackInstances`).
 */
export function collectRegistryMetrics(metrics: Metrics, registry: Registry): () => void {
  const events = mirror(metrics.watchEvents, { prefix: "instances" });
  const relists = mirror(metrics.relists, { prefix: "instances" });
  const stopTracking = metrics.trackInstances(() => registry.snapshot().map((i) => i.instanceId));
  const stopCollecting = metrics.onCollect(() => {
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
  return () => {
    stopTracking();
    stopCollecting();
  };
}
