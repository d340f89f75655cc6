import type { Instance } from "../gen/smmf/v1/instance_pb.js";
import type { Registry } from "./Registry.js";

/** The registry of the embedded single-process mode: a map in memory. */
export class MemoryRegistry implements Registry {
  private readonly instances = new Map<string, Instance>();
  private readonly listeners = new Set<() => void>();
  private list: readonly Instance[] = [];

  async register(instance: Instance): Promise<void> {
    this.instances.set(instance.instanceId, instance);
    this.changed();
  }

  async unregister(instanceId: string): Promise<void> {
    if (this.instances.delete(instanceId)) this.changed();
  }

  snapshot(): readonly Instance[] {
    return this.list;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private changed(): void {
    this.list = [...this.instances.values()];
    for (const listener of this.listeners) listener();
  }
}
