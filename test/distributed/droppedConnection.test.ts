import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import {
  complete,
  killAll,
  leaseOf,
  startDistGateway,
  startDistWorker,
  waitFor,
  waitUntilReady,
  type DistGateway,
  type DistWorker,
} from "../helpers/distCluster.js";

// README, "Distributed mode", Discovery: a gateway keeps one HTTP/2 connection per worker, with a PING every
// second; a connection that drops (a worker that died) or leaves a PING unanswered (a worker that hangs) takes
// the worker's instances out of the pick set at once, before its lease expires; they stay out until a
// reconnection answers a PING.
//
// Three workers with 30-second leases behind two gateways (round-robin). The leases are long so that they
// cannot be what takes a worker out: every removal below is seen while the worker's key is still in etcd,
// under the lease it had all along.
const LEASE_TTL_S = 30;
let etcd: TestEtcd;
let survivor: DistWorker;
let killed: DistWorker;
let frozen: DistWorker;
let gateways: DistGateway[] = [];

interface InstanceView {
  instanceId: string;
  pickable: boolean;
}

const rootOf = (gateway: DistGateway) => gateway.baseURL.replace(/\/v1$/, "");

/** The instances a gateway knows (its registry), with whether it would pick each now. */
async function instancesOn(gateway: DistGateway): Promise<InstanceView[]> {
  const res = await fetch(`${rootOf(gateway)}/api/v1/instances`);
  return ((await res.json()) as { data: InstanceView[] }).data;
}

/** Whether the gateway would pick the worker's instance now; undefined when the gateway does not know it at all. */
async function pickableOn(gateway: DistGateway, worker: DistWorker): Promise<boolean | undefined> {
  return (await instancesOn(gateway)).find((i) => i.instanceId === worker.instanceId)?.pickable;
}

/** Requests a gateway sent again to another instance before their first token. */
async function retriesOf(gateway: DistGateway): Promise<number> {
  return promValue(promSamples(await (await fetch(`${rootOf(gateway)}/metrics`)).text()), "smmf_gateway_retries_total");
}

/** `count` short completions through a gateway, one after the other; the instances that answered. */
async function instancesServing(gateway: DistGateway, count: number): Promise<string[]> {
  const instances: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await complete(gateway.openai, 4, { timeoutMs: 20_000 });
    expect(r.completionTokens).toBe(4);
    instances.push(r.instance);
  }
  return instances;
}

beforeAll(async () => {
  etcd = await startEtcd();
  [survivor, killed, frozen] = await Promise.all([
    startDistWorker(etcd, { workerId: "dc-survivor", leaseTtl: LEASE_TTL_S }),
    startDistWorker(etcd, { workerId: "dc-killed", leaseTtl: LEASE_TTL_S }),
    startDistWorker(etcd, { workerId: "dc-frozen", leaseTtl: LEASE_TTL_S }),
  ]);
  gateways = await Promise.all([startDistGateway(etcd, ["--policy", "round-robin"]), startDistGateway(etcd, ["--policy", "round-robin"])]);
  await Promise.all(gateways.map((g) => waitUntilReady(g)));
  // Each gateway opens its connection to a worker on first use: requests through both until every worker has
  // answered each gateway, so that every gateway holds a connection to every worker.
  for (const gateway of gateways) {
    const seen = new Set<string>();
    await waitFor(
      "every worker to answer through the gateway",
      async () => {
        for (const id of await instancesServing(gateway, 3)) seen.add(id);
        return seen.size === 3;
      },
      60_000,
      0,
    );
    expect(await instancesOn(gateway)).toEqual(expect.arrayContaining([survivor, killed, frozen].map((w) => expect.objectContaining({ instanceId: w.instanceId, pickable: true }))));
  }
}, 120_000);

afterAll(async () => {
  frozen?.proc.signal("SIGCONT");
  await killAll(...gateways, survivor, killed, frozen);
  await etcd?.close();
});

describe("distributed mode: a dropped connection takes a worker out of every gateway's pick set before its lease expires", () => {
  it("a worker that dies (SIGKILL): out of both gateways' pick sets while its key is still in etcd; no request goes to it", async () => {
    const lease = await leaseOf(etcd, killed.key);
    expect(lease).toMatch(/^[1-9]\d*$/);
    const retriesBefore = await Promise.all(gateways.map(retriesOf));

    killed.proc.signal("SIGKILL");
    expect((await killed.proc.exited).signal).toBe("SIGKILL");
    // No request is sent from here until both gateways have taken it out: only the lost connection can do it.
    for (const gateway of gateways) {
      await expect.poll(() => pickableOn(gateway, killed), { timeout: 20_000, interval: 50 }).toBe(false);
    }
    // Both did while its key was still in etcd, under the lease it had: the lease had not expired.
    expect(await leaseOf(etcd, killed.key)).toBe(lease);

    // Every request goes to the other two workers, at the first try: none was sent to the dead one and retried.
    for (const gateway of gateways) {
      const instances = await instancesServing(gateway, 9);
      expect(new Set(instances)).toEqual(new Set([survivor.instanceId, frozen.instanceId]));
      // Still listed (from etcd), not picked.
      expect(await pickableOn(gateway, killed)).toBe(false);
    }
    expect(await Promise.all(gateways.map(retriesOf))).toEqual(retriesBefore);
    // All of it happened within the lease: the key is still there.
    expect(await leaseOf(etcd, killed.key)).toBe(lease);
  }, 60_000);

  it("a worker that hangs (SIGSTOP): out of both pick sets while its key is in etcd, and back once it answers PINGs again (SIGCONT)", async () => {
    const lease = await leaseOf(etcd, frozen.key);
    expect(lease).toMatch(/^[1-9]\d*$/);
    const retriesBefore = await Promise.all(gateways.map(retriesOf));

    frozen.proc.signal("SIGSTOP");
    // Its connections stay open, but its PINGs go unanswered.
    for (const gateway of gateways) {
      await expect.poll(() => pickableOn(gateway, frozen), { timeout: 20_000, interval: 50 }).toBe(false);
    }
    expect(await leaseOf(etcd, frozen.key)).toBe(lease);

    // Every request goes to the one worker left, at the first try, and none hangs on the frozen one.
    for (const gateway of gateways) {
      expect(new Set(await instancesServing(gateway, 6))).toEqual(new Set([survivor.instanceId]));
    }
    expect(await Promise.all(gateways.map(retriesOf))).toEqual(retriesBefore);
    expect(await leaseOf(etcd, frozen.key)).toBe(lease);

    // Thawed, it answers PINGs again: a reconnection brings it back into both pick sets, though nothing changed in etcd.
    frozen.proc.signal("SIGCONT");
    for (const gateway of gateways) {
      await expect.poll(() => pickableOn(gateway, frozen), { timeout: 20_000, interval: 50 }).toBe(true);
    }
    expect(await leaseOf(etcd, frozen.key)).toBe(lease);
    for (const gateway of gateways) {
      expect(new Set(await instancesServing(gateway, 6))).toEqual(new Set([survivor.instanceId, frozen.instanceId]));
    }
    // The dead worker stays out.
    for (const gateway of gateways) expect(await pickableOn(gateway, killed)).not.toBe(true);
  }, 60_000);
});
