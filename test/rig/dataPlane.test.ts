import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { summarize, type RequestRecord } from "../../rig/load.js";
import { metricValue, ms, underWayAt, untilDropped, untilPickable, untilServedBy } from "../../rig/observe.js";
import { Rig } from "../../rig/Rig.js";
import { waitFor } from "../helpers/waitFor.js";
import { PLAIN } from "../../rig/TcpRelay.js";

// The data plane on the multi-host rig (rig/README.md): workers cut off from everything or from etcd only, and
// a slow, lossy link between gw1 and wrk3 (a relay that is a plain pass-through until a test makes it slow).
// Each component has its own network namespace and address; load comes from the client namespace.
/** The product's default lease TTL. */
const TTL_S = 3;
/**
 * How long after a cut from everything the last gateway may still pick the instance: the lease TTL. The gateways
 * do not wait for the lease: their connection to the worker stops answering PINGs (every 1 s, 1 s to answer),
 * and a channel that lost its connection is not picked until a reconnection answers (src/gateway/GrpcChannel.ts).
 */
const CUT_DROP_BOUND_MS = TTL_S * 1000;
/**
 * How long after a cut from etcd only (gateways still reach the worker) the last gateway may still pick it: its
 * lease runs out at most one TTL after the cut (it was last kept alive at most TTL/3 before it); etcd's leader
 * looks for expired leases every 500 ms; then the deletion goes through Raft, the watch event to the gateways,
 * and this test's polling, on a busy 2-core machine (measured with TTL 2 s: 1.7–2.4 s idle, up to 2.7 s with a
 * core taken by another process).
 */
const LEASE_DROP_BOUND_MS = TTL_S * 1000 + 2_000;

let rig: Rig;

beforeAll(async () => {
  rig = await Rig.start({ leaseTtl: TTL_S, slowLink: { gateway: "gw1", worker: "wrk3" }, log: (l) => console.log(`[rig] ${l}`) });
  console.log(rig.describe());
}, 240_000);

afterEach(async () => {
  // Heal whatever a failed scenario left cut, and wait until the rig is whole, so the next one starts clean.
  await rig?.restore(60_000);
}, 90_000);

afterAll(async () => {
  await rig?.close();
});

/** Fails with the failed requests listed. */
function expectNoFailures(records: RequestRecord[]): void {
  expect(summarize(records).errors).toEqual([]);
}

describe("rig: data plane", () => {
  it("a worker cut off from everything under 100 concurrent streams: no request fails, it leaves every gateway's pick set within the lease TTL (the gateways' PINGs go unanswered before the lease runs out), and it serves again after healing", async () => {
    const victim = "wrk1";
    const id = await rig.instanceOf(victim);
    const retriesBefore = (await Promise.all(rig.gateways.map(async (g) => metricValue(await rig.metrics(g.name), "smmf_gateway_retries_total")))).reduce((a, b) => a + b, 0);
    const load = rig.load({ requests: 300, concurrency: 100, maxTokens: 24, stream: true, timeoutMs: 180_000 });
    // Streams are flowing through both gateways to every instance.
    await load.after(40);
    const mark = rig.proc(victim).mark();
    const cutAt = Date.now();
    await rig.cut(victim);
    const dropped = await untilDropped(rig, id, { timeoutMs: 30_000 });
    const records = await load.records;
    const summary = summarize(records);
    const cutOff = underWayAt(records, id, cutAt);
    const retriesAfter = (await Promise.all(rig.gateways.map(async (g) => metricValue(await rig.metrics(g.name), "smmf_gateway_retries_total")))).reduce((a, b) => a + b, 0);
    console.log(
      `worker cut off from everything: ${summary.ok}/${summary.requests} requests ok, ${cutOff.length} under way on it at the cut; ` +
        `dropped by ${Object.entries(dropped.at).map(([g, t]) => `${g} after ${ms(t - cutAt)}`).join(", ")}; ` +
        `retries (before the first token and mid-stream) ${retriesAfter - retriesBefore}; p50 ${ms(summary.p50Ms)}, p99 ${ms(summary.p99Ms)}`,
    );

    expectNoFailures(records);
    expect(records).toHaveLength(300);
    // The cut caught requests on it (begun there, or streams under way): they were sent again and finished elsewhere.
    expect(retriesAfter).toBeGreaterThan(retriesBefore);
    expect(dropped.last - cutAt).toBeLessThanOrEqual(CUT_DROP_BOUND_MS);
    // Still out at the end of the load (not only ejected for a moment).
    for (const g of rig.gateways) expect(await rig.pickSet(g.name)).not.toContain(id);
    // The cut lasts until the worker's lease has run out too (the gateways dropped it before that): its
    // instance key goes from etcd.
    await waitFor(`${id}'s key to leave etcd (its lease run out)`, async () => !(await rig.etcdKeys("/smmf/v1/instances/")).some((k) => k.endsWith(`/${id}`)), 30_000, 200);

    // Healing: the worker's lease was lost; it registers again (the same instance) and serves through both gateways.
    await rig.heal(victim);
    await rig.proc(victim).waitForLine(/registered again in etcd/, { after: mark, timeoutMs: 30_000 });
    await untilPickable(rig, id, 15_000);
    expectNoFailures(await untilServedBy(rig, id, 30_000));
  }, 240_000);

  it("a worker cut off from etcd only keeps serving until its lease expires, is then dropped, and registers again on heal, without duplicates", async () => {
    const victim = "wrk2";
    const workerId = rig.component(victim).id;
    const id = await rig.instanceOf(victim);
    const instanceKeysBefore = await rig.etcdKeys("/smmf/v1/instances/");
    const workerKeysBefore = await rig.etcdKeys("/smmf/v1/workers/");
    expect(instanceKeysBefore).toHaveLength(3);
    expect(workerKeysBefore).toHaveLength(3);

    // Steady load through both gateways, until stopped.
    const load = rig.load({ requests: 1_000_000, concurrency: 12, maxTokens: 8, stream: true, timeoutMs: 60_000 });
    await load.after(20);
    const mark = rig.proc(victim).mark();
    const cutAt = Date.now();
    await rig.cut(victim, ["etcd"]);
    const dropped = await untilDropped(rig, id, { timeoutMs: 30_000 });
    // Go on for a while with it out of every pick set: 60 more requests, none of them for it.
    const droppedProgress = load.progress().done;
    await load.after(droppedProgress + 60);
    // The worker itself still runs and answers: it is only its registration that went.
    const health = await rig.http(`http://${rig.component(victim).address}:${rig.component(victim).port}/healthz`, { timeoutMs: 3_000 });
    await load.stop();
    const records = await load.records;
    // Cut off for longer than twice its TTL, the worker gives its lease up as lost by itself, and keeps trying to register.
    const lost = await rig.proc(victim).waitForLine((l) => l.text.includes('"etcd lease lost; registering again"'), { after: mark, timeoutMs: 30_000 });

    // Served by it while it was cut off from etcd, before its lease ran out; nothing once every gateway had dropped it.
    const servedWhileCut = records.filter((r) => r.instance === id && r.start >= cutAt && r.start < dropped.last);
    const servedAfterDrop = records.filter((r) => r.instance === id && r.start > dropped.last + 250);
    console.log(
      `worker cut off from etcd only: ${records.length} requests, ${summarize(records).failed} failed; it served ${servedWhileCut.length} begun after the cut; ` +
        `dropped by ${Object.entries(dropped.at).map(([g, t]) => `${g} after ${ms(t - cutAt)}`).join(", ")}; ${servedAfterDrop.length} begun after the drop went to it; ` +
        `the worker gave its lease up as lost ${ms(lost.at - cutAt)} after the cut`,
    );
    expectNoFailures(records);
    expect(servedWhileCut.length).toBeGreaterThan(0);
    expect(dropped.last - cutAt).toBeLessThanOrEqual(LEASE_DROP_BOUND_MS);
    expect(servedAfterDrop).toEqual([]);
    expect(health.proxyError).toBeUndefined();
    expect(health.status).toBe(200);

    // Heal: it notices its lease is gone and registers again, under a new lease, with the same instance and keys.
    const healedAt = Date.now();
    await rig.heal(victim);
    const registered = await rig.proc(victim).waitForLine(/registered again in etcd/, { after: mark, timeoutMs: 30_000 });
    const back = await untilPickable(rig, id, 15_000);
    console.log(`  healed: registered again ${ms(registered.at - healedAt)} after the heal, pickable on every gateway after ${ms(back - healedAt)}`);
    expect(await rig.etcdKeys("/smmf/v1/instances/")).toEqual(instanceKeysBefore);
    expect(await rig.etcdKeys("/smmf/v1/workers/")).toEqual(workerKeysBefore);
    for (const g of rig.gateways) {
      const listed = (await rig.gatewayInstances(g.name))!.filter((i) => i.model === "stories260K");
      expect(listed.map((i) => i.instanceId).sort()).toEqual([...new Set(listed.map((i) => i.instanceId))].sort());
      expect(listed.filter((i) => i.workerId === workerId).map((i) => i.instanceId)).toEqual([id]);
      expect(listed).toHaveLength(3);
    }
    expectNoFailures(await untilServedBy(rig, id, 30_000));
  }, 240_000);

  it("a slow, lossy link between gw1 and wrk3: requests still succeed, and the slow instance gets less traffic under p2c", async () => {
    await rig.waitAllPickable(15_000);
    const slow = await rig.instanceOf("wrk3");
    const fast = [await rig.instanceOf("wrk1"), await rig.instanceOf("wrk2")];
    const gw1 = rig.component("gw1");
    const metricsBefore = await rig.metrics("gw1");
    const relayBefore = await rig.relayStats();
    // Every chunk on the link waits 40–80 ms each way, and each connection is reset after 2 s on average.
    const relayMark = rig.proc("relay").mark();
    await rig.setRelay({ delayMs: 40, jitterMs: 40, dropMeanMs: 2_000 });
    let records: RequestRecord[];
    try {
      // Load through gw1 until the link has dropped two connections and 400 requests are done (at most 60 s).
      const load = rig.load({ targets: [gw1.url], durationMs: 60_000, concurrency: 12, maxTokens: 16, stream: true, timeoutMs: 60_000 });
      const firstDrop = await rig.proc("relay").waitForLine(/^relay dropped/, { after: relayMark, timeoutMs: 60_000 });
      await rig.proc("relay").waitForLine(/^relay dropped/, { after: firstDrop.seq, timeoutMs: 60_000 });
      await load.after(400);
      await load.stop();
      records = await load.records;
    } finally {
      await rig.setRelay(PLAIN);
    }
    const metricsAfter = await rig.metrics("gw1");
    const relayAfter = await rig.relayStats();
    const summary = summarize(records);
    const count = (id: string) => summary.byInstance[id]?.requests ?? 0;
    const delta = (name: string) => metricValue(metricsAfter, name) - metricValue(metricsBefore, name);
    const figures = {
      requests: summary.requests,
      failed: summary.failed,
      byInstance: Object.fromEntries([slow, ...fast].map((id) => [id === slow ? `${id} (slow)` : id, summary.byInstance[id] ?? { requests: 0 }])),
      p50Ms: summary.p50Ms,
      p99Ms: summary.p99Ms,
      gw1: { retries: delta("smmf_gateway_retries_total"), failovers: delta("smmf_gateway_failovers_total"), ejections: delta("smmf_gateway_ejections_total") },
      relay: { connections: relayAfter.connections - relayBefore.connections, dropped: relayAfter.dropped - relayBefore.dropped },
    };
    console.log(`slow, lossy link gw1 → wrk3 (p2c, 12 requests at a time, until two connections were dropped):\n${JSON.stringify(figures, null, 2)}`);

    expectNoFailures(records);
    expect(records.length).toBeGreaterThan(100);
    expect(count(slow)).toBeLessThan(Math.min(...fast.map(count)));
    // Well under a third: the link's delay keeps its requests in flight longer (p2c sends elsewhere), and each drop ejects it for a while.
    expect(count(slow)).toBeLessThan(0.25 * records.length);
    // The link did drop connections while the load ran.
    expect(relayAfter.dropped - relayBefore.dropped).toBeGreaterThanOrEqual(2);
  }, 240_000);
});
