import type { ModelStatus } from "../gen/smmf/v1/model_pb.js";
import { ETCD_ROOT } from "../registry/instanceKey.js";

export const STATUS_PREFIX = `${ETCD_ROOT}status/`;

/** Where the leading controller leaves its account of each model, for every API node to show. */
export interface StatusStore {
  list(): readonly ModelStatus[];
  get(name: string): ModelStatus | undefined;
  subscribe(listener: () => void): () => void;
  put(status: ModelStatus): Promise<void>;
  remove(name: string): Promise<void>;
  close(): Promise<void>;
}
