import type { Instance, WorkerInfo } from "../gen/smmf/v1/instance_pb.js";
import type { Registry } from "./Registry.js";

/** The registry of the embedded single-process mode: a map in memory. */
export class MemoryRegistry implements Registry {
  private readonly instances = new Map<string, Instance>();
  private readonly listeners = new Set<() => void>();
  private list: readonly Instance[] = [];
  private readonly workerMap = new Map<string, WorkerInfo>();
  private workerList: readonly WorkerInfo[] = [];
  private readonly workerListeners = new Set<() => void>();

  async register(instance: Instance): Promise<void> {
    this.instances.set(instance.instanceId, instance);
    this.changed();
  }

  async unregister(instanceId: string): Promise<void> {
    if (this.instances.delete(instanceId)) this.changed();
  }

  async registerWorker(worker: WorkerInfo): Promise<void> {
    this.workerMap.set(worker.workerId, worker);
    this.workerList = [...this.workerMap.values()];
    for (const listener of this.workerListeners) listener();
  }

  workers(): readonly WorkerInfo[] {
    return this.workerList;
  }

  subscribeWorkers(listener: () => void): () => void {
    this.workerListeners.add(listener);
    return () => this.workerListeners.delete(listener);
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
    this.workerListeners.clear();
  }

  private changed(): void {
    this.list = [...this.instances.values()];
    for (const listener of this.listeners) listener();
  }
}
