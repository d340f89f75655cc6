import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import {
  complete,
  failures,
  killAll,
  leaseOf,
  registryEntries,
  runLimited,
  sleep,
  startDistGateway,
  startDistWorker,
  waitFor,
  type DistGateway,
  type DistWorker,
  waitUntilReady,
} from "../helpers/distCluster.js";

// Two workers and a gateway on one etcd, which goes away for 10 s, comes back with its data, then comes back
// empty (data folder wiped). Leases of 1 s: the workers give theirs up as lost 2 × TTL into the outage, well
// within it, and the leases etcd restores when it comes back run out soon after.
const LEASE_TTL_S = 1;
const OUTAGE_MS = 10_000;
/** How soon after etcd is back the workers must be registered again and used by the gateway. */
const RECOVERY_MS = 10_000;
let etcd: TestEtcd;
let workers: DistWorker[] = [];
let gateway: DistGateway;

beforeAll(async () => {
  etcd = await startEtcd();
  workers = await Promise.all([
    startDistWorker(etcd, { workerId: "outage-a", sequences: 4, leaseTtl: LEASE_TTL_S }),
    startDistWorker(etcd, { workerId: "outage-b", sequences: 4, leaseTtl: LEASE_TTL_S }),
  ]);
  gateway = await startDistGateway(etcd, ["--policy", "p2c"]); // the same prompt over and over must spread
  await waitUntilReady(gateway);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, ...workers);
  await etcd?.close();
});

const instanceIds = () => new Set(workers.map((w) => w.instanceId));
const keys = () => workers.map((w) => w.key).sort();

/** Requests until both instances have answered one (each batch: 4 requests, 2 at a time). */
async function untilBothServe(timeoutMs: number): Promise<void> {
  const seen = new Set<string>();
  await waitFor(
    `the gateway to serve on both instances (seen: ${JSON.stringify([...seen])})`,
    async () => {
      const results = await runLimited(4, 2, () => complete(gateway.openai, 4, { timeoutMs: 10_000 }));
      for (const r of results) if (r.status === "fulfilled") seen.add(r.value.instance);
      return [...instanceIds()].every((id) => seen.has(id));
    },
    timeoutMs,
    100,
  );
}

/** Both workers' keys, ONLINE and bound to a live lease with the worker's TTL. */
async function bothRegistered(): Promise<boolean> {
  const entries = await registryEntries(etcd);
  if (entries.map((e) => e.key).sort().join() !== keys().join()) return false;
  for (const worker of workers) {
    const entry = entries.find((e) => e.key === worker.key)!;
    if (entry.record.state !== "INSTANCE_STATE_ONLINE" || entry.record.instanceId !== worker.instanceId || entry.record.address !== worker.address) return false;
    const lease = await leaseOf(etcd, worker.key);
    if (!lease || lease === "0") return false;
    const ttl = await etcd.etcdctl("lease", "timetolive", BigInt(lease).toString(16));
    if (!new RegExp(`granted with TTL\\(${LEASE_TTL_S}s\\)`).test(ttl)) return false;
  }
  return true;
}

describe("distributed mode: etcd outage", () => {
  it(`keeps serving on both workers while etcd is down for ${OUTAGE_MS / 1000} s`, async () => {
    expect(await bothRegistered()).toBe(true);
    await etcd.stop();
    const stoppedAt = performance.now();
    await expect(etcd.etcdctl("--dial-timeout=300ms", "--command-timeout=500ms", "get", "--prefix", "/smmf/")).rejects.toThrow();

    const outcomes: PromiseSettledResult<Awaited<ReturnType<typeof complete>>>[] = [];
    let batches = 0;
    while (performance.now() - stoppedAt < OUTAGE_MS - 500) {
      outcomes.push(...(await runLimited(4, 2, () => complete(gateway.openai, 8, { timeoutMs: 5_000 }))));
      batches++;
      await sleep(300);
    }
    const ready = await fetch(gateway.baseURL.replace(/\/v1$/, "/readyz"));
    expect(ready.status).toBe(200);
    const remaining = OUTAGE_MS - (performance.now() - stoppedAt);
    if (remaining > 0) await sleep(remaining);

    expect(failures(outcomes)).toEqual([]);
    expect(batches).toBeGreaterThanOrEqual(5);
    const served = new Set(outcomes.map((o) => (o as PromiseFulfilledResult<Awaited<ReturnType<typeof complete>>>).value.instance));
    expect(served).toEqual(instanceIds());
  }, 60_000);

  it("recovers when etcd comes back with its data: the workers stay registered and served throughout", async () => {
    await etcd.start();
    const startedAt = performance.now();
    // Watch the first TTL + 3 s after etcd is back, past the expiry of every lease granted before the outage
    // (etcd restores those with a fresh TTL): both keys stay in etcd, and requests keep being served.
    const missingAt = new Map<string, number[]>(workers.map((w) => [w.workerId, []]));
    const outcomes: PromiseSettledResult<Awaited<ReturnType<typeof complete>>>[] = [];
    while (performance.now() - startedAt < (LEASE_TTL_S + 3) * 1_000) {
      const [entries, results] = await Promise.all([
        registryEntries(etcd),
        runLimited(2, 2, () => complete(gateway.openai, 4, { timeoutMs: 5_000 })),
      ]);
      const ms = Math.round(performance.now() - startedAt);
      for (const worker of workers) if (!entries.some((e) => e.key === worker.key)) missingAt.get(worker.workerId)!.push(ms);
      outcomes.push(...results);
      await sleep(100);
    }
    const missing = [...missingAt].flatMap(([id, times]) =>
      times.length === 0 ? [] : [`${id}'s key missing in ${times.length} checks, from ${times[0]} to ${times.at(-1)} ms after etcd came back`],
    );
    const failed = failures(outcomes);
    expect({ missing, failedRequests: failed.length, firstFailures: failed.slice(0, 3) }).toEqual({ missing: [], failedRequests: 0, firstFailures: [] });
    await waitFor("both workers registered with live leases", bothRegistered, RECOVERY_MS, 100);
    await untilBothServe(RECOVERY_MS);
  }, 60_000);

  it("recovers when etcd comes back empty (data wiped): the workers register again and the gateway finds them", async () => {
    await etcd.stop();
    await etcd.start({ wipe: true });
    const startedAt = performance.now();
    await waitFor("both workers registered again in the empty etcd", bothRegistered, RECOVERY_MS, 100);
    const registeredMs = performance.now() - startedAt;
    await untilBothServe(RECOVERY_MS);
    const servedMs = performance.now() - startedAt;
    expect(registeredMs, `registered again after ${Math.round(registeredMs)} ms`).toBeLessThan(RECOVERY_MS);
    expect(servedMs, `both served after ${Math.round(servedMs)} ms`).toBeLessThan(RECOVERY_MS);
  }, 60_000);
});
