import { Etcd3, type Watcher } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InstanceState } from "../../src/gen/smmf/v1/instance_pb.js";
import { api, getModel, startBareWorker, startControllerProc, type BareWorker, type ControllerProc } from "../helpers/controlCluster.js";
import { startCountingUpstream, type CountingUpstream } from "../helpers/countingUpstream.js";
import { killAll, waitFor } from "../helpers/distCluster.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// Scaling a relayed model (its instances load in milliseconds) to 50, to 200, down to 1 and up again: the
// registry is watched the whole time (every change), and no change may ever leave more live (loading or
// online) instances than asked for; each step converges to exactly the replicas asked for, with exactly as
// many loads ordered as instances needed.

/** A model's instances as every registry change leaves them. */
class Watched {
  readonly instances = new Map<string, string>();
  readonly everSeen = new Set<string>();
  /** The most live (not draining) instances any change left, since the last reset. */
  maxLive = 0;

  set(id: string, state: string): void {
    this.instances.set(id, state);
    this.everSeen.add(id);
    this.maxLive = Math.max(this.maxLive, this.live());
  }

  delete(id: string): void {
    this.instances.delete(id);
  }

  live(): number {
    let n = 0;
    for (const state of this.instances.values()) if (state !== "INSTANCE_STATE_DRAINING") n++;
    return n;
  }

  online(): number {
    let n = 0;
    for (const state of this.instances.values()) if (state === "INSTANCE_STATE_ONLINE") n++;
    return n;
  }
}

interface Cluster {
  /** Where the REST API is. */
  root: string;
  watched: Watched;
  /** Loads the controller has ordered (its smmf_controller_actions_total{action="load"}). */
  loadsOrdered(): Promise<number>;
}

/** Waits until the watched registry and the controller both show exactly `replicas` online instances; returns the ms since `since`. */
async function converged(cluster: Cluster, model: string, replicas: number, since: number, timeoutMs: number): Promise<number> {
  const { watched } = cluster;
  await waitFor(`${replicas} online instances of ${model} in the registry`, () => watched.instances.size === replicas && watched.online() === replicas, timeoutMs, 10);
  const elapsed = performance.now() - since;
  await waitFor(
    `the controller to show ${model} with ${replicas} ready replicas`,
    async () => {
      const m = await getModel(cluster.root, model);
      return (m?.readyReplicas ?? 0) === replicas && (m?.instances?.length ?? 0) === replicas;
    },
    timeoutMs,
    50,
  );
  return elapsed;
}

async function scale(cluster: Cluster, model: string, replicas: number): Promise<void> {
  const res = await api(cluster.root, "POST", `/api/v1/models/${model}/scale`, { replicas });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

/** The scenario, on either deployment; returns the measured convergence times. */
async function scenario(cluster: Cluster, model: string, baseUrl: string): Promise<string> {
  const { watched } = cluster;
  let t = performance.now();
  const started = await api(cluster.root, "POST", "/api/v1/models", { name: model, engine: "openai-compatible", replicas: 50, proxy: { baseUrl } });
  expect(started.status, JSON.stringify(started.body)).toBe(201);
  const to50 = await converged(cluster, model, 50, t, 60_000);
  expect(watched.maxLive).toBe(50);
  // As many loads as instances: none was ordered twice.
  expect(await cluster.loadsOrdered()).toBe(50);

  t = performance.now();
  await scale(cluster, model, 200);
  const to200 = await converged(cluster, model, 200, t, 90_000);
  expect(watched.maxLive).toBe(200);
  expect(await cluster.loadsOrdered()).toBe(200);

  // Down to 1: nothing loads on the way.
  const before = new Set(watched.everSeen);
  t = performance.now();
  await scale(cluster, model, 1);
  const to1 = await converged(cluster, model, 1, t, 90_000);
  expect([...watched.everSeen].filter((id) => !before.has(id))).toEqual([]);
  expect(await cluster.loadsOrdered()).toBe(200);

  // And up again: never above.
  watched.maxLive = watched.live();
  t = performance.now();
  await scale(cluster, model, 50);
  const back = await converged(cluster, model, 50, t, 60_000);
  expect(watched.maxLive).toBe(50);
  expect(await cluster.loadsOrdered()).toBe(249);
  return `0 → 50 in ${Math.round(to50)} ms, 50 → 200 in ${Math.round(to200)} ms, 200 → 1 in ${Math.round(to1)} ms, 1 → 50 in ${Math.round(back)} ms`;
}

async function loadsOn(url: string): Promise<number> {
  return promValue(promSamples(await (await fetch(`${url}/metrics`)).text()), "smmf_controller_actions_total", { action: "load" });
}

describe("controller: scaling without overshoot, embedded (smmf serve: the worker answers a load before its next status)", () => {
  let server: TestServer;
  let upstream: CountingUpstream;
  let unsubscribe: () => void;
  const watched = new Watched();

  beforeAll(async () => {
    upstream = await startCountingUpstream();
    server = await startTestServer({ models: [] });
    const registry = server.embedded.registry;
    // Every change of the in-memory registry, as it happens.
    unsubscribe = registry.subscribe(() => {
      const now = new Map(registry.snapshot().filter((i) => i.model === "sc-embedded").map((i) => [i.instanceId, `INSTANCE_STATE_${InstanceState[i.state]}`]));
      for (const id of [...watched.instances.keys()]) if (!now.has(id)) watched.delete(id);
      for (const [id, state] of now) watched.set(id, state);
    });
  }, 60_000);

  afterAll(async () => {
    unsubscribe?.();
    await server?.close();
    await upstream?.close();
  });

  it("scales a relayed model 0 → 50 → 200 → 1 → 50: live instances never exceed the target and converge to exactly it", async () => {
    const times = await scenario({ root: server.url, watched, loadsOrdered: () => loadsOn(server.url) }, "sc-embedded", upstream.url);
    console.log(`embedded: ${times}`);
  }, 180_000);
});

describe("controller: scaling without overshoot, distributed (etcd, two workers)", () => {
  const MODEL = "sc-relay";
  let etcd: TestEtcd;
  let workers: BareWorker[] = [];
  let controller: ControllerProc;
  let upstream: CountingUpstream;
  let watchClient: Etcd3;
  let watcher: Watcher;
  const watched = new Watched();

  beforeAll(async () => {
    etcd = await startEtcd();
    upstream = await startCountingUpstream();
    watchClient = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 2_000 });
    // Every change of the model's instance records in etcd, in revision order.
    watcher = await watchClient.watch().prefix(`/smmf/v1/instances/${MODEL}/`).create();
    watcher.on("put", (kv) => watched.set(kv.key.toString(), (JSON.parse(kv.value.toString()) as { state: string }).state));
    watcher.on("delete", (kv) => watched.delete(kv.key.toString()));
    const [a, b, c] = await Promise.all([startBareWorker(etcd, "sc-a"), startBareWorker(etcd, "sc-b"), startControllerProc(etcd, "sc-controller")]);
    workers = [a, b];
    controller = c;
    await waitFor("both workers registered", async () => (await api(controller.url, "GET", "/api/v1/workers")).body.data?.length === 2, 15_000);
  }, 120_000);

  afterAll(async () => {
    await watcher?.cancel().catch(() => undefined);
    watchClient?.close();
    await killAll(controller?.proc, ...workers.map((w) => w.proc));
    await upstream?.close();
    await etcd?.close();
  });

  it("scales a relayed model 0 → 50 → 200 → 1 → 50 over two workers: never above the target, exactly it in the end, spread evenly", async () => {
    const times = await scenario({ root: controller.url, watched, loadsOrdered: () => loadsOn(controller.url) }, MODEL, upstream.url);
    const perWorker = (await api(controller.url, "GET", "/api/v1/workers")).body.data.map((w: { instances?: unknown[] }) => w.instances?.length ?? 0);
    expect(perWorker).toEqual([25, 25]);
    console.log(`distributed: ${times}`);
  }, 180_000);
});
