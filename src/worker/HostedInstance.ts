import type { EngineInstance } from "../engines/Engine.js";
import type { Instance } from "../gen/smmf/v1/instance_pb.js";

/** A model instance a worker hosts: its registry record and its engine. */
export interface HostedInstance {
  record: Instance;
  engine: EngineInstance;
}
