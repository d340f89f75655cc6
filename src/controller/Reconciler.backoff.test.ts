import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { InstanceSchema, InstanceState, WorkerInfoSchema, type Instance, type WorkerInfo } from "../gen/smmf/v1/instance_pb.js";
import { ModelRecordSchema, type ModelRecord } from "../gen/smmf/v1/model_pb.js";
import { CommandResultSchema, EstimateInstanceResponseSchema, WorkerStatusSchema, type CommandResult, type EstimateInstanceResponse, type WorkerStatus } from "../gen/smmf/v1/worker_pb.js";
import { SmmfError } from "../errors/SmmfError.js";
import { MemoryRegistry } from "../registry/MemoryRegistry.js";
import { createLogger } from "../telemetry/createLogger.js";
import { MemoryModelStore } from "./MemoryModelStore.js";
import { MemoryStatusStore } from "./MemoryStatusStore.js";
import { Reconciler, type ReconcilerSessions } from "./Reconciler.js";

// README (Operating models, reconcile loop): "A failed load or estimate backs off (1 s doubling to 30 s) and
// avoids that worker for 30 s; the reason is written to /smmf/v1/status/<name>". The loop reads the time from
// Date.now() and its timers, so these tests run it on vitest's fake clock: every remote call is stamped with
// the fake time at which the loop made it, and the clock is moved on explicitly.

type Command = Parameters<ReconcilerSessions["send"]>[1];
type EstimateRequest = { spec?: { model: string } };
type Estimate = (workerId: string, request: EstimateRequest) => Promise<EstimateInstanceResponse>;

/** The pass interval of the loop under test (fake ms): attempts fall on its ticks. */
const INTERVAL_MS = 100;

/**
 * Workers as the loop sees them over their sessions. A worker listed in `failLoads` answers every load with
 * an error (as a real worker does for a file it cannot load, or when it is full); the others load, answer ok,
 * and report the instance in their next status a few ms later.
 */
class Workers implements ReconcilerSessions {
  private readonly workers = new Map<string, { info: WorkerInfo; instances: Map<string, Instance>; reported: Instance[]; seq: number }>();
  /** Every load sent: to which worker, at which (fake) time after the test's start. */
  readonly loads: { workerId: string; at: number }[] = [];
  onChange: () => void = () => undefined;

  constructor(
    workers: { id: string; freeMib: number }[],
    private readonly failLoads: Set<string>,
    private readonly start: number,
  ) {
    for (const { id, freeMib } of workers) {
      const info = create(WorkerInfoSchema, { workerId: id, address: `http://${id}.invalid`, engines: ["openai-compatible"], memoryFreeBytes: BigInt(freeMib) << 20n });
      this.workers.set(id, { info, instances: new Map(), reported: [], seq: 1 });
    }
  }

  sync(): void {}

  statuses(): WorkerStatus[] {
    return [...this.workers.values()].map((w) => create(WorkerStatusSchema, { worker: w.info, instances: w.reported }));
  }

  statusSeq(workerId: string): number | undefined {
    return this.workers.get(workerId)?.seq;
  }

  /** Live instances of `model` per worker id, as the workers hold them. */
  placed(model: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, w] of this.workers) {
      const n = [...w.instances.values()].filter((i) => i.model === model && i.state !== InstanceState.DRAINING).length;
      if (n > 0) out[id] = n;
    }
    return out;
  }

  send(workerId: string, command: Command): Promise<CommandResult> {
    const worker = this.workers.get(workerId)!;
    const result = create(CommandResultSchema, { ok: true });
    if (command.case === "load") {
      this.loads.push({ workerId, at: Date.now() - this.start });
      const spec = command.value.spec!;
      if (this.failLoads.has(workerId)) {
        Object.assign(result, { ok: false, errorCode: "resource_exhausted", errorMessage: `worker ${workerId} hosts 1 instances, its most (maxInstancesPerWorker 1)` });
        return new Promise((resolve) => setImmediate(() => resolve(result)));
      }
      const instance = create(InstanceSchema, { instanceId: spec.instanceId, model: spec.model, workerId, state: InstanceState.ONLINE, managed: true, generation: spec.generation });
      worker.instances.set(instance.instanceId, instance);
      result.instance = instance;
    } else if (command.case === "unload") {
      if (!worker.instances.delete(command.value.instanceId ?? "")) Object.assign(result, { ok: false, errorCode: "not_found" });
    }
    setTimeout(() => this.report(workerId), 5);
    return new Promise((resolve) => setImmediate(() => resolve(result)));
  }

  private report(workerId: string): void {
    const worker = this.workers.get(workerId)!;
    worker.reported = [...worker.instances.values()];
    worker.seq++;
    this.onChange();
  }
}

function relayed(name: string, replicas: number, generation = 1n): ModelRecord {
  return create(ModelRecordSchema, { version: 1, spec: { name, engine: "openai-compatible", replicas, proxy: { baseUrl: "http://127.0.0.1:9/v1" } }, generation });
}

const ok: Estimate = async () => create(EstimateInstanceResponseSchema, { memoryBytes: 1n << 20n });

let start = 0;
let stops: (() => void)[] = [];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "setImmediate", "clearImmediate", "Date"] });
  start = Date.now();
  stops = [];
});

afterEach(() => {
  for (const stop of stops) stop();
  vi.useRealTimers();
});

/** Moves the fake clock on to `ms` after the test's start, running every timer due on the way. */
async function at(ms: number): Promise<void> {
  const now = Date.now() - start;
  expect(ms, `the clock is at ${now} ms already`).toBeGreaterThanOrEqual(now);
  await vi.advanceTimersByTimeAsync(ms - now);
}

function setUp(workers: Workers, estimate: Estimate = ok) {
  const store = new MemoryModelStore();
  const statuses = new MemoryStatusStore();
  const estimates: { workerId: string; at: number }[] = [];
  const reconciler = new Reconciler({
    store,
    statuses,
    registry: new MemoryRegistry(),
    sessions: workers,
    clients: {
      get: (address: string) => ({
        estimateInstance: ((request: EstimateRequest) => {
          const workerId = new URL(address).hostname.replace(/\.invalid$/, "");
          estimates.push({ workerId, at: Date.now() - start });
          return estimate(workerId, request);
        }) as never,
      }),
    },
    logger: createLogger("silent"),
    intervalMs: INTERVAL_MS,
  });
  workers.onChange = () => reconciler.trigger();
  reconciler.start();
  stops.push(() => reconciler.stop());
  const scale = (name: string, replicas: number) => store.update(name, (r) => create(ModelRecordSchema, { ...r, spec: { ...r.spec!, replicas } }));
  return { store, statuses, estimates, scale };
}

/** Gaps between consecutive times. */
const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]);

describe("Reconciler: back-off and avoidance after a failure", () => {
  it("retries a failed estimate after 1 s, 2 s, 4 s, 8 s, 16 s, then every 30 s, and writes the reason to the model's status", async () => {
    const workers = new Workers([{ id: "w1", freeMib: 1024 }], new Set(), start);
    const { store, statuses, estimates } = setUp(workers, async (workerId) => {
      throw new SmmfError("unavailable", `worker ${workerId} is not answering`);
    });
    await store.create(relayed("m", 1));
    await at(500);
    expect(estimates).toHaveLength(1);
    expect(estimates[0].at).toBeLessThan(INTERVAL_MS);
    // The reason, for `smmf model list` and the console.
    expect(statuses.get("m")).toMatchObject({ converged: false, message: "cannot estimate the memory an instance needs: worker w1: worker w1 is not answering" });

    await at(200_000);
    const seen = gaps(estimates.map((e) => e.at));
    const expected = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000];
    expect(seen.length, `estimates at ${estimates.map((e) => e.at).join(", ")} ms`).toBe(expected.length);
    // Each retry comes on the first pass once its delay is over: never earlier, at most one pass later.
    for (let i = 0; i < expected.length; i++) {
      expect(seen[i], `gap ${i + 1} (estimates at ${estimates.map((e) => e.at).join(", ")} ms)`).toBeGreaterThanOrEqual(expected[i]);
      expect(seen[i], `gap ${i + 1} (estimates at ${estimates.map((e) => e.at).join(", ")} ms)`).toBeLessThanOrEqual(expected[i] + INTERVAL_MS);
    }
    expect(workers.loads).toHaveLength(0);
  });

  it("does not place a model on the worker its load failed on for 30 s: the retry 1 s later and scale-ups meanwhile go elsewhere", async () => {
    // w1 has the most free memory, so without the failure it would get the first instance and, holding none of
    // the model, every scale-up after that (fewest instances of the model first).
    const workers = new Workers(
      [
        { id: "w1", freeMib: 4096 },
        { id: "w2", freeMib: 1024 },
      ],
      new Set(["w1"]),
      start,
    );
    const { store, statuses, scale } = setUp(workers);
    await store.create(relayed("m", 1));
    await at(500);
    expect(workers.loads).toEqual([{ workerId: "w1", at: expect.any(Number) }]);
    const failedAt = workers.loads[0].at;
    expect(failedAt).toBeLessThan(INTERVAL_MS);
    expect(statuses.get("m")).toMatchObject({ converged: false, message: "loading an instance on worker w1 failed: worker w1 hosts 1 instances, its most (maxInstancesPerWorker 1)" });

    // Backed off for 1 s: nothing is sent before then; the next pass after it places the instance on w2.
    await at(failedAt + 999);
    expect(workers.loads).toHaveLength(1);
    await at(failedAt + 1_000 + INTERVAL_MS);
    expect(workers.loads).toHaveLength(2);
    expect(workers.loads[1].workerId).toBe("w2");
    expect(workers.loads[1].at - failedAt).toBeGreaterThanOrEqual(1_000);
    await at(3_000);
    expect(workers.placed("m")).toEqual({ w2: 1 });
    expect(statuses.get("m")).toMatchObject({ converged: true, message: "" });

    // Within the 30 s, scale-ups go to w2 too.
    await scale("m", 2);
    await at(4_000);
    await at(failedAt + 29_000);
    await scale("m", 3);
    await at(failedAt + 29_500);
    expect(workers.placed("m")).toEqual({ w2: 3 });
    expect(workers.loads.filter((l) => l.workerId === "w1")).toHaveLength(1);

    // After the 30 s, w1 is a candidate again (and, still failing, is avoided again).
    await at(failedAt + 30_100);
    await scale("m", 4);
    await at(failedAt + 30_600);
    const onW1 = workers.loads.filter((l) => l.workerId === "w1");
    expect(onW1).toHaveLength(2);
    expect(onW1[1].at - failedAt).toBeGreaterThanOrEqual(30_000);
    await at(failedAt + 33_000);
    expect(workers.placed("m")).toEqual({ w2: 4 });
    expect(workers.loads.filter((l) => l.workerId === "w1")).toHaveLength(2);
  });

  it("retries a load that keeps failing on the only worker after 1 + 2 + 4 + 8 + 16 = 31 s, then every 30 s (the cap, and the 30 s avoidance)", async () => {
    const workers = new Workers([{ id: "w1", freeMib: 1024 }], new Set(["w1"]), start);
    const { store, statuses } = setUp(workers);
    await store.create(relayed("m", 1));
    await at(500);
    expect(statuses.get("m")?.message).toBe("loading an instance on worker w1 failed: worker w1 hosts 1 instances, its most (maxInstancesPerWorker 1)");
    // The passes that find w1 avoided keep the real reason in the status (not "no worker is connected").
    await at(2_000);
    expect(statuses.get("m")?.message).toMatch(/^cannot place 1 instance\(s\): no other worker can take it; loading it failed on w1 \(until \d\d:\d\d:\d\d UTC: worker w1 hosts 1 instances, its most \(maxInstancesPerWorker 1\)\)$/);
    await at(100_000);
    const times = workers.loads.map((l) => l.at);
    expect(times[0]).toBeLessThan(INTERVAL_MS);
    // Passes at 1, 3, 7 and 15 s find no worker to place it on (w1 is avoided) and double the delay; at 31 s
    // w1 may be tried again; each failure there waits 30 s (the cap) and avoids w1 for 30 s.
    const seen = gaps(times);
    expect(seen.length, `loads at ${times.join(", ")} ms`).toBe(3);
    expect(seen[0]).toBeGreaterThanOrEqual(31_000);
    expect(seen[0]).toBeLessThanOrEqual(31_000 + 5 * INTERVAL_MS);
    for (const gap of seen.slice(1)) {
      expect(gap, `loads at ${times.join(", ")} ms`).toBeGreaterThanOrEqual(30_000);
      expect(gap, `loads at ${times.join(", ")} ms`).toBeLessThanOrEqual(30_000 + INTERVAL_MS);
    }
    expect(statuses.get("m")?.converged).toBe(false);
  });

  it("asks another worker for the estimate after one failed to answer, and that one again only after 30 s", async () => {
    const workers = new Workers(
      [
        { id: "w1", freeMib: 1024 },
        { id: "w2", freeMib: 1024 },
      ],
      new Set(),
      start,
    );
    const { store, estimates } = setUp(workers, async (workerId, request) => {
      if (workerId === "w1") throw new SmmfError("deadline_exceeded", "no answer within 30000 ms");
      return ok(workerId, request);
    });
    // A new generation needs a new estimate (they are kept per generation).
    const bump = (generation: bigint) => store.update("m", (r) => create(ModelRecordSchema, { ...r, generation }));
    await store.create(relayed("m", 1));
    await at(500);
    expect(estimates.map((e) => e.workerId)).toEqual(["w1"]);
    const failedAt = estimates[0].at;
    await at(failedAt + 999);
    expect(estimates).toHaveLength(1);
    await at(failedAt + 1_000 + INTERVAL_MS);
    expect(estimates.map((e) => e.workerId)).toEqual(["w1", "w2"]);
    await at(3_000);
    expect(Object.values(workers.placed("m")).reduce((a, b) => a + b, 0)).toBe(1);

    // Within the 30 s, a new generation's estimate is asked of w2, though w1 comes first otherwise.
    await at(failedAt + 20_000);
    await bump(2n);
    await at(failedAt + 21_000);
    expect(estimates.map((e) => e.workerId)).toEqual(["w1", "w2", "w2"]);

    // After them, w1 is asked first again.
    await at(failedAt + 30_100);
    await bump(3n);
    await at(failedAt + 30_600);
    expect(estimates.map((e) => e.workerId)).toEqual(["w1", "w2", "w2", "w1"]);
  });
});
