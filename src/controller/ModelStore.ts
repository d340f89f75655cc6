import type { ModelRecord } from "../gen/smmf/v1/model_pb.js";

/** The desired state: one ModelRecord per model. */
export interface ModelStore {
  /** The records, from memory. */
  list(): readonly ModelRecord[];
  get(name: string): ModelRecord | undefined;
  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** Resolves once the records have been read (at most `timeoutMs`). */
  ready(timeoutMs?: number): Promise<void>;
  /** Adds a record; already_exists when one of that name is there. */
  create(record: ModelRecord): Promise<ModelRecord>;
  /**
   * Replaces a record with `change(current)`, atomically against concurrent writers (the change is applied
   * again to the newer record when another writer came first); model_not_found when there is none.
   */
  update(name: string, change: (current: ModelRecord) => ModelRecord): Promise<ModelRecord>;
  /** Removes a record; model_not_found when there is none. */
  remove(name: string): Promise<void>;
  close(): Promise<void>;
}
