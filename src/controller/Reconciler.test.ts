import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { InstanceSchema, InstanceState, WorkerInfoSchema, type Instance, type WorkerInfo } from "../gen/smmf/v1/instance_pb.js";
import { ModelRecordSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { CommandResultSchema, EstimateInstanceResponseSchema, WorkerStatusSchema, type CommandResult, type EstimateInstanceResponse, type WorkerStatus } from "../gen/smmf/v1/worker_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { MemoryRegistry } from "../registry/MemoryRegistry.js";
import { createLogger } from "../telemetry/createLogger.js";
import { MemoryModelStore } from "./MemoryModelStore.js";
import { MemoryStatusStore } from "./MemoryStatusStore.js";
import { Reconciler, type ReconcilerSessions } from "./Reconciler.js";

type Command = Parameters<ReconcilerSessions["send"]>[1];
type SendOptions = Parameters<ReconcilerSessions["send"]>[2];

/**
 * Workers as the loop sees them over their sessions, with the real ordering of a session: a command's
 * result comes first, the status that shows its effect `statusDelayMs` later (the worker sends its status
 * on the next turn of its event loop, after the result).
 */
class FakeWorkers implements ReconcilerSessions {
  private readonly workers = new Map<string, { info: WorkerInfo; actual: Map<string, Instance>; reported: Instance[]; seq: number }>();
  onChange: () => void = () => undefined;
  readonly sent: { workerId: string; command: Command; options?: SendOptions }[] = [];
  /** Most live instances per model any status has shown. */
  readonly maxReported = new Map<string, number>();

  constructor(
    ids: string[],
    private readonly statusDelayMs: number,
  ) {
    for (const workerId of ids) {
      const info = create(WorkerInfoSchema, { workerId, address: `http://${workerId}.invalid`, engines: ["openai-compatible"], memoryFreeBytes: 1n << 40n });
      this.workers.set(workerId, { info, actual: new Map(), reported: [], seq: 1 });
    }
  }

  /** Reconcile passes so far (each pass begins by syncing the sessions). */
  passes = 0;
  /** Statuses not sent yet that will show the effect of a command. */
  statusesPending = 0;

  sync(): void {
    this.passes++;
  }

  statuses(): WorkerStatus[] {
    return [...this.workers.values()].map((w) => create(WorkerStatusSchema, { worker: w.info, instances: w.reported }));
  }

  statusSeq(workerId: string): number | undefined {
    return this.workers.get(workerId)?.seq;
  }

  live(model: string): Instance[] {
    return [...this.workers.values()].flatMap((w) => [...w.actual.values()]).filter((i) => i.model === model && i.state !== InstanceState.DRAINING);
  }

  loads(model: string): number {
    return this.sent.filter((s) => s.command.case === "load" && s.command.value.spec?.model === model).length;
  }

  send(workerId: string, command: Command, options?: SendOptions): Promise<CommandResult> {
    this.sent.push({ workerId, command, options });
    const worker = this.workers.get(workerId)!;
    const result = create(CommandResultSchema, { ok: true });
    if (command.case === "load") {
      const spec = command.value.spec!;
      const instance = create(InstanceSchema, { instanceId: spec.instanceId, model: spec.model, workerId, state: InstanceState.ONLINE, managed: true, generation: spec.generation });
      worker.actual.set(instance.instanceId, instance);
      result.instance = instance;
    } else if (command.case === "unload") {
      if (!worker.actual.delete(command.value.instanceId ?? "")) Object.assign(result, { ok: false, errorCode: "not_found" });
    }
    this.statusesPending++;
    setTimeout(() => this.report(workerId), this.statusDelayMs);
    return new Promise((resolve) => setImmediate(() => resolve(result)));
  }

  private report(workerId: string): void {
    this.statusesPending--;
    const worker = this.workers.get(workerId)!;
    worker.reported = [...worker.actual.values()];
    worker.seq++;
    const perModel = new Map<string, number>();
    for (const w of this.workers.values()) for (const i of w.reported) if (i.state !== InstanceState.DRAINING) perModel.set(i.model, (perModel.get(i.model) ?? 0) + 1);
    for (const [model, n] of perModel) this.maxReported.set(model, Math.max(this.maxReported.get(model) ?? 0, n));
    this.onChange();
  }
}

function relayed(name: string, replicas: number, generation = 1n): ModelRecord {
  return create(ModelRecordSchema, { version: 1, spec: { name, engine: "openai-compatible", replicas, proxy: { baseUrl: "http://127.0.0.1:9/v1" } }, generation });
}

async function until(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

type Estimate = (request: { spec?: { model: string } }, options?: { signal?: AbortSignal; timeoutMs?: number }) => Promise<EstimateInstanceResponse>;

function setUp(workers: FakeWorkers, estimate?: Estimate) {
  const store = new MemoryModelStore();
  const statuses = new MemoryStatusStore();
  const answer: Estimate = estimate ?? (async () => create(EstimateInstanceResponseSchema, { memoryBytes: 1n }));
  const reconciler = new Reconciler({
    store,
    statuses,
    registry: new MemoryRegistry(),
    sessions: workers,
    clients: { get: () => ({ estimateInstance: answer as never }) },
    logger: createLogger("silent"),
    intervalMs: 200,
  });
  workers.onChange = () => reconciler.trigger();
  reconciler.start();
  return { store, statuses, reconciler };
}

describe("Reconciler", () => {
  it("never loads more than the replicas when load results come before the statuses that show them (scale 50, 200, 1)", async () => {
    const workers = new FakeWorkers(["w1", "w2"], 40);
    const { store, reconciler } = setUp(workers);
    /** Waits until every status is in and nothing runs, then for `n` more passes (and the reconcile of "r" they start). */
    const afterMorePasses = async (n: number) => {
      const quiet = () => workers.statusesPending === 0 && !reconciler.inFlight("r");
      await until("every status in, no reconcile running", quiet);
      const target = workers.passes + n;
      await until(`${n} more passes`, () => workers.passes >= target && quiet());
    };
    try {
      await store.create(relayed("r", 50));
      await until("50 live instances", () => workers.live("r").length === 50);
      await store.update("r", (r) => create(ModelRecordSchema, { ...r, spec: { ...r.spec!, replicas: 200 } }));
      await until("200 live instances", () => workers.live("r").length === 200);
      // Settled: a few more passes load nothing.
      const loads = workers.loads("r");
      expect(loads).toBe(200);
      await afterMorePasses(2);
      expect(workers.loads("r")).toBe(200);
      expect(workers.maxReported.get("r")).toBe(200);
      await store.update("r", (r) => create(ModelRecordSchema, { ...r, spec: { ...r.spec!, replicas: 1 } }));
      await until("1 live instance", () => workers.live("r").length === 1);
      await afterMorePasses(2);
      expect(workers.live("r")).toHaveLength(1);
      expect(workers.loads("r")).toBe(200);
      // Every remote command has a deadline.
      expect(workers.sent.every((s) => (s.options?.timeoutMs ?? 0) > 0)).toBe(true);
    } finally {
      reconciler.stop();
    }
  });

  it("reconciles each model on its own: a model whose estimate hangs holds up no other, and stopping it aborts the call", async () => {
    const workers = new FakeWorkers(["w1"], 5);
    const calls: { model: string; signal?: AbortSignal; timeoutMs?: number }[] = [];
    const { store, statuses, reconciler } = setUp(workers, (request, options) => {
      calls.push({ model: request.spec!.model, signal: options?.signal, timeoutMs: options?.timeoutMs });
      if (request.spec!.model !== "a-stuck") return Promise.resolve(create(EstimateInstanceResponseSchema, { memoryBytes: 1n }));
      return new Promise((_resolve, reject) => options?.signal?.addEventListener("abort", () => reject(new SmmfError("cancelled", "aborted"))));
    });
    try {
      await store.create(relayed("a-stuck", 1));
      await until("a-stuck's estimate to be asked", () => calls.some((c) => c.model === "a-stuck"));
      await store.create(relayed("b-fine", 2));
      await until("b-fine's 2 instances", () => workers.live("b-fine").length === 2);
      await until("b-fine's status to say converged", () => statuses.get("b-fine")?.converged === true);
      const stuck = calls.find((c) => c.model === "a-stuck")!;
      expect(stuck.timeoutMs).toBe(30_000);
      expect(stuck.signal?.aborted).toBe(false);
      expect(reconciler.inFlight("a-stuck")).toBe(true);
      // Still one call in flight for a-stuck: its reconcile waits on it, later passes do not start another.
      expect(calls.filter((c) => c.model === "a-stuck")).toHaveLength(1);
      await store.remove("a-stuck");
      await until("a-stuck's call to be aborted", () => stuck.signal!.aborted && !reconciler.inFlight("a-stuck"));
      expect(workers.loads("a-stuck")).toBe(0);
    } finally {
      reconciler.stop();
    }
  });
});
