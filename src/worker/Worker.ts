import { randomUUID } from "node:crypto";
import { freemem, totalmem } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { InstanceSchema, InstanceState, WorkerInfoSchema, type Instance, type InstanceSpec, type WorkerInfo } from "../gen/smmf/v1/instance_pb.js";
import { availableEngines } from "../engines/availableEngines.js";
import { estimateMemory } from "../engines/estimateMemory.js";
import { loadEngine, type EngineDefaults } from "../engines/loadEngine.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import type { HostedInstance, ResolvedInstance } from "./HostedInstance.js";
import { mib } from "../util/mib.js";
import { fetchModelFile, isRemoteSource } from "./fetchModelFile.js";
import { resolveSource } from "./resolveSource.js";
import { validateModelName } from "./validateModelName.js";

export const INSTANCE_RECORD_VERSION = 1;
export const WORKER_RECORD_VERSION = 1;

/** Which model sources a worker accepts (sources come from API callers: the operator decides what they may name). */
export interface SourcePolicy {
  /** Folders (or single files) beside the model folder that local sources may lie in. */
  allowedDirs: string[];
  /** Hosts http(s) sources may be downloaded from: exact names or `*.suffix`; empty: none. */
  allowedHosts: string[];
  /** Lets downloads reach loopback, private and link-local addresses. */
  allowPrivate: boolean;
  /** Largest download, in bytes. */
  maxDownloadBytes: number;
  /** Longest download, in ms. */
  downloadTimeoutMs: number;
}

export interface WorkerOptions {
  id?: string;
  registry?: Registry;
  engineDefaults?: EngineDefaults;
  logger: Logger;
  /** Labels the controller's placement matches against. */
  labels?: Record<string, string>;
  /** Memory offered to model instances, in bytes; default: the machine's, bounded by what is free. */
  maxMemoryBytes?: number;
  /** Folder relative model sources are found in. */
  modelDir?: string;
  /** Folder GGUF files downloaded from http(s) sources are kept in; default: `.download-cache` in the model folder. */
  downloadDir?: string;
  /** Which model sources this worker accepts; default: files in the model folder only, no http(s) sources. */
  sourcePolicy?: SourcePolicy;
  /** After marking an instance draining, how long to keep taking requests already on their way (ms). */
  drainSettleMs?: number;
  /** Longest an instance may drain before it is unloaded anyway (ms). */
  drainGraceMs?: number;
}

/** Hosts named model instances and publishes them, and itself, in a registry. */
export class Worker {
  readonly id: string;
  readonly labels: Record<string, string>;
  private address = "";
  private readonly instances = new Map<string, HostedInstance>();
  /** Where the worker publishes its instances (and, with etcd, where a session's term is checked). */
  readonly registry?: Registry;
  private readonly engineDefaults: EngineDefaults;
  private readonly logger: Logger;
  private readonly options: WorkerOptions;
  private readonly listeners = new Set<() => void>();
  private readonly startedAt = timestampNow();
  private publishing = false;
  private publishAgain = false;
  /** Highest controller term seen on a session; sessions of lower terms are refused. */
  highestTerm = 0n;
  /** Open controller sessions, so that a newer term can end older ones. */
  readonly sessions = new Set<{ term: bigint; end(why: SmmfError): void }>();

  constructor(options: WorkerOptions) {
    this.id = options.id || `worker-${randomUUID().slice(0, 8)}`;
    this.registry = options.registry;
    // Engines get the worker's logger too: upstream engines log what their upstreams say in errors there.
    this.engineDefaults = { logger: options.logger, ...options.engineDefaults, workerId: this.id };
    this.logger = options.logger;
    this.labels = { ...options.labels };
    this.options = options;
  }

  /** Sets the gRPC address gateways reach this worker on (known once it listens), and publishes the worker. */
  setAddress(address: string): void {
    this.address = address;
    this.changed();
  }

  /** Calls `listener` after every change of the worker's instances; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The spec with its source as a local file, within the source policy: a path inside the model folder or an
   * allowed folder, an http(s) URL from an allowed host downloaded (once) into the download folder.
   */
  private async resolved(spec: InstanceSpec): Promise<InstanceSpec> {
    if ((spec.engine || "llama.cpp") !== "llama.cpp") return spec;
    const modelDir = this.options.modelDir ?? ".";
    const policy = this.options.sourcePolicy;
    if (isRemoteSource(spec.source)) {
      const source = await fetchModelFile(spec.source, this.options.downloadDir ?? join(modelDir, ".download-cache"), this.id, {
        allowedHosts: policy?.allowedHosts ?? [],
        allowPrivate: policy?.allowPrivate ?? false,
        maxBytes: policy?.maxDownloadBytes,
        timeoutMs: policy?.downloadTimeoutMs,
      });
      return { ...spec, source };
    }
    return { ...spec, source: resolveSource(spec.source, modelDir, this.id, policy?.allowedDirs ?? []) };
  }

  /** Estimated memory an instance of `spec` would need here, in bytes. */
  async estimate(spec: InstanceSpec): Promise<number> {
    validateModelName(spec.model);
    return estimateMemory(await this.resolved(spec), this.engineDefaults);
  }

  async load(spec: InstanceSpec): Promise<Instance> {
    validateModelName(spec.model);
    const instanceId = spec.instanceId || `${spec.model}-${randomUUID().slice(0, 8)}`;
    if (this.instances.has(instanceId)) throw new SmmfError("failed_precondition", `instance '${instanceId}' is already loaded`, { param: "instance_id" });
    const resolved = await this.resolved(spec);
    // Instances the controller places must fit; a statically configured one is loaded as asked, and counted.
    const memoryBytes = spec.managed
      ? await estimateMemory(resolved, this.engineDefaults)
      : await estimateMemory(resolved, this.engineDefaults).catch(() => 0);
    const { free, total } = this.memory();
    if (spec.managed && memoryBytes > free) {
      throw new SmmfError("resource_exhausted", `an instance of '${spec.model}' needs about ${mib(memoryBytes)}; worker ${this.id} has ${mib(free)} free of ${mib(total)}`);
    }
    const started = performance.now();
    const hosted: HostedInstance = {
      memoryBytes,
      record: create(InstanceSchema, {
        instanceId,
        model: spec.model,
        engine: spec.engine || "llama.cpp",
        workerId: this.id,
        address: this.address,
        state: InstanceState.LOADING,
        labels: { ...spec.labels },
        weight: spec.weight,
        managed: spec.managed,
        generation: spec.generation,
        memoryBytes: BigInt(memoryBytes),
        startedAt: timestampNow(),
        version: INSTANCE_RECORD_VERSION,
      }),
    };
    this.instances.set(instanceId, hosted);
    this.changed();
    let engine;
    try {
      await this.registry?.register(hosted.record);
      engine = await loadEngine(resolved, this.engineDefaults);
    } catch (err) {
      if (this.instances.get(instanceId) === hosted) {
        this.instances.delete(instanceId);
        await this.registry?.unregister(instanceId).catch(() => undefined);
        this.changed();
      }
      throw err;
    }
    if (this.instances.get(instanceId) !== hosted) {
      // Unloaded while it was loading.
      await engine.close();
      throw new SmmfError("unavailable", `instance '${instanceId}' was unloaded while it loaded`);
    }
    hosted.engine = engine;
    hosted.record = create(InstanceSchema, {
      ...hosted.record,
      engine: engine.info.engine,
      state: InstanceState.ONLINE,
      maxConcurrency: engine.info.maxConcurrency,
      contextSize: engine.info.contextSize,
      embeddingSize: engine.info.embeddingSize,
    });
    await this.publishInstance(hosted);
    this.logger.info("instance loaded", { instance: instanceId, model: spec.model, engine: hosted.record.engine, ms: Math.round(performance.now() - started) });
    return this.snapshotOf(hosted);
  }

  /** Unloads an instance; with `drain`, first stops routing to it and lets its requests finish. */
  async unload(instanceId: string, options: { drain?: boolean } = {}): Promise<void> {
    const hosted = this.hosted(instanceId);
    if (options.drain && hosted.engine) return this.drainInstance(instanceId);
    this.instances.delete(instanceId);
    try {
      await this.registry?.unregister(instanceId);
    } catch (err) {
      // etcd unreachable: the key goes with the lease anyway; the engine must be freed regardless.
      this.logger.warn("could not remove the instance from the registry", { instance: instanceId, error: (err as Error).message });
    }
    await hosted.engine?.close();
    this.changed();
    this.logger.info("instance unloaded", { instance: instanceId });
  }

  /** Sets an instance online, offline (loaded, not routed to) or draining (finishes its requests, then unloads). */
  async setState(instanceId: string, state: InstanceState): Promise<Instance> {
    const hosted = this.hosted(instanceId);
    if (state === InstanceState.DRAINING) {
      void this.drainInstance(instanceId).catch((err: unknown) => this.logger.warn("drain failed", { instance: instanceId, error: String(err) }));
      return this.snapshotOf(hosted);
    }
    if (state !== InstanceState.ONLINE && state !== InstanceState.OFFLINE) {
      throw new SmmfError("invalid_argument", "state must be ONLINE, OFFLINE or DRAINING", { param: "state" });
    }
    if (!hosted.engine) throw new SmmfError("failed_precondition", `instance '${instanceId}' is still loading`, { param: "instance_id" });
    if (hosted.draining) throw new SmmfError("failed_precondition", `instance '${instanceId}' is draining; it will be unloaded`, { param: "instance_id" });
    if (hosted.record.state !== state) {
      hosted.record = create(InstanceSchema, { ...hosted.record, state });
      await this.publishInstance(hosted);
      this.logger.info("instance state set", { instance: instanceId, state: InstanceState[state] });
    }
    return this.snapshotOf(hosted);
  }

  /** Marks the instance draining, waits for its requests to finish (at most the drain grace), then unloads it. */
  private drainInstance(instanceId: string): Promise<void> {
    const hosted = this.hosted(instanceId);
    hosted.draining ??= (async () => {
      hosted.record = create(InstanceSchema, { ...hosted.record, state: InstanceState.DRAINING });
      await this.publishInstance(hosted).catch(() => undefined);
      this.logger.info("instance draining", { instance: instanceId, inFlight: hosted.engine?.inFlight() ?? 0 });
      // Requests routed before gateways saw the new state still arrive for a moment.
      await new Promise((r) => setTimeout(r, this.options.drainSettleMs ?? 300));
      const deadline = Date.now() + (this.options.drainGraceMs ?? 30_000);
      while ((hosted.engine?.inFlight() ?? 0) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (this.instances.get(instanceId) === hosted) await this.unload(instanceId);
    })();
    return hosted.draining;
  }

  list(): Instance[] {
    return [...this.instances.values()].map((h) => this.snapshotOf(h));
  }

  /** The instance to run a request on: the named one, or the least busy online instance of the model. */
  resolve(model: string, instanceId?: string): ResolvedInstance {
    if (instanceId) {
      const hosted = this.instances.get(instanceId);
      if (hosted && hosted.record.model !== model) {
        throw new SmmfError("model_not_found", `instance '${instanceId}' of model '${model}' is not on this worker`, { param: "model" });
      }
      // Gone (unloaded after a drain) or not loaded yet: unavailable, so that a gateway tries another instance.
      if (!hosted?.engine) throw new SmmfError("unavailable", `instance '${instanceId}' is not serving on this worker`);
      return hosted as ResolvedInstance;
    }
    let best: ResolvedInstance | undefined;
    for (const hosted of this.instances.values()) {
      if (hosted.record.model !== model || hosted.record.state !== InstanceState.ONLINE || !hosted.engine) continue;
      if (!best || hosted.engine.inFlight() < best.engine.inFlight()) best = hosted as typeof best;
    }
    if (!best) throw new SmmfError("model_not_found", `The model '${model}' does not exist on this worker`, { param: "model" });
    return best;
  }

  /** Requests running on this worker's instances. */
  inFlight(): number {
    let n = 0;
    for (const hosted of this.instances.values()) n += hosted.engine?.inFlight() ?? 0;
    return n;
  }

  /** Memory offered to instances and what is left of it, in bytes. */
  memory(): { total: number; free: number } {
    let used = 0;
    for (const hosted of this.instances.values()) used += hosted.memoryBytes;
    if (this.options.maxMemoryBytes) {
      return { total: this.options.maxMemoryBytes, free: Math.max(0, this.options.maxMemoryBytes - used) };
    }
    const total = totalmem();
    return { total, free: Math.max(0, Math.min(total - used, freemem())) };
  }

  /** The worker's record: address, labels, memory, load. */
  info(): WorkerInfo {
    const { total, free } = this.memory();
    return create(WorkerInfoSchema, {
      workerId: this.id,
      address: this.address,
      labels: this.labels,
      memoryTotalBytes: BigInt(total),
      memoryFreeBytes: BigInt(free),
      instanceCount: this.instances.size,
      inFlight: this.inFlight(),
      engines: availableEngines(),
      startedAt: this.startedAt,
      version: WORKER_RECORD_VERSION,
    });
  }

  /** Marks every instance draining in the registry: gateways stop sending new requests to it. */
  async drain(): Promise<void> {
    for (const hosted of this.instances.values()) {
      hosted.record = create(InstanceSchema, { ...hosted.record, state: InstanceState.DRAINING });
      await this.registry?.register(hosted.record);
    }
    this.changed();
    this.logger.info("draining", { instances: this.instances.size, inFlight: this.inFlight() });
  }

  async close(): Promise<void> {
    for (const id of [...this.instances.keys()]) await this.unload(id);
  }

  private hosted(instanceId: string): HostedInstance {
    const hosted = this.instances.get(instanceId);
    if (!hosted) throw new SmmfError("not_found", `no instance '${instanceId}' on worker ${this.id}`, { param: "instance_id" });
    return hosted;
  }

  private async publishInstance(hosted: HostedInstance): Promise<void> {
    this.changed();
    await this.registry?.register(hosted.record);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
    this.publishWorker();
  }

  /** Puts the worker's record in the registry; changes made meanwhile are put once more after. */
  private publishWorker(): void {
    if (!this.registry || !this.address) return;
    if (this.publishing) {
      this.publishAgain = true;
      return;
    }
    this.publishing = true;
    void (async () => {
      do {
        this.publishAgain = false;
        try {
          await this.registry!.registerWorker(this.info());
        } catch (err) {
          // The registry keeps trying in the background and puts the last record once etcd is back.
          this.logger.debug("could not publish the worker record yet", { error: (err as Error).message });
        }
      } while (this.publishAgain);
      this.publishing = false;
    })();
  }

  private snapshotOf(hosted: HostedInstance): Instance {
    return create(InstanceSchema, { ...hosted.record, inFlight: hosted.engine?.inFlight() ?? 0 });
  }
}
