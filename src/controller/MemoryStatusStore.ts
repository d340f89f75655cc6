import type { ModelStatus } from "../gen/smmf/v1/model_pb.js";
import type { StatusStore } from "./StatusStore.js";

/** ModelStatus records in memory (the embedded mode). */
export class MemoryStatusStore implements StatusStore {
  private readonly map = new Map<string, ModelStatus>();
  private readonly listeners = new Set<() => void>();

  list(): readonly ModelStatus[] {
    return [...this.map.values()];
  }

  get(name: string): ModelStatus | undefined {
    return this.map.get(name);
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async put(status: ModelStatus): Promise<void> {
    this.map.set(status.name, status);
    for (const l of this.listeners) l();
  }

  async remove(name: string): Promise<void> {
    if (this.map.delete(name)) for (const l of this.listeners) l();
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
