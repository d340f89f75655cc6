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
import { evictDownloads, removeStaleParts } from "./downloadCache.js";
import { acquireModelFile, isRemoteSource } from "./fetchModelFile.js";
import { resolveSource } from "./resolveSource.js";
import { validateModelName } from "./validateModelName.js";
import { isFileEngine } from "../engines/proxyPresets.js";

export const INSTANCE_RECORD_VERSION = 1;
export const WORKER_RECORD_VERSION = 1;
/** Most instances a worker hosts by default. */
export const DEFAULT_MAX_INSTANCES = 256;

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
  /**
   * Bound of the download folder, in bytes; default none. Files no instance uses are evicted, least recently
   * used first, while it holds more; a download larger than the bound is refused.
   */
  downloadCacheBytes?: number;
  /** Most instances hosted at once, loading ones and upstream (proxy) ones included; default 256. */
  maxInstances?: number;
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
  /** Instances whose source is being resolved (downloaded): not hosted yet, but counted against maxInstances. */
  private readonly resolving = new Set<string>();
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
    // Downloads a previous run left half done are of no use; a cache over a (lowered) bound shrinks now.
    const removed = removeStaleParts(this.downloadDir());
    if (removed.length > 0) this.logger.info("removed partial downloads", { files: removed.length });
    if (options.downloadCacheBytes !== undefined) evictDownloads(this.downloadDir(), options.downloadCacheBytes, this.logger);
  }

  private downloadDir(): string {
    return this.options.downloadDir ?? join(this.options.modelDir ?? ".", ".download-cache");
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
   * allowed folder, an http(s) URL from an allowed host downloaded (once) into the download folder. A
   * downloaded file stays in use (never evicted) until `release`.
   */
  private async resolved(spec: InstanceSpec): Promise<{ spec: InstanceSpec; release: () => void }> {
    const none = () => undefined;
    if (!isFileEngine(spec.engine)) return { spec, release: none };
    const modelDir = this.options.modelDir ?? ".";
    const policy = this.options.sourcePolicy;
    if (isRemoteSource(spec.source)) {
      const file = await acquireModelFile(spec.source, this.downloadDir(), this.id, {
        allowedHosts: policy?.allowedHosts ?? [],
        allowPrivate: policy?.allowPrivate ?? false,
        maxBytes: policy?.maxDownloadBytes,
        timeoutMs: policy?.downloadTimeoutMs,
        cacheMaxBytes: this.options.downloadCacheBytes,
        logger: this.logger,
      });
      return { spec: { ...spec, source: file.path }, release: file.release };
    }
    return { spec: { ...spec, source: resolveSource(spec.source, modelDir, this.id, policy?.allowedDirs ?? []) }, release: none };
  }

  /** Estimated memory an instance of `spec` would need here, in bytes. */
  async estimate(spec: InstanceSpec): Promise<number> {
    validateModelName(spec.model);
    const { spec: resolved, release } = await this.resolved(spec);
    try {
      return await estimateMemory(resolved, this.engineDefaults);
    } finally {
      release();
    }
  }

  /** Most instances this worker hosts at once. */
  maxInstances(): number {
    return this.options.maxInstances ?? DEFAULT_MAX_INSTANCES;
  }

  async load(spec: InstanceSpec): Promise<Instance> {
    validateModelName(spec.model);
    const instanceId = spec.instanceId || `${spec.model}-${randomUUID().slice(0, 8)}`;
    if (this.instances.has(instanceId) || this.resolving.has(instanceId)) {
      throw new SmmfError("failed_precondition", `instance '${instanceId}' is already ${this.instances.has(instanceId) ? "loaded" : "loading"}`, { param: "instance_id" });
    }
    // Every instance counts, upstream ones too (they hold no model memory, but sockets, buffers and records).
    const hostedCount = this.instances.size + this.resolving.size;
    if (hostedCount >= this.maxInstances()) {
      throw new SmmfError(
        "resource_exhausted",
        `worker ${this.id} hosts ${hostedCount} instances, its most (maxInstancesPerWorker ${this.maxInstances()}); unload one or place '${spec.model}' on another worker`,
      );
    }
    // Its slot is held from here until it is hosted (or fails): loads running side by side cannot overshoot.
    // Resolving may download for minutes; other loads go on meanwhile (nothing here waits for another load).
    this.resolving.add(instanceId);
    let resolved: InstanceSpec;
    let release: () => void = () => undefined;
    let memoryBytes: number;
    try {
      ({ spec: resolved, release } = await this.resolved(spec));
      // Instances the controller places must fit; a statically configured one is loaded as asked, and counted.
      memoryBytes = spec.managed
        ? await estimateMemory(resolved, this.engineDefaults)
        : await estimateMemory(resolved, this.engineDefaults).catch(() => 0);
      const { free, total } = this.memory();
      if (spec.managed && memoryBytes > free) {
        throw new SmmfError("resource_exhausted", `an instance of '${spec.model}' needs about ${mib(memoryBytes)}; worker ${this.id} has ${mib(free)} free of ${mib(total)}`);
      }
    } catch (err) {
      release();
      throw err;
    } finally {
      this.resolving.delete(instanceId);
    }
    const started = performance.now();
    const hosted: HostedInstance = {
      release,
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
      this.releaseFile(hosted);
      throw err;
    }
    if (this.instances.get(instanceId) !== hosted) {
      // Unloaded while it was loading.
      await engine.close();
      this.releaseFile(hosted);
      throw new SmmfError("unavailable", `instance '${instanceId}' was unloaded while it loaded`);
    }
    hosted.engine = engine;
    engine.onFailure?.((err) => {
      if (this.instances.get(instanceId) !== hosted) return;
      this.logger.error("instance failed; unloading it", { instance: instanceId, model: spec.model, error: err.message });
      void this.unload(instanceId).catch((e: unknown) => this.logger.warn("could not unload a failed instance", { instance: instanceId, error: String(e) }));
    });
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
    // One still loading lets go of its file when its load ends (the engine may be reading it now).
    if (hosted.engine) this.releaseFile(hosted);
    this.changed();
    this.logger.info("instance unloaded", { instance: instanceId });
  }

  /** The instance no longer uses its downloaded file: the cache may evict it (and does, when over its bound). */
  private releaseFile(hosted: HostedInstance): void {
    if (!hosted.release) return;
    hosted.release();
    if (this.options.downloadCacheBytes !== undefined) evictDownloads(this.downloadDir(), this.options.downloadCacheBytes, this.logger);
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
