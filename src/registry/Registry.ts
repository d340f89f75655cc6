import type { Instance } from "../gen/smmf/v1/instance_pb.js";

/** Where workers publish the instances they host, and gateways find them. */
export interface Registry {
  /** Adds or replaces an instance record. */
  register(instance: Instance): Promise<void>;
  unregister(instanceId: string): Promise<void>;
  /** The current set, from memory: no round trip. */
  snapshot(): readonly Instance[];
  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  close(): Promise<void>;
}
