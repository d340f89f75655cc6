import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  ControllerService,
  GetModelResponseSchema,
  ListAuditResponseSchema,
  ListModelInstancesResponseSchema,
  ListModelsResponseSchema,
  ListWorkersResponseSchema,
  RestartModelRequestSchema,
  RestartModelResponseSchema,
  ScaleModelRequestSchema,
  ScaleModelResponseSchema,
  SetModelInstanceStateRequestSchema,
  SetModelInstanceStateResponseSchema,
  StartModelRequestSchema,
  StartModelResponseSchema,
  StopModelRequestSchema,
  StopModelResponseSchema,
  UpdateModelRequestSchema,
  UpdateModelResponseSchema,
  type WatchEventsResponse,
} from "../gen/smmf/v1/controller_pb.js";
import { InstanceState } from "../gen/smmf/v1/instance_pb.js";
import { ModelRecordSchema, ModelSpecSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { WorkerStatusSchema } from "../gen/smmf/v1/worker_pb.js";
import { rpc } from "../errors/rpc.js";
import { SmmfError } from "../errors/SmmfError.js";
import type { Registry } from "../registry/Registry.js";
import type { Logger } from "../telemetry/createLogger.js";
import { createAsyncQueue } from "../util/createAsyncQueue.js";
import { auditQueryOf, type AuditLog } from "./AuditLog.js";
import { checkPlacement } from "./checkPlacement.js";
import { createAuditRecorder } from "./createAuditRecorder.js";
import { describeModels } from "./describeModels.js";
import type { EventHub } from "./EventHub.js";
import { modelNotFound } from "./modelNotFound.js";
import type { ModelStore } from "./ModelStore.js";
import type { StatusStore } from "./StatusStore.js";
import { MAX_REPLICAS, validateModelSpec } from "./validateModelSpec.js";
import type { WorkerServiceClients } from "./WorkerServiceClients.js";

export const MODEL_RECORD_VERSION = 1;

export interface ControllerServiceDeps {
  registry: Registry;
  store: ModelStore;
  statuses: StatusStore;
  events: EventHub;
  clients: WorkerServiceClients;
  /** Where every change made through this API is recorded. */
  audit: AuditLog;
  logger: Logger;
  /** Quotas on the desired state; default DEFAULT_LIMITS. */
  limits?: Partial<ControllerLimits>;
}

/** Quotas the API enforces on the desired state (SmmfConfig's maxModels and maxReplicas). */
export interface ControllerLimits {
  /** Most models in the desired state. */
  maxModels: number;
  /** Most replicas of one model. */
  maxReplicas: number;
}

/** As SmmfConfig's defaults. */
export const DEFAULT_LIMITS: ControllerLimits = { maxModels: 1000, maxReplicas: 256 };

/** How long a model started through this node counts toward maxModels before the store shows it (the etcd watch lags the write). */
const STARTED_GRACE_MS = 10_000;

/** A generation newer than `previous`: milliseconds since the epoch, so that a model started again under an old name outranks its old instances. */
function nextGeneration(previous = 0n): bigint {
  const now = BigInt(Date.now());
  return now > previous ? now : previous + 1n;
}

/** Whether two specs differ in more than their replica count. */
function differsBeyondReplicas(a: ModelRecord["spec"], b: ModelRecord["spec"]): boolean {
  const strip = (s: ModelRecord["spec"]) => JSON.stringify({ ...create(ModelSpecSchema, s), replicas: 0 }, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v));
  return strip(a) !== strip(b);
}

/** Events a watcher may have waiting; one that falls further behind is dropped with resource_exhausted. */
export const MAX_PENDING_EVENTS = 1000;
/** Event watchers (WatchEvents and /api/v1/events streams) one node serves at once. */
export const MAX_WATCHERS = 1024;

/**
 * ControllerService: reads come from the watched state (registry, desired models, statuses); changes are
 * written to the desired state (checked first: valid, not a duplicate, placeable), where the leading
 * controller picks them up. Instance states go straight to the worker hosting the instance. Every change,
 * done or refused, is recorded in the audit log with the caller's API key name (the context's API_KEY).
 */
export function createControllerService(deps: ControllerServiceDeps) {
  const { registry, store, statuses, events, clients } = deps;
  const audited = createAuditRecorder(deps.audit, deps.logger);
  const models = () => describeModels(store.list(), registry.snapshot(), statuses.list());
  const liveInstances = (name: string) => registry.snapshot().filter((i) => i.model === name && i.managed && i.state !== InstanceState.DRAINING).length;
  const limits: ControllerLimits = { maxModels: deps.limits?.maxModels ?? DEFAULT_LIMITS.maxModels, maxReplicas: deps.limits?.maxReplicas ?? DEFAULT_LIMITS.maxReplicas };
  const checkReplicas = (replicas: number) => {
    if (replicas > limits.maxReplicas) {
      throw new SmmfError("failed_precondition", `'replicas' ${replicas} is above the quota of ${limits.maxReplicas} replicas per model (maxReplicas, --max-replicas)`, { param: "replicas" });
    }
  };
  // Models being started through this node, and those started whose records the store may not show yet
  // (until when they count): concurrent starts here cannot together pass maxModels.
  const starting = new Map<string, number>();
  const reserveModel = (name: string) => {
    const now = Date.now();
    const names = new Set(store.list().map((r) => r.spec!.name));
    for (const [other, until] of starting) if (names.has(other) || until < now) starting.delete(other);
    const count = names.size + [...starting.keys()].filter((n) => n !== name).length;
    if (count >= limits.maxModels) {
      throw new SmmfError("failed_precondition", `cannot start '${name}': the quota of ${limits.maxModels} models (maxModels, --max-models) is used up (${count} started); stop one first`);
    }
    starting.set(name, Infinity);
  };

  const service = {
    listModels: () => rpc(async () => create(ListModelsResponseSchema, { models: models() })),
    getModel: (req) =>
      rpc(async () => {
        const model = models().find((m) => m.name === req.name);
        if (!model) throw new SmmfError("model_not_found", `The model '${req.name}' does not exist`, { param: "name" });
        return create(GetModelResponseSchema, { model });
      }),
    listModelInstances: (req) => rpc(async () => create(ListModelInstancesResponseSchema, { instances: registry.snapshot().filter((i) => !req.model || i.model === req.model) })),
    listWorkers: () =>
      rpc(async () => {
        const instances = registry.snapshot();
        const workers = [...registry.workers()]
          .sort((a, b) => a.workerId.localeCompare(b.workerId))
          .map((worker) => create(WorkerStatusSchema, { worker, instances: instances.filter((i) => i.workerId === worker.workerId) }));
        return create(ListWorkersResponseSchema, { workers });
      }),
    startModel: (req, ctx: HandlerContext) =>
      rpc(() => audited(ctx, { action: "StartModel", target: req.spec?.name ?? "", schema: StartModelRequestSchema, request: req }, async () => {
        const spec = validateModelSpec(req.spec);
        spec.replicas ||= 1;
        if (store.get(spec.name)) throw new SmmfError("already_exists", `The model '${spec.name}' is already started; use 'smmf model update', 'scale' or 'restart'`, { param: "name" });
        checkReplicas(spec.replicas);
        reserveModel(spec.name);
        try {
          const now = timestampNow();
          const record = create(ModelRecordSchema, { version: MODEL_RECORD_VERSION, spec, generation: nextGeneration(), createdAt: now, updatedAt: now });
          await checkPlacement(registry, clients, record, spec.replicas);
          const model = await store.create(record);
          starting.set(spec.name, Date.now() + STARTED_GRACE_MS);
          return create(StartModelResponseSchema, { model });
        } catch (err) {
          starting.delete(spec.name);
          throw err;
        }
      })),
    stopModel: (req, ctx: HandlerContext) =>
      rpc(() => audited(ctx, { action: "StopModel", target: req.name, schema: StopModelRequestSchema, request: req }, async () => {
        await store.remove(req.name);
        starting.delete(req.name);
        return create(StopModelResponseSchema, {});
      })),
    restartModel: (req, ctx: HandlerContext) =>
      rpc(() => audited(ctx, { action: "RestartModel", target: req.name, schema: RestartModelRequestSchema, request: req }, async () => {
        const model = await store.update(req.name, (current) => create(ModelRecordSchema, { ...current, generation: nextGeneration(current.generation), updatedAt: timestampNow() }));
        return create(RestartModelResponseSchema, { model });
      })),
    scaleModel: (req, ctx: HandlerContext) =>
      rpc(() => audited(ctx, { action: "ScaleModel", target: req.name, schema: ScaleModelRequestSchema, request: req }, async () => {
        if (req.replicas > MAX_REPLICAS) throw new SmmfError("invalid_argument", `'replicas' must be at most ${MAX_REPLICAS}; got ${req.replicas}`, { param: "replicas" });
        const current = store.get(req.name);
        if (!current) throw modelNotFound(req.name);
        checkReplicas(req.replicas);
        await checkPlacement(registry, clients, current, req.replicas - liveInstances(req.name));
        const model = await store.update(req.name, (record) => create(ModelRecordSchema, { ...record, spec: { ...record.spec!, replicas: req.replicas }, updatedAt: timestampNow() }));
        return create(ScaleModelResponseSchema, { model });
      })),
    updateModel: (req, ctx: HandlerContext) =>
      rpc(() => audited(ctx, { action: "UpdateModel", target: req.spec?.name ?? "", schema: UpdateModelRequestSchema, request: req }, async () => {
        const spec = validateModelSpec(req.spec);
        const current = store.get(spec.name);
        if (!current) throw modelNotFound(spec.name);
        checkReplicas(spec.replicas);
        const rolls = differsBeyondReplicas(current.spec, spec);
        if (rolls) {
          // A rolling update loads one new instance beside the old ones first.
          await checkPlacement(registry, clients, create(ModelRecordSchema, { ...current, spec }), Math.max(1, spec.replicas - liveInstances(spec.name) + 1));
        } else {
          await checkPlacement(registry, clients, current, spec.replicas - liveInstances(spec.name));
        }
        const model = await store.update(spec.name, (record) =>
          create(ModelRecordSchema, { ...record, spec, generation: rolls ? nextGeneration(record.generation) : record.generation, updatedAt: timestampNow() }),
        );
        return create(UpdateModelResponseSchema, { model });
      })),
    setModelInstanceState: (req, ctx: HandlerContext) =>
      rpc(() => audited(ctx, { action: "SetModelInstanceState", target: req.instanceId, schema: SetModelInstanceStateRequestSchema, request: req }, async () => {
        if (![InstanceState.ONLINE, InstanceState.OFFLINE, InstanceState.DRAINING].includes(req.state)) {
          throw new SmmfError("invalid_argument", "'state' must be ONLINE, OFFLINE or DRAINING", { param: "state" });
        }
        const instance = registry.snapshot().find((i) => i.instanceId === req.instanceId);
        if (!instance) throw new SmmfError("not_found", `no instance '${req.instanceId}'`, { param: "instance_id" });
        const res = await clients.get(instance.address).setInstanceState({ instanceId: req.instanceId, state: req.state }, { timeoutMs: 30_000 });
        return create(SetModelInstanceStateResponseSchema, { instance: res.instance });
      })),
    listAudit: (req) =>
      rpc(async () => {
        const page = await deps.audit.list(auditQueryOf(req));
        return create(ListAuditResponseSchema, { records: page.records, next: page.next });
      }),
    async *watchEvents(req, ctx) {
      if (events.subscribers >= MAX_WATCHERS) throw new SmmfError("resource_exhausted", `${MAX_WATCHERS} watchers are open on this node; close one or watch another node`);
      const queue = createAsyncQueue<WatchEventsResponse>();
      const unsubscribe = events.subscribe((event) => {
        if (req.model && event.model !== req.model) return;
        // A watcher that does not keep up is dropped, not buffered without end.
        if (queue.size >= MAX_PENDING_EVENTS) {
          unsubscribe();
          return queue.fail(new SmmfError("resource_exhausted", `this watcher fell ${MAX_PENDING_EVENTS} events behind and was dropped; watch again`));
        }
        queue.push(event);
      });
      const onAbort = () => queue.end();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        yield* queue;
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        unsubscribe();
      }
    },
  } satisfies ServiceImpl<typeof ControllerService>;
  return service;
}

export type ControllerApi = ReturnType<typeof createControllerService>;
