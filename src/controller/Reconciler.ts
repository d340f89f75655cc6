import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { InstanceSchema, InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { ModelStatusSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Registry } from "../registry/Registry.js";
import { withTimeout } from "../registry/withTimeout.js";
import type { Logger } from "../telemetry/createLogger.js";
import type { Metrics } from "../telemetry/Metrics.js";
import { instanceSpecOfModel } from "./instanceSpecOfModel.js";
import type { ModelStore } from "./ModelStore.js";
import { matchesLabels, placeInstance, type PlacementCandidate } from "./placeInstance.js";
import { planModel } from "./planModel.js";
import type { StatusStore } from "./StatusStore.js";
import type { WorkerServiceClient } from "./WorkerServiceClients.js";
import type { WorkerSessions } from "./WorkerSessions.js";

/** What the loop needs of the worker sessions (WorkerSessions; a fake in unit tests). */
export type ReconcilerSessions = Pick<WorkerSessions, "sync" | "statuses" | "send" | "statusSeq">;

/** Deadlines of the loop's remote calls and writes, in ms. */
export interface ReconcilerDeadlines {
  /** EstimateInstance for a model whose source is a file (or an upstream). */
  estimate: number;
  /** EstimateInstance for an http(s) source: the worker downloads the file first (further calls share that download). */
  estimateDownload: number;
  /** A load's result: the worker answers when the instance is loaded (a file source). */
  load: number;
  /** A load's result for an http(s) source: download and load. */
  loadDownload: number;
  /** An unload with drain: the worker answers when the instance's requests are done (its drain grace) and it is unloaded. */
  drain: number;
  /** Cancelling a load that passed its deadline (an unload without drain). */
  cancel: number;
  /** Writing a model's status. */
  statusWrite: number;
}

export const DEFAULT_DEADLINES: ReconcilerDeadlines = {
  estimate: 30_000,
  estimateDownload: 600_000,
  load: 10 * 60_000,
  loadDownload: 40 * 60_000,
  drain: 5 * 60_000,
  cancel: 10_000,
  statusWrite: 5_000,
};

export interface ReconcilerOptions {
  store: ModelStore;
  statuses: StatusStore;
  registry: Registry;
  sessions: ReconcilerSessions;
  clients: { get(address: string): Pick<WorkerServiceClient, "estimateInstance"> };
  logger: Logger;
  /** How often to look again when nothing changed (ms). */
  intervalMs?: number;
  metrics?: Metrics;
  deadlines?: Partial<ReconcilerDeadlines>;
}

interface PendingAction {
  kind: "load" | "drain";
  model: string;
  workerId: string;
  /** A load: the instance as it will be while loading, and its memory. */
  instance?: Instance;
  memoryBytes?: number;
  /**
   * Set when the worker has answered ok: the number of its statuses received by then. A status numbered
   * higher was sent after the answer, so it shows the outcome (the instance loaded, or gone) and the action
   * stops counting.
   */
  ackedSeq?: number;
}

/** The work on one model: at most one reconcile in flight; a change meanwhile runs another after it. */
interface ModelWork {
  running: boolean;
  dirty: boolean;
  /** Aborts the remote calls of the reconcile in flight (its desired state changed, or the loop stops). */
  abort?: AbortController;
  /** The record the reconcile in flight works on. */
  record?: ModelRecord;
}

const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** A worker on which a model failed to load (or to be estimated) is not chosen for it again for this long. */
const FAILED_WORKER_MS = 30_000;

function isDownload(record: ModelRecord): boolean {
  return (record.spec!.engine || "llama.cpp") === "llama.cpp" && /^https?:\/\//i.test(record.spec!.source);
}

/** Whether two reads of a model's record are the same desired state. */
function sameRecord(a: ModelRecord | undefined, b: ModelRecord | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return a.generation === b.generation && a.spec?.replicas === b.spec?.replicas && a.updatedAt?.seconds === b.updatedAt?.seconds && a.updatedAt?.nanos === b.updatedAt?.nanos;
}

/**
 * The leader's control loop, per model (as controller-runtime's work queues): every change seen (desired
 * state, a worker's status, the registry) and every `intervalMs` queues each model, and each model is
 * reconciled on its own: at most one reconcile of a model in flight, a model queued while its reconcile runs
 * runs again after it, and a reconcile waiting on a remote call does not hold up any other model. A reconcile
 * compares, level-based, the model's record with its instances as observed (each worker's status over its
 * session; the registry for workers without one; loads and drains sent whose outcome no status has shown yet)
 * and acts on the difference through the worker sessions. Every remote call has a deadline, and a change of
 * the model's desired state aborts the calls of its reconcile in flight. Failed loads back off per model and
 * avoid the worker that failed.
 */
export class Reconciler {
  private readonly options: ReconcilerOptions;
  private readonly deadlines: ReconcilerDeadlines;
  private readonly pending = new Map<string, PendingAction>();
  private readonly work = new Map<string, ModelWork>();
  private readonly backoff = new Map<string, { until: number; delayMs: number }>();
  private readonly failedOn = new Map<string, number>();
  /** Why a load failed on a worker (model|worker), while that worker is avoided for the model. */
  private readonly failedWhy = new Map<string, string>();
  private readonly estimates = new Map<string, number>();
  private readonly messages = new Map<string, string>();
  private readonly removingStatus = new Set<string>();
  /** The observed instances by model, until the next change. */
  private observed?: Map<string, Instance[]>;
  private tickQueued = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private readonly unsubscribes: (() => void)[] = [];

  constructor(options: ReconcilerOptions) {
    this.options = options;
    this.deadlines = { ...DEFAULT_DEADLINES, ...options.deadlines };
  }

  start(): void {
    const { store, registry } = this.options;
    const trigger = () => this.trigger();
    this.unsubscribes.push(store.subscribe(trigger), registry.subscribe(trigger), registry.subscribeWorkers(trigger));
    this.timer = setInterval(trigger, this.options.intervalMs ?? 1_000);
    this.trigger();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    for (const u of this.unsubscribes) u();
    for (const work of this.work.values()) work.abort?.abort(new SmmfError("cancelled", "the control loop stopped"));
  }

  /** Something changed: soon every model is queued (many triggers in one turn of the event loop queue them once). */
  trigger(): void {
    if (this.stopped) return;
    this.observed = undefined;
    if (this.tickQueued) return;
    this.tickQueued = true;
    setImmediate(() => {
      this.tickQueued = false;
      try {
        this.tick();
      } catch (err) {
        this.options.logger.error("reconcile pass failed", { error: String((err as Error)?.stack ?? err) });
      }
    });
  }

  /** Whether a reconcile of the model is in flight (for tests and diagnostics). */
  inFlight(name: string): boolean {
    return this.work.get(name)?.running ?? false;
  }

  /** One pass: sessions follow the registry's workers, every model is queued, statuses of models that are gone go. */
  private tick(): void {
    if (this.stopped) return;
    const { store, registry, sessions, statuses } = this.options;
    this.options.metrics?.reconcilePasses.inc();
    sessions.sync(registry.workers());
    this.observed = undefined;
    const names = new Set([...store.list().map((r) => r.spec!.name), ...this.instancesByModel().keys()]);
    for (const [name, work] of this.work) {
      // Its desired state changed under the reconcile in flight: that one stops waiting; the next one acts.
      if (work.running && !sameRecord(work.record, store.get(name))) work.abort?.abort(new SmmfError("cancelled", `the desired state of '${name}' changed`));
    }
    for (const name of names) this.enqueue(name);
    for (const status of statuses.list()) {
      const name = status.name;
      if (names.has(name) || this.removingStatus.has(name)) continue;
      this.removingStatus.add(name);
      void withTimeout(statuses.remove(name), this.deadlines.statusWrite)
        .catch(() => undefined)
        .finally(() => this.removingStatus.delete(name));
    }
  }

  /** Queues a model: it is reconciled now unless a reconcile of it is in flight, then once more after that one. */
  private enqueue(name: string): void {
    if (this.stopped) return;
    let work = this.work.get(name);
    if (!work) this.work.set(name, (work = { running: false, dirty: false }));
    work.dirty = true;
    if (work.running) return;
    work.running = true;
    void this.run(name, work);
  }

  private async run(name: string, work: ModelWork): Promise<void> {
    try {
      while (work.dirty && !this.stopped) {
        work.dirty = false;
        const record = this.options.store.get(name);
        work.record = record;
        work.abort = new AbortController();
        try {
          await this.reconcileModel(name, record, work.abort.signal);
        } catch (err) {
          this.options.logger.error("reconciling a model failed", { model: name, error: String((err as Error)?.stack ?? err) });
        }
      }
    } finally {
      work.running = false;
      work.abort = undefined;
      work.record = undefined;
      if (!this.options.store.get(name) && !this.instancesByModel().has(name)) this.forgetModel(name);
    }
  }

  /** A model that is gone (no record, no instances): nothing kept about it. */
  private forgetModel(name: string): void {
    if (this.work.get(name)?.running) return;
    this.work.delete(name);
    this.backoff.delete(name);
    this.messages.delete(name);
    for (const key of this.estimates.keys()) if (key.startsWith(`${name}@`)) this.estimates.delete(key);
    for (const key of this.failedOn.keys()) if (key.startsWith(`${name}|`)) this.failedOn.delete(key);
    for (const key of this.failedWhy.keys()) if (key.startsWith(`${name}|`)) this.failedWhy.delete(key);
  }

  /** Every managed instance as best known, by model: session statuses first, the registry for workers without a session, pending actions on top. */
  private instancesByModel(): Map<string, Instance[]> {
    if (this.observed) return this.observed;
    const { sessions, registry } = this.options;
    const statuses = sessions.statuses();
    const withSession = new Set(statuses.map((s) => s.worker?.workerId));
    const all = new Map<string, Instance>();
    for (const instance of registry.snapshot()) if (!withSession.has(instance.workerId)) all.set(instance.instanceId, instance);
    for (const status of statuses) for (const instance of status.instances) all.set(instance.instanceId, instance);
    for (const [id, action] of this.pending) {
      const seen = all.get(id);
      // The worker has answered, and a status sent after its answer has come (or its session is gone): that says how it is.
      const seq = action.ackedSeq === undefined ? undefined : sessions.statusSeq(action.workerId);
      const settled = action.ackedSeq !== undefined && (seq === undefined || seq > action.ackedSeq);
      if (action.kind === "load") {
        // Once the worker reports the instance, its reports count (loading, online, or gone after a failed load).
        if (seen || settled) this.pending.delete(id);
        else all.set(id, action.instance!);
      } else if (!seen || settled) {
        this.pending.delete(id);
      } else {
        all.set(id, create(InstanceSchema, { ...seen, state: InstanceState.DRAINING }));
      }
    }
    const byModel = new Map<string, Instance[]>();
    for (const instance of all.values()) {
      if (!instance.managed) continue;
      let list = byModel.get(instance.model);
      if (!list) byModel.set(instance.model, (list = []));
      list.push(instance);
    }
    this.observed = byModel;
    return byModel;
  }

  private instancesOf(name: string): Instance[] {
    return this.instancesByModel().get(name) ?? [];
  }

  /** Pending actions changed: the observed instances are computed again. */
  private pendingChanged(): void {
    this.observed = undefined;
  }

  /**
   * Workers with a session that may take an instance of `model`, with their free memory (less loads sent but
   * not yet reported) and how many live instances of the model of `generation` they hold (older ones are on
   * their way out, so a rolling update spreads the new ones).
   */
  private candidates(model: string, observed: readonly Instance[], generation = 0n): PlacementCandidate[] {
    const now = Date.now();
    const engine = this.options.store.get(model)?.spec?.engine || "llama.cpp";
    return this.options.sessions.statuses().flatMap((status) => {
      const worker = status.worker!;
      if ((this.failedOn.get(`${model}|${worker.workerId}`) ?? 0) > now || !worker.engines.includes(engine)) return [];
      const reported = new Set(status.instances.map((i) => i.instanceId));
      let free = Number(worker.memoryFreeBytes);
      for (const [id, action] of this.pending) {
        if (action.kind === "load" && action.workerId === worker.workerId && !reported.has(id)) free -= action.memoryBytes ?? 0;
      }
      const modelInstances = observed.filter((i) => i.workerId === worker.workerId && i.state !== InstanceState.DRAINING && i.generation >= generation).length;
      return [{ workerId: worker.workerId, labels: worker.labels, freeBytes: free, modelInstances }];
    });
  }

  private async reconcileModel(name: string, record: ModelRecord | undefined, signal: AbortSignal): Promise<void> {
    let instances = this.instancesOf(name);
    let plan = planModel(record, instances);
    for (const victim of plan.drain) this.drain(victim);
    if (plan.converged) {
      this.backoff.delete(name);
      return this.setStatus(name, "", true);
    }
    if (!record) return;
    if (plan.load === 0) return this.setStatus(name, this.messages.get(name) ?? "", false);
    const wait = this.backoff.get(name);
    if (wait && wait.until > Date.now()) return;
    let needBytes = this.estimates.get(`${name}@${record.generation}`);
    if (needBytes === undefined) {
      try {
        needBytes = await this.estimate(record, instances, signal);
      } catch (err) {
        if (signal.aborted || this.stopped) return;
        return this.fail(name, `cannot estimate the memory an instance needs: ${toSmmfError(err).message}`);
      }
      // The estimate took a while: act on the state as it is now (a changed record is queued again).
      if (signal.aborted || this.stopped || !sameRecord(record, this.options.store.get(name))) return;
      instances = this.instancesOf(name);
      plan = planModel(record, instances);
      for (const victim of plan.drain) this.drain(victim);
      if (plan.load === 0) return;
    }
    // From here to the last load nothing waits: no other reconcile sees the candidates half updated.
    const candidates = this.candidates(name, instances, record.generation);
    for (let i = 0; i < plan.load; i++) {
      const placed = placeInstance(candidates, needBytes, record.spec!.placement);
      if ("reason" in placed) {
        const avoided = this.avoidedReason(name);
        const reason = !avoided ? placed.reason : candidates.length === 0 ? `no other worker can take it; ${avoided}` : `${placed.reason}; ${avoided}`;
        return this.fail(name, `cannot place ${plan.load - i} instance(s): ${reason}`);
      }
      const chosen = candidates.find((c) => c.workerId === placed.workerId)!;
      chosen.freeBytes -= needBytes;
      chosen.modelInstances++;
      this.load(record, placed.workerId, needBytes);
    }
  }

  /** The memory one instance of the record needs, asked of a worker that could host it (within a deadline), cached per generation. */
  private async estimate(record: ModelRecord, instances: Instance[], signal: AbortSignal): Promise<number> {
    const name = record.spec!.name;
    const key = `${name}@${record.generation}`;
    const engine = record.spec!.engine || "llama.cpp";
    const now = Date.now();
    const able = this.options.sessions.statuses().filter((s) => matchesLabels(s.worker!.labels, record.spec!.placement) && s.worker!.engines.includes(engine));
    // A worker that just failed to answer is asked last.
    const status = able.find((s) => (this.failedOn.get(`${name}|estimate|${s.worker!.workerId}`) ?? 0) <= now) ?? able[0];
    if (!status) {
      const placed = placeInstance(this.candidates(name, instances), 0, record.spec!.placement);
      throw new SmmfError("unavailable", "reason" in placed ? placed.reason : "no worker to ask");
    }
    const workerId = status.worker!.workerId;
    const timeoutMs = isDownload(record) ? this.deadlines.estimateDownload : this.deadlines.estimate;
    try {
      const res = await this.options.clients.get(status.worker!.address).estimateInstance({ spec: instanceSpecOfModel(record) }, { signal, timeoutMs });
      const bytes = Number(res.memoryBytes);
      this.estimates.set(key, bytes);
      return bytes;
    } catch (err) {
      if (!signal.aborted) this.failedOn.set(`${name}|estimate|${workerId}`, Date.now() + FAILED_WORKER_MS);
      const error = toSmmfError(err);
      throw new SmmfError(error.code, `worker ${workerId}: ${error.message}`);
    }
  }

  private forget(id: string, action: PendingAction): void {
    if (this.pending.get(id) === action) {
      this.pending.delete(id);
      this.pendingChanged();
    }
  }

  private load(record: ModelRecord, workerId: string, memoryBytes: number): void {
    const name = record.spec!.name;
    const instanceId = `${name}-${randomUUID().slice(0, 8)}`;
    const instance = create(InstanceSchema, { instanceId, model: name, workerId, state: InstanceState.LOADING, managed: true, generation: record.generation, startedAt: timestampNow() });
    const action: PendingAction = { kind: "load", model: name, workerId, instance, memoryBytes };
    this.pending.set(instanceId, action);
    this.pendingChanged();
    this.options.metrics?.controllerActions.inc({ action: "load" });
    this.options.logger.info("loading an instance", { model: name, instance: instanceId, worker: workerId, generation: String(record.generation) });
    const timeoutMs = isDownload(record) ? this.deadlines.loadDownload : this.deadlines.load;
    this.options.sessions.send(workerId, { case: "load", value: { spec: instanceSpecOfModel(record, instanceId) } }, { timeoutMs }).then(
      (result) => {
        if (this.stopped) return;
        if (result.ok) {
          // Loaded: it counts until a status sent after this answer shows it (or shows it gone).
          if (this.pending.get(instanceId) === action) action.ackedSeq = this.options.sessions.statusSeq(workerId) ?? -1;
          this.pendingChanged();
        } else {
          this.forget(instanceId, action);
          this.loadFailed(name, workerId, result.errorMessage);
        }
        this.enqueue(name);
      },
      (err: unknown) => {
        if (this.stopped) return;
        this.forget(instanceId, action);
        const error = toSmmfError(err);
        // Past its deadline: the worker may still be at it; an unload (without drain) ends it if it has begun loading.
        if (error.code === "deadline_exceeded") this.cancelLoad(workerId, instanceId);
        this.loadFailed(name, workerId, error.message);
        this.enqueue(name);
      },
    );
  }

  private cancelLoad(workerId: string, instanceId: string): void {
    this.options.sessions.send(workerId, { case: "unload", value: { instanceId, drain: false } }, { timeoutMs: this.deadlines.cancel }).then(
      (result) => {
        if (!result.ok && result.errorCode !== "not_found") this.options.logger.warn("could not cancel a load", { instance: instanceId, error: result.errorMessage });
      },
      () => undefined,
    );
  }

  /**
   * When workers are left out of a model's placement because a load failed on them in the last 30 s: which, why,
   * and until when (so that the status keeps the real reason, not "no worker is connected"). Undefined when none are.
   */
  private avoidedReason(model: string): string | undefined {
    const now = Date.now();
    const avoided: string[] = [];
    for (const status of this.options.sessions.statuses()) {
      const workerId = status.worker!.workerId;
      const until = this.failedOn.get(`${model}|${workerId}`) ?? 0;
      if (until > now) avoided.push(`${workerId} (until ${new Date(until).toISOString().slice(11, 19)} UTC: ${this.failedWhy.get(`${model}|${workerId}`) ?? "its load failed"})`);
    }
    return avoided.length === 0 ? undefined : `loading it failed on ${avoided.join("; ")}`;
  }

  private loadFailed(model: string, workerId: string, why: string): void {
    this.options.metrics?.controllerActions.inc({ action: "load_failed" });
    this.failedOn.set(`${model}|${workerId}`, Date.now() + FAILED_WORKER_MS);
    this.failedWhy.set(`${model}|${workerId}`, why);
    void this.fail(model, `loading an instance on worker ${workerId} failed: ${why}`);
  }

  private drain(instance: Instance): void {
    const id = instance.instanceId;
    if (this.pending.has(id)) return;
    const action: PendingAction = { kind: "drain", model: instance.model, workerId: instance.workerId };
    this.pending.set(id, action);
    this.pendingChanged();
    this.options.metrics?.controllerActions.inc({ action: "drain" });
    this.options.logger.info("draining an instance", { model: instance.model, instance: id, worker: instance.workerId });
    this.options.sessions.send(instance.workerId, { case: "unload", value: { instanceId: id, drain: true } }, { timeoutMs: this.deadlines.drain }).then(
      (result) => {
        if (this.stopped) return;
        if (result.ok) {
          if (this.pending.get(id) === action) action.ackedSeq = this.options.sessions.statusSeq(instance.workerId) ?? -1;
          this.pendingChanged();
        } else {
          if (result.errorCode !== "not_found") this.options.logger.warn("drain failed", { instance: id, error: result.errorMessage });
          this.forget(id, action);
        }
        this.enqueue(instance.model);
      },
      (err: unknown) => {
        if (this.stopped) return;
        // No session with its worker, or no answer in time: try again on a later pass (or the instance goes with the worker's lease).
        this.options.logger.debug("drain not confirmed", { instance: id, error: toSmmfError(err).message });
        setTimeout(() => {
          this.forget(id, action);
          this.enqueue(instance.model);
        }, 1_000);
      },
    );
  }

  private async fail(model: string, message: string): Promise<void> {
    const previous = this.backoff.get(model);
    const delayMs = previous ? Math.min(BACKOFF_MAX_MS, previous.delayMs * 2) : BACKOFF_MIN_MS;
    this.backoff.set(model, { until: Date.now() + delayMs, delayMs });
    this.options.logger[this.messages.get(model) !== message ? "warn" : "debug"]("model not as desired", { model, message, retryMs: delayMs });
    await this.setStatus(model, message, false);
  }

  private async setStatus(name: string, message: string, converged: boolean): Promise<void> {
    const current = this.options.statuses.get(name);
    this.messages.set(name, message);
    if (current && current.message === message && current.converged === converged) return;
    if (!this.options.store.get(name)) return;
    await withTimeout(this.options.statuses.put(create(ModelStatusSchema, { version: 1, name, message, converged, updatedAt: timestampNow() })), this.deadlines.statusWrite).catch((err: unknown) =>
      this.options.logger.warn("could not write a model status", { model: name, error: String(err) }),
    );
  }
}
