import { Etcd3, type Watcher } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  leaderRecord,
  startApiGateway,
  startBareWorker,
  startControllerProc,
  testSource,
  waitSettled,
  type BareWorker,
  type ControllerProc,
} from "../helpers/controlCluster.js";
import { killAll, sleep, waitFor, type DistGateway } from "../helpers/distCluster.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// Two controllers (lease TTL 2 s) over two bare workers and a gateway.
const MODEL = "ha-model";
let etcd: TestEtcd;
let workers: BareWorker[] = [];
let controllers: ControllerProc[] = [];
let gateway: DistGateway & { root: string };
// Every leader record written to etcd while the tests run, as a watcher of the key sees it.
let watchClient: Etcd3;
let leaderWatch: Watcher;
const leaderPuts: { controllerId?: string; term?: string }[] = [];

async function healthOf(controller: ControllerProc): Promise<{ leader: boolean; term: string | null }> {
  return (await fetch(`${controller.url}/healthz`)).json() as Promise<{ leader: boolean; term: string | null }>;
}

const ids = (model: { instances?: { instanceId: string }[] }) => (model.instances ?? []).map((i) => i.instanceId).sort();

beforeAll(async () => {
  etcd = await startEtcd();
  watchClient = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 2_000 });
  leaderWatch = await watchClient.watch().key("/smmf/v1/controller/leader").create();
  leaderWatch.on("put", (kv) => leaderPuts.push(JSON.parse(kv.value.toString())));
  const [a, b, first, g] = await Promise.all([startBareWorker(etcd, "ha-a"), startBareWorker(etcd, "ha-b"), startControllerProc(etcd, "ha-c1"), startApiGateway(etcd)]);
  workers = [a, b];
  gateway = g;
  await waitFor("ha-c1 to lead", async () => (await leaderRecord(etcd))?.controllerId === "ha-c1", 10_000);
  controllers = [first, await startControllerProc(etcd, "ha-c2")];
  await waitFor("both workers registered", async () => (await api(gateway.root, "GET", "/api/v1/workers")).body.data?.length === 2, 10_000);
}, 120_000);

afterAll(async () => {
  await leaderWatch?.cancel().catch(() => undefined);
  watchClient?.close();
  await killAll(gateway, ...controllers.map((c) => c.proc), ...workers.map((w) => w.proc));
  await etcd?.close();
});

describe("controller: high availability", () => {
  it("has exactly one leader; the standby does not act", async () => {
    const [c1, c2] = controllers;
    expect(await healthOf(c1)).toMatchObject({ leader: true });
    expect(await healthOf(c2)).toMatchObject({ leader: false, term: null });
    const leader = await leaderRecord(etcd);
    expect(leader).toMatchObject({ controllerId: "ha-c1", address: c1.url, version: 1 });
    // Each controller says on /metrics whether it leads.
    const leaderGauge = async (c: ControllerProc) => promValue(promSamples(await (await fetch(`${c.url}/metrics`)).text()), "smmf_controller_leader");
    expect(await leaderGauge(c1)).toBe(1);
    expect(await leaderGauge(c2)).toBe(0);
    expect(BigInt(leader!.term)).toBeGreaterThan(0n);

    const res = await api(gateway.root, "POST", "/api/v1/models", { name: MODEL, source: testSource(), replicas: 2, llamaCpp: { sequences: 1, contextSize: 128 } });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const model = await waitSettled(gateway.root, MODEL, 2);
    expect(new Set(model.instances!.map((i) => i.workerId)).size).toBe(2);
  });

  it("a standby leads within a few seconds of the leader's SIGKILL, without touching the instances, and keeps reconciling", async () => {
    const before = await waitSettled(gateway.root, MODEL, 2);
    const oldLeader = await leaderRecord(etcd);
    const [c1, c2] = controllers;
    const killedAt = Date.now();
    await c1.proc.kill();
    const leader = await waitFor("ha-c2 to lead", async () => {
      const record = await leaderRecord(etcd);
      return record?.controllerId === "ha-c2" ? record : undefined;
    }, 15_000, 50);
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThan(6_000); // lease TTL 2 s, plus etcd's expiry granularity
    expect(BigInt(leader.term)).toBeGreaterThan(BigInt(oldLeader!.term));
    await waitFor("ha-c2 to say it leads", async () => (await healthOf(c2)).leader, 5_000);

    // No duplicate or lost actions: the same two instances, nothing loading or draining.
    await sleep(1_500);
    expect(ids(await waitSettled(gateway.root, MODEL, 2))).toEqual(ids(before));

    const scaled = await api(gateway.root, "POST", `/api/v1/models/${MODEL}/scale`, { replicas: 3 });
    expect(scaled.status).toBe(200);
    const three = await waitSettled(gateway.root, MODEL, 3);
    expect(ids(three)).toEqual(expect.arrayContaining(ids(before)));
  });

  it("loses no model when every controller restarts, and the new leader carries on from the stored state", async () => {
    const before = await waitSettled(gateway.root, MODEL, 3);
    const stopped = await Promise.all(controllers.map((c) => c.proc.stop()));
    for (const exit of stopped.slice(1)) expect(exit.code).toBe(0);
    expect(await leaderRecord(etcd)).toBeUndefined(); // the leader resigned on SIGTERM
    controllers = [await startControllerProc(etcd, "ha-c3"), await startControllerProc(etcd, "ha-c4")];
    await waitFor("a new leader", async () => ["ha-c3", "ha-c4"].includes((await leaderRecord(etcd))?.controllerId ?? ""), 10_000);
    const listed = (await api(controllers[1].url, "GET", "/api/v1/models")).body.data;
    expect(listed).toEqual([expect.objectContaining({ name: MODEL, desiredReplicas: 3, managed: true })]);
    await sleep(1_500);
    expect(ids(await waitSettled(gateway.root, MODEL, 3))).toEqual(ids(before));
    const scaled = await api(gateway.root, "POST", `/api/v1/models/${MODEL}/scale`, { replicas: 1 });
    expect(scaled.status).toBe(200);
    await waitSettled(gateway.root, MODEL, 1);

    // Over the three elections (ha-c1, ha-c2 after the SIGKILL, one of ha-c3/ha-c4), a watcher of the
    // leader key saw one complete record per leader, each with a higher term.
    expect(leaderPuts.map((r) => r.controllerId)).toEqual(["ha-c1", "ha-c2", expect.stringMatching(/^ha-c[34]$/)]);
    const terms = leaderPuts.map((r) => BigInt(r.term ?? "0"));
    expect(terms[0]).toBeGreaterThan(0n);
    expect(terms[1]).toBeGreaterThan(terms[0]);
    expect(terms[2]).toBeGreaterThan(terms[1]);
  });
});
