import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSse } from "../../src/cli/readSse.js";
import { api, startApiGateway, startBareWorker, startControllerProc, testSource, waitSettled, type BareWorker, type ControllerProc } from "../helpers/controlCluster.js";
import { killAll, waitFor, type DistGateway } from "../helpers/distCluster.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// README, Operating models: "A failed load or estimate backs off (1 s doubling to 30 s) and avoids that worker
// for 30 s; the reason is written to /smmf/v1/status/<name>"; and /readyz on a gateway: "200 when at least one
// model instance is online, else 503".
//
// A real failure on a real worker: fl-a hosts at most one instance (--max-instances-per-worker 1, through its
// environment) and already hosts one, of a model pinned to it, so it refuses any further load; the controller
// does not know that limit and, fl-a offering the most memory, tries it first. fl-b has room.
// (The exact back-off sequence is checked on a fake clock in src/controller/Reconciler.backoff.test.ts.)
let etcd: TestEtcd;
let workerA: BareWorker;
let workerB: BareWorker;
let controller: ControllerProc;
let gateway: DistGateway & { root: string };

const SMALL = { sequences: 1, contextSize: 128 };

interface EventJson {
  type: string;
  model?: string;
  instanceId?: string;
  workerId?: string;
  message?: string;
}

/** The gateway's event stream of one model (GET /api/v1/events?model=), collected as it comes; open once this resolves. */
async function watchEvents(model: string): Promise<{ events: (EventJson & { seenAt: number })[]; close(): void }> {
  const abort = new AbortController();
  const res = await fetch(`${gateway.root}/api/v1/events?model=${encodeURIComponent(model)}`, { signal: abort.signal });
  expect(res.status).toBe(200);
  const events: (EventJson & { seenAt: number })[] = [];
  void (async () => {
    for await (const data of readSse(res.body!)) events.push({ ...(JSON.parse(data) as EventJson), seenAt: Date.now() });
  })().catch(() => undefined);
  return { events, close: () => abort.abort() };
}

async function controllerActions(action: string): Promise<number> {
  return promValue(promSamples(await (await fetch(`${controller.url}/metrics`)).text()), "smmf_controller_actions_total", { action });
}

async function readyz(): Promise<number> {
  return (await fetch(`${gateway.root}/readyz`)).status;
}

beforeAll(async () => {
  etcd = await startEtcd();
  [workerA, workerB, controller, gateway] = await Promise.all([
    startBareWorker(etcd, "fl-a", { labels: ["zone=a"], maxMemoryMb: 512, env: { SMMF_MAX_INSTANCES_PER_WORKER: "1" } }),
    startBareWorker(etcd, "fl-b", { labels: ["zone=b"], maxMemoryMb: 256 }),
    startControllerProc(etcd, "fl-controller"),
    startApiGateway(etcd),
  ]);
  await waitFor("both workers in the gateway's worker list", async () => (await api(gateway.root, "GET", "/api/v1/workers")).body.data?.length === 2, 15_000);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, controller?.proc, workerA?.proc, workerB?.proc);
  await etcd?.close();
});

describe("controller: a failed load", () => {
  it("a gateway is not ready (503) without an online instance: none yet, or its only one set offline", async () => {
    expect(await readyz()).toBe(503);
    const started = await api(gateway.root, "POST", "/api/v1/models", { name: "fl-pinned", source: testSource(), replicas: 1, llamaCpp: SMALL, placement: { zone: "a" } });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const pinned = await waitSettled(gateway.root, "fl-pinned", 1);
    expect(pinned.instances![0].workerId).toBe("fl-a");
    await waitFor("/readyz 200 with the instance online", async () => (await readyz()) === 200, 10_000);

    const id = pinned.instances![0].instanceId;
    const offline = await api(gateway.root, "POST", `/api/v1/instances/${id}/offline`);
    expect(offline.status, JSON.stringify(offline.body)).toBe(200);
    await waitFor("/readyz 503 with the only instance offline", async () => (await readyz()) === 503, 10_000);
    const online = await api(gateway.root, "POST", `/api/v1/instances/${id}/online`);
    expect(online.status, JSON.stringify(online.body)).toBe(200);
    await waitFor("/readyz 200 with the instance online again", async () => (await readyz()) === 200, 10_000);
  });

  it("places the instance whose load failed on fl-a on fl-b, says why, and sends fl-a no load of it for 30 s (not for a scale-up either)", async () => {
    expect(await controllerActions("load_failed")).toBe(0);
    const watch = await watchEvents("fl-model");
    try {
      const sentAt = Date.now();
      const started = await api(gateway.root, "POST", "/api/v1/models", { name: "fl-model", source: testSource(), replicas: 1, llamaCpp: SMALL });
      expect(started.status, JSON.stringify(started.body)).toBe(201);

      // The reason, as the controller wrote it to the model's status: every gateway tells it as a warning.
      const warning = await waitFor("a warning that the load on fl-a failed", () => watch.events.find((e) => e.type === "EVENT_TYPE_WARNING" && /loading an instance on worker fl-a failed/.test(e.message ?? "")), 30_000);
      expect(warning.message).toMatch(/worker fl-a hosts 1 instances, its most \(maxInstancesPerWorker 1\)/);

      const first = await waitSettled(gateway.root, "fl-model", 1);
      expect(first.instances![0].workerId).toBe("fl-b");
      const added = watch.events.filter((e) => e.type === "EVENT_TYPE_INSTANCE_ADDED");
      expect(added.map((e) => e.workerId)).toEqual(["fl-b"]);
      expect(watch.events.indexOf(added[0])).toBeGreaterThan(watch.events.indexOf(warning));
      expect(await controllerActions("load_failed")).toBe(1);

      // fl-a holds none of fl-model and has the most memory: a scale-up would go there, were it not avoided.
      const scaled = await api(gateway.root, "POST", "/api/v1/models/fl-model/scale", { replicas: 2 });
      expect(scaled.status, JSON.stringify(scaled.body)).toBe(200);
      const second = await waitSettled(gateway.root, "fl-model", 2);
      const settledAt = Date.now();
      expect(second.instances!.map((i) => i.workerId)).toEqual(["fl-b", "fl-b"]);
      expect(await controllerActions("load_failed")).toBe(1);
      expect(watch.events.filter((e) => e.type === "EVENT_TYPE_WARNING")).toHaveLength(1);
      // The load failed after the start was sent, so everything above happened within its 30 s.
      expect(settledAt - sentAt, "this run took too long to show the 30 s avoidance").toBeLessThan(30_000);
    } finally {
      watch.close();
    }
  });

  it("a gateway is not ready (503) again once every model is stopped", async () => {
    expect(await readyz()).toBe(200);
    for (const name of ["fl-model", "fl-pinned"]) expect((await api(gateway.root, "DELETE", `/api/v1/models/${name}`)).status).toBe(200);
    await waitFor("/readyz 503 with every instance gone", async () => (await readyz()) === 503, 30_000);
    const left = (await api(gateway.root, "GET", "/api/v1/instances")).body.data as { state: string }[];
    expect(left.filter((i) => i.state === "INSTANCE_STATE_ONLINE")).toEqual([]);
  });
});
