import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import {
  complete,
  countBy,
  entriesOf,
  failures,
  killAll,
  leaseOf,
  MODEL,
  registryEntries,
  runLimited,
  sleep,
  startDistGateway,
  startDistWorker,
  waitFor,
  waitUntilReady,
  type DistGateway,
  type DistWorker,
} from "../helpers/distCluster.js";

// Two workers with 2-second leases behind one gateway. One is frozen (SIGSTOP) and thawed (SIGCONT); then
// one is stopped gracefully (SIGTERM) while requests run on it.
const LEASE_TTL_S = 2;
let etcd: TestEtcd;
let steady: DistWorker;
let frozen: DistWorker;
let gateway: DistGateway;
/** The lease the frozen worker's key was bound to before SIGSTOP. */
let firstLease: string | undefined;

beforeAll(async () => {
  etcd = await startEtcd();
  [steady, frozen] = await Promise.all([
    startDistWorker(etcd, { workerId: "lease-steady", sequences: 4, leaseTtl: LEASE_TTL_S }),
    startDistWorker(etcd, { workerId: "lease-frozen", sequences: 4, leaseTtl: LEASE_TTL_S, shutdownGraceMs: 30_000 }),
  ]);
  gateway = await startDistGateway(etcd);
  await waitUntilReady(gateway);
}, 120_000);

afterAll(async () => {
  frozen?.proc.signal("SIGCONT");
  await killAll(gateway, steady, frozen);
  await etcd?.close();
});

/** Sends `count` short requests, `concurrency` at a time, each with a timeout; returns the instances that took them. */
async function instancesFor(count: number, concurrency: number, timeoutMs = 10_000): Promise<string[]> {
  const results = await runLimited(count, concurrency, () => complete(gateway.openai, 4, { timeoutMs }));
  expect(failures(results)).toEqual([]);
  return results.map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof complete>>>).value.instance);
}

describe("distributed mode: leases", () => {
  it("drops a frozen (SIGSTOP) worker from etcd and from routing within the lease TTL + 1 s", async () => {
    firstLease = await leaseOf(etcd, frozen.key);
    expect(firstLease).toMatch(/^[1-9]\d*$/);
    // Both take traffic first.
    expect(new Set(await instancesFor(20, 4))).toEqual(new Set([steady.instanceId, frozen.instanceId]));

    const stoppedAt = performance.now();
    frozen.proc.signal("SIGSTOP");
    await waitFor("the frozen worker's key to leave etcd", async () => (await entriesOf(etcd, frozen.workerId)).length === 0, (LEASE_TTL_S + 5) * 1_000, 50);
    const goneAfterMs = performance.now() - stoppedAt;
    expect(goneAfterMs, `key gone ${Math.round(goneAfterMs)} ms after SIGSTOP`).toBeLessThanOrEqual((LEASE_TTL_S + 1) * 1_000);
    expect((await registryEntries(etcd)).map((e) => e.key)).toEqual([steady.key]);

    // From TTL + 1 s on, the gateway sends nothing to it: every request goes to the other worker, none hangs.
    const wait = (LEASE_TTL_S + 1) * 1_000 - (performance.now() - stoppedAt);
    if (wait > 0) await sleep(wait);
    const instances = await instancesFor(20, 4, 5_000);
    expect(countBy(instances)).toEqual(new Map([[steady.instanceId, 20]]));
  }, 60_000);

  it("registers a thawed (SIGCONT) worker again under a new lease, and the gateway uses it again", async () => {
    const steadyLease = await leaseOf(etcd, steady.key);
    frozen.proc.signal("SIGCONT");
    const entry = await waitFor("the thawed worker's key back in etcd", async () => (await entriesOf(etcd, frozen.workerId))[0], 15_000, 50);
    expect(entry.key).toBe(frozen.key);
    expect(entry.record).toMatchObject({ instanceId: frozen.instanceId, workerId: frozen.workerId, address: frozen.address, state: "INSTANCE_STATE_ONLINE", model: MODEL });
    const newLease = await leaseOf(etcd, frozen.key);
    expect(newLease).toMatch(/^[1-9]\d*$/);
    expect(newLease).not.toBe(firstLease); // the old one expired
    expect(newLease).not.toBe(steadyLease);
    // The lease it is bound to is alive and has the worker's TTL.
    const ttl = await etcd.etcdctl("lease", "timetolive", BigInt(newLease!).toString(16));
    expect(ttl).toMatch(new RegExp(`granted with TTL\\(${LEASE_TTL_S}s\\)`));

    await waitFor(
      "the gateway to send requests to the thawed worker again",
      async () => (await instancesFor(8, 4)).includes(frozen.instanceId),
      15_000,
      100,
    );
    expect(new Set(await instancesFor(20, 4))).toEqual(new Set([steady.instanceId, frozen.instanceId]));
  }, 60_000);

  it("drains a worker on SIGTERM: requests in flight on it finish, it exits 0 and its keys are gone", async () => {
    // Watch its key: it turns DRAINING first, then goes.
    const client = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 2_000 });
    const states: string[] = [];
    const watcher = await client.watch().key(frozen.key).create();
    watcher.on("put", (kv) => states.push((JSON.parse(kv.value.toString()) as { state: string }).state));
    watcher.on("delete", () => states.push("deleted"));
    try {
      // 16 streams over 2 × 4 sequences (8 wait in the gateway's queue), long enough to be cut by the signal.
      interface Stream {
        instance?: string;
        chunks: number;
        usage?: number;
        finish?: string | null;
        done: boolean;
      }
      const streams: Stream[] = Array.from({ length: 16 }, () => ({ chunks: 0, done: false }));
      const errors: string[] = [];
      const all = Promise.all(
        streams.map(async (s, i) => {
          try {
            const { data, response } = await gateway.openai.completions
              .create({ model: MODEL, prompt: `Story ${i}:`, max_tokens: 400, stream: true, stream_options: { include_usage: true } })
              .withResponse();
            s.instance = response.headers.get("x-smmf-instance") ?? "";
            for await (const chunk of data) {
              if (chunk.usage) s.usage = chunk.usage.completion_tokens;
              const choice = chunk.choices[0];
              if (!choice) continue;
              if (choice.finish_reason) s.finish = choice.finish_reason;
              else s.chunks++;
            }
            s.done = true;
          } catch (err) {
            errors.push(`#${i} (first on ${s.instance ?? "?"}): ${(err as Error)?.message ?? String(err)}`);
          }
        }),
      );
      const runningOnIt = () => streams.filter((s) => s.instance === frozen.instanceId && s.chunks > 0 && !s.done);
      await waitFor("2 streams under way on the worker to stop", () => runningOnIt().length >= 2, 30_000, 5);
      const inFlightAtSignal = runningOnIt();
      // Ready (for a Kubernetes readiness probe) until it drains.
      expect((await fetch(`${frozen.address}/readyz`)).status).toBe(200);
      frozen.proc.signal("SIGTERM");

      // Requests sent while it drains are served (by the other worker once the gateway has seen DRAINING).
      await waitFor("the DRAINING record", () => states.includes("INSTANCE_STATE_DRAINING"), 10_000, 10);
      // Draining: not ready any more (its streams still run), alive all the same.
      const [ready, alive] = await Promise.all([fetch(`${frozen.address}/readyz`), fetch(`${frozen.address}/healthz`)]);
      expect([ready.status, alive.status]).toEqual([503, 200]);
      expect(await ready.json()).toMatchObject({ status: "draining" });
      const duringDrain = await instancesFor(4, 2);
      expect(duringDrain).toHaveLength(4);

      const exit = await frozen.proc.exited;
      const exitedAt = performance.now();
      expect(exit).toEqual({ code: 0, signal: null });
      const keysAfterExit = (await registryEntries(etcd)).map((e) => e.key);
      const checkedMs = performance.now() - exitedAt;
      expect(keysAfterExit, `keys ${Math.round(checkedMs)} ms after the exit`).toEqual([steady.key]);

      await all;
      expect(errors).toEqual([]);
      for (const s of inFlightAtSignal) {
        expect(s.done).toBe(true);
        expect(s.finish).toBe("length");
        expect(s.usage).toBe(400);
        expect(s.chunks).toBe(400);
      }
      for (const s of streams) expect(s.usage).toBe(400);
      // Its record turned DRAINING (never back ONLINE) before the key went.
      expect(states[0]).toBe("INSTANCE_STATE_DRAINING");
      expect(states.at(-1)).toBe("deleted");
      expect(states.slice(0, -1).every((s) => s === "INSTANCE_STATE_DRAINING")).toBe(true);
      // The gateway keeps serving, from the remaining worker.
      expect(new Set(await instancesFor(6, 3))).toEqual(new Set([steady.instanceId]));
    } finally {
      await watcher.cancel().catch(() => undefined);
      client.close();
    }
  }, 90_000);
});
