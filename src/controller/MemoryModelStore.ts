import type { ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { modelNotFound } from "./modelNotFound.js";
import type { ModelStore } from "./ModelStore.js";

/** The desired state of the embedded mode: in memory, gone with the process. */
export class MemoryModelStore implements ModelStore {
  private readonly records = new Map<string, ModelRecord>();
  private readonly listeners = new Set<() => void>();
  private snapshot: readonly ModelRecord[] = [];

  list(): readonly ModelRecord[] {
    return this.snapshot;
  }

  get(name: string): ModelRecord | undefined {
    return this.records.get(name);
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async ready(): Promise<void> {}

  async create(record: ModelRecord): Promise<ModelRecord> {
    const name = record.spec!.name;
    if (this.records.has(name)) throw new SmmfError("already_exists", `The model '${name}' is already started; use 'smmf model update', 'scale' or 'restart'`, { param: "name" });
    this.records.set(name, record);
    this.changed();
    return record;
  }

  async update(name: string, change: (current: ModelRecord) => ModelRecord): Promise<ModelRecord> {
    const current = this.records.get(name);
    if (!current) throw modelNotFound(name);
    const next = change(current);
    this.records.set(name, next);
    this.changed();
    return next;
  }

  async remove(name: string): Promise<void> {
    if (!this.records.delete(name)) throw modelNotFound(name);
    this.changed();
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private changed(): void {
    this.snapshot = [...this.records.values()];
    for (const listener of this.listeners) listener();
  }
}
