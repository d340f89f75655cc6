import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { InstanceSchema, InstanceState, type Instance } from "../gen/smmf/v1/instance_pb.js";
import { ModelStatusSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { SmmfError, toSmmfError } from "../errors/SmmfError.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import type { Metrics } from "../telemetry/Metrics.js";
import { instanceSpecOfModel } from "./instanceSpecOfModel.js";
import type { ModelStore } from "./ModelStore.js";
import { matchesLabels, placeInstance, type PlacementCandidate } from "./placeInstance.js";
import { planModel } from "./planModel.js";
import type { StatusStore } from "./StatusStore.js";
import type { WorkerServiceClients } from "./WorkerServiceClients.js";
import type { WorkerSessions } from "./WorkerSessions.js";

export interface ReconcilerOptions {
  store: ModelStore;
  statuses: StatusStore;
  registry: Registry;
  sessions: WorkerSessions;
  clients: WorkerServiceClients;
  logger: Logger;
  /** How often to look again when nothing changed (ms). */
  intervalMs?: number;
  metrics?: Metrics;
}

interface PendingAction {
  kind: "load" | "drain";
  model: string;
  workerId: string;
  since: number;
  /** A load: the instance as it will be while loading, and its memory. */
  instance?: Instance;
  memoryBytes?: number;
}

/** A load that never showed up (its worker died with the command) stops counting after this long. */
const PENDING_MAX_MS = 10 * 60_000;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** A worker on which a model failed to load is not chosen for it again for this long. */
const FAILED_WORKER_MS = 30_000;

/**
 * The leader's control loop. Level-based: every pass compares the desired state (the model records) with
 * what is observed (each worker's status over its session; the registry for workers without one; loads and
 * drains sent but not yet seen) and acts on the difference through the worker sessions. A pass runs after
 * any change and every `intervalMs`. Failed loads back off per model and avoid the worker that failed.
 */
export class Reconciler {
  private readonly options: ReconcilerOptions;
  private readonly pending = new Map<string, PendingAction>();
  private readonly backoff = new Map<string, { until: number; delayMs: number }>();
  private readonly failedOn = new Map<string, number>();
  private readonly estimates = new Map<string, number>();
  private readonly messages = new Map<string, string>();
  private running = false;
  private again = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private readonly unsubscribes: (() => void)[] = [];

  constructor(options: ReconcilerOptions) {
    this.options = options;
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
  }

  /** Runs a pass soon; passes never overlap (a trigger during one runs another after it). */
  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    setImmediate(() => {
      void (async () => {
        try {
          do {
            this.again = false;
            await this.pass();
          } while (this.again && !this.stopped);
        } catch (err) {
          this.options.logger.error("reconcile pass failed", { error: String((err as Error)?.stack ?? err) });
        } finally {
          this.running = false;
        }
      })();
    });
  }

  private async pass(): Promise<void> {
    const { store, registry, sessions } = this.options;
    this.options.metrics?.reconcilePasses.inc();
    sessions.sync(registry.workers());
    const observed = this.observe();
    const byModel = new Map<string, Instance[]>();
    for (const instance of observed.values()) {
      if (!instance.managed) continue;
      let list = byModel.get(instance.model);
      if (!list) byModel.set(instance.model, (list = []));
      list.push(instance);
    }
    const names = new Set([...store.list().map((r) => r.spec!.name), ...byModel.keys()]);
    for (const name of names) {
      if (this.stopped) return;
      await this.reconcileModel(name, store.get(name), byModel.get(name) ?? []);
    }
    for (const status of this.options.statuses.list()) {
      if (!names.has(status.name)) await this.options.statuses.remove(status.name).catch(() => undefined);
    }
  }

  /** Every instance as best known: session statuses first, the registry for workers without a session, pending actions on top. */
  private observe(): Map<string, Instance> {
    const statuses = this.options.sessions.statuses();
    const withSession = new Set(statuses.map((s) => s.worker?.workerId));
    const observed = new Map<string, Instance>();
    for (const instance of this.options.registry.snapshot()) if (!withSession.has(instance.workerId)) observed.set(instance.instanceId, instance);
    for (const status of statuses) for (const instance of status.instances) observed.set(instance.instanceId, instance);
    const now = Date.now();
    for (const [id, action] of this.pending) {
      const seen = observed.get(id);
      if (action.kind === "load") {
        if (seen) continue;
        if (now - action.since > PENDING_MAX_MS) this.pending.delete(id);
        else observed.set(id, action.instance!);
      } else if (!seen) {
        this.pending.delete(id);
      } else {
        observed.set(id, create(InstanceSchema, { ...seen, state: InstanceState.DRAINING }));
      }
    }
    return observed;
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

  private async reconcileModel(name: string, record: ModelRecord | undefined, instances: Instance[]): Promise<void> {
    const plan = planModel(record, instances);
    for (const victim of plan.drain) this.drain(victim);
    if (plan.converged) {
      this.backoff.delete(name);
      await this.setStatus(name, "", true);
      return;
    }
    if (!record) return;
    if (plan.load === 0) return this.setStatus(name, this.messages.get(name) ?? "", false);
    const wait = this.backoff.get(name);
    if (wait && wait.until > Date.now()) return;
    let needBytes: number;
    try {
      needBytes = await this.estimate(record, instances);
    } catch (err) {
      return this.fail(name, `cannot estimate the memory an instance needs: ${toSmmfError(err).message}`);
    }
    const candidates = this.candidates(name, instances, record.generation);
    for (let i = 0; i < plan.load; i++) {
      const placed = placeInstance(candidates, needBytes, record.spec!.placement);
      if ("reason" in placed) return this.fail(name, `cannot place ${plan.load - i} instance(s): ${placed.reason}`);
      const chosen = candidates.find((c) => c.workerId === placed.workerId)!;
      chosen.freeBytes -= needBytes;
      chosen.modelInstances++;
      this.load(record, placed.workerId, needBytes);
    }
  }

  /** The memory one instance of the record needs, asked of a worker that could host it, cached per generation. */
  private async estimate(record: ModelRecord, instances: Instance[]): Promise<number> {
    const key = `${record.spec!.name}@${record.generation}`;
    const known = this.estimates.get(key);
    if (known !== undefined) return known;
    const engine = record.spec!.engine || "llama.cpp";
    const status = this.options.sessions.statuses().find((s) => matchesLabels(s.worker!.labels, record.spec!.placement) && s.worker!.engines.includes(engine));
    if (!status) {
      const placed = placeInstance(this.candidates(record.spec!.name, instances), 0, record.spec!.placement);
      throw new SmmfError("unavailable", "reason" in placed ? placed.reason : "no worker to ask");
    }
    const res = await this.options.clients.get(status.worker!.address).estimateInstance({ spec: instanceSpecOfModel(record) });
    const bytes = Number(res.memoryBytes);
    this.estimates.set(key, bytes);
    return bytes;
  }

  private load(record: ModelRecord, workerId: string, memoryBytes: number): void {
    const name = record.spec!.name;
    const instanceId = `${name}-${randomUUID().slice(0, 8)}`;
    const instance = create(InstanceSchema, { instanceId, model: name, workerId, state: InstanceState.LOADING, managed: true, generation: record.generation, startedAt: timestampNow() });
    this.pending.set(instanceId, { kind: "load", model: name, workerId, since: Date.now(), instance, memoryBytes });
    this.options.metrics?.controllerActions.inc({ action: "load" });
    this.options.logger.info("loading an instance", { model: name, instance: instanceId, worker: workerId, generation: String(record.generation) });
    this.options.sessions.send(workerId, { case: "load", value: { spec: instanceSpecOfModel(record, instanceId) } }).then(
      (result) => {
        this.pending.delete(instanceId);
        if (!result.ok) this.loadFailed(name, workerId, result.errorMessage);
        this.trigger();
      },
      (err: unknown) => {
        this.pending.delete(instanceId);
        this.loadFailed(name, workerId, toSmmfError(err).message);
        this.trigger();
      },
    );
  }

  private loadFailed(model: string, workerId: string, why: string): void {
    this.options.metrics?.controllerActions.inc({ action: "load_failed" });
    this.failedOn.set(`${model}|${workerId}`, Date.now() + FAILED_WORKER_MS);
    void this.fail(model, `loading an instance on worker ${workerId} failed: ${why}`);
  }

  private drain(instance: Instance): void {
    const id = instance.instanceId;
    if (this.pending.has(id)) return;
    this.pending.set(id, { kind: "drain", model: instance.model, workerId: instance.workerId, since: Date.now() });
    this.options.metrics?.controllerActions.inc({ action: "drain" });
    this.options.logger.info("draining an instance", { model: instance.model, instance: id, worker: instance.workerId });
    this.options.sessions.send(instance.workerId, { case: "unload", value: { instanceId: id, drain: true } }).then(
      (result) => {
        if (!result.ok && result.errorCode !== "not_found") this.options.logger.warn("drain failed", { instance: id, error: result.errorMessage });
        this.pending.delete(id);
        this.trigger();
      },
      () => {
        // No session with its worker: try again on a later pass (or the instance goes with the worker's lease).
        setTimeout(() => this.pending.delete(id), 1_000);
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
    await this.options.statuses
      .put(create(ModelStatusSchema, { version: 1, name, message, converged, updatedAt: timestampNow() }))
      .catch((err: unknown) => this.options.logger.warn("could not write a model status", { model: name, error: String(err) }));
  }
}
