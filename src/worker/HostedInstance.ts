import type { EngineInstance } from "../engines/Engine.js";
import type { Instance } from "../gen/smmf/v1/instance_pb.js";

/** A model instance a worker hosts: its registry record and, once loaded, its engine. */
export interface HostedInstance {
  record: Instance;
  /** Undefined while the instance loads. */
  engine?: EngineInstance;
  /** Estimated memory it holds, in bytes. */
  memoryBytes: number;
  /** Lets go of its downloaded model file (the cache may evict it then); idempotent. */
  release?: () => void;
  /** Set when it drains: resolves once it is unloaded. */
  draining?: Promise<void>;
}

/** A hosted instance that is loaded: it has its engine. */
export type ResolvedInstance = HostedInstance & { engine: EngineInstance };
