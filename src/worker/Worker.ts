import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { InstanceSchema, InstanceState, type Instance, type InstanceSpec } from "../gen/smmf/v1/instance_pb.js";
import { loadEngine, type EngineDefaults } from "../engines/loadEngine.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import type { HostedInstance } from "./HostedInstance.js";

export const INSTANCE_RECORD_VERSION = 1;

export interface WorkerOptions {
  id?: string;
  registry?: Registry;
  engineDefaults?: EngineDefaults;
  logger: Logger;
}

/** Hosts named model instances and publishes them in a registry. */
export class Worker {
  readonly id: string;
  private address = "";
  private readonly instances = new Map<string, HostedInstance>();
  private readonly registry?: Registry;
  private readonly engineDefaults: EngineDefaults;
  private readonly logger: Logger;

  constructor(options: WorkerOptions) {
    this.id = options.id || `worker-${randomUUID().slice(0, 8)}`;
    this.registry = options.registry;
    this.engineDefaults = options.engineDefaults ?? {};
    this.logger = options.logger;
  }

  /** Sets the gRPC address gateways reach this worker on (known once it listens). */
  setAddress(address: string): void {
    this.address = address;
  }

  async load(spec: InstanceSpec): Promise<Instance> {
    if (!spec.model) throw new SmmfError("invalid_argument", "'model' is required", { param: "model" });
    const instanceId = spec.instanceId || `${spec.model}-${randomUUID().slice(0, 8)}`;
    if (this.instances.has(instanceId)) throw new SmmfError("failed_precondition", `instance '${instanceId}' is already loaded`, { param: "instance_id" });
    const started = performance.now();
    const engine = await loadEngine(spec, this.engineDefaults);
    const record = create(InstanceSchema, {
      instanceId,
      model: spec.model,
      engine: engine.info.engine,
      workerId: this.id,
      address: this.address,
      state: InstanceState.ONLINE,
      maxConcurrency: engine.info.maxConcurrency,
      contextSize: engine.info.contextSize,
      embeddingSize: engine.info.embeddingSize,
      labels: { ...spec.labels },
      weight: spec.weight,
      startedAt: timestampNow(),
      version: INSTANCE_RECORD_VERSION,
    });
    this.instances.set(instanceId, { record, engine });
    await this.registry?.register(record);
    this.logger.info("instance loaded", { instance: instanceId, model: spec.model, engine: record.engine, ms: Math.round(performance.now() - started) });
    return this.snapshotOf({ record, engine });
  }

  async unload(instanceId: string): Promise<void> {
    const hosted = this.instances.get(instanceId);
    if (!hosted) throw new SmmfError("not_found", `no instance '${instanceId}' on this worker`, { param: "instance_id" });
    this.instances.delete(instanceId);
    try {
      await this.registry?.unregister(instanceId);
    } catch (err) {
      // etcd unreachable: the key goes with the lease anyway; the engine must be freed regardless.
      this.logger.warn("could not remove the instance from the registry", { instance: instanceId, error: (err as Error).message });
    }
    await hosted.engine.close();
    this.logger.info("instance unloaded", { instance: instanceId });
  }

  list(): Instance[] {
    return [...this.instances.values()].map((h) => this.snapshotOf(h));
  }

  /** The instance to run a request on: the named one, or the least busy online instance of the model. */
  resolve(model: string, instanceId?: string): HostedInstance {
    if (instanceId) {
      const hosted = this.instances.get(instanceId);
      if (!hosted || hosted.record.model !== model) {
        throw new SmmfError("model_not_found", `instance '${instanceId}' of model '${model}' is not on this worker`, { param: "model" });
      }
      return hosted;
    }
    let best: HostedInstance | undefined;
    for (const hosted of this.instances.values()) {
      if (hosted.record.model !== model || hosted.record.state !== InstanceState.ONLINE) continue;
      if (!best || hosted.engine.inFlight() < best.engine.inFlight()) best = hosted;
    }
    if (!best) throw new SmmfError("model_not_found", `The model '${model}' does not exist on this worker`, { param: "model" });
    return best;
  }

  /** Requests running on this worker's instances. */
  inFlight(): number {
    let n = 0;
    for (const hosted of this.instances.values()) n += hosted.engine.inFlight();
    return n;
  }

  /** Marks every instance draining in the registry: gateways stop sending new requests to it. */
  async drain(): Promise<void> {
    for (const hosted of this.instances.values()) {
      hosted.record = create(InstanceSchema, { ...hosted.record, state: InstanceState.DRAINING });
      await this.registry?.register(hosted.record);
    }
    this.logger.info("draining", { instances: this.instances.size, inFlight: this.inFlight() });
  }

  async close(): Promise<void> {
    for (const id of [...this.instances.keys()]) await this.unload(id);
  }

  private snapshotOf(hosted: HostedInstance): Instance {
    return create(InstanceSchema, { ...hosted.record, inFlight: hosted.engine.inFlight() });
  }
}
