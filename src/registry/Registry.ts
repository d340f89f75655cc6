import type { Instance, WorkerInfo } from "../gen/smmf/v1/instance_pb.js";

/** Where workers publish themselves and the instances they host, and gateways and controllers find them. */
export interface Registry {
  /** Adds or replaces an instance record. */
  register(instance: Instance): Promise<void>;
  unregister(instanceId: string): Promise<void>;
  /** Adds or replaces a worker's record. */
  registerWorker(worker: WorkerInfo): Promise<void>;
  /** The current set, from memory: no round trip. */
  snapshot(): readonly Instance[];
  /** Calls `listener` after every change of the instances; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** The current workers, from memory. */
  workers(): readonly WorkerInfo[];
  /** Calls `listener` after every change of the workers; returns the unsubscribe function. */
  subscribeWorkers(listener: () => void): () => void;
  close(): Promise<void>;
  /** Registries on etcd: whether they watch it now (false while it is unreachable; what they hold is then as last seen). Absent for those in memory. */
  readonly watching?: boolean;
}
