import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startApiGateway, startBareWorker, startControllerProc, testSource, waitSettled, type BareWorker, type ControllerProc, type InstanceView } from "../helpers/controlCluster.js";
import { killAll, sleep, waitFor, type DistGateway } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// Rolling restart and parameter update of a 2-replica model over two workers, under continuous load.
const MODEL = "roll-model";
let etcd: TestEtcd;
let workers: BareWorker[];
let controller: ControllerProc;
let gateway: DistGateway & { root: string };

beforeAll(async () => {
  etcd = await startEtcd();
  let a: BareWorker, b: BareWorker;
  [a, b, controller, gateway] = await Promise.all([startBareWorker(etcd, "roll-a"), startBareWorker(etcd, "roll-b"), startControllerProc(etcd, "roll-controller"), startApiGateway(etcd)]);
  workers = [a, b];
  await waitFor("both workers registered", async () => (await api(gateway.root, "GET", "/api/v1/workers")).body.data?.length === 2, 10_000);
  const res = await api(gateway.root, "POST", "/api/v1/models", { name: MODEL, source: testSource(), replicas: 2, llamaCpp: { sequences: 2, contextSize: 256 } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  await waitSettled(gateway.root, MODEL, 2);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, controller.proc, ...workers.map((w) => w.proc));
  await etcd?.close();
});

interface LoadRun {
  ok: number;
  failures: string[];
  stop(): Promise<void>;
}

/** Three clients sending short completions back to back until stopped. */
function continuousLoad(): LoadRun {
  const openai = new OpenAI({ baseURL: gateway.baseURL, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
  let running = true;
  const run: LoadRun = { ok: 0, failures: [], stop: async () => undefined };
  const lane = async (n: number) => {
    while (running) {
      try {
        const stream = n === 0;
        if (stream) {
          let chunks = 0;
          for await (const chunk of await openai.completions.create({ model: MODEL, prompt: "Once", max_tokens: 12, stream: true })) if (chunk.choices[0] && !chunk.choices[0].finish_reason) chunks++;
          if (chunks !== 12) throw new Error(`stream ended after ${chunks} of 12 tokens`);
        } else {
          const r = await openai.completions.create({ model: MODEL, prompt: "Once upon", max_tokens: 12 });
          if (r.usage?.completion_tokens !== 12) throw new Error(`got ${r.usage?.completion_tokens} tokens`);
        }
        run.ok++;
      } catch (err) {
        run.failures.push((err as Error).message);
      }
    }
  };
  const lanes = [0, 1, 2].map(lane);
  run.stop = async () => {
    running = false;
    await Promise.all(lanes);
  };
  return run;
}

/** Polls the instances of the model every 40 ms, keeping each distinct picture. */
function recordInstances(): { pictures: InstanceView[][]; stop(): Promise<void> } {
  const pictures: InstanceView[][] = [];
  let running = true;
  const loop = (async () => {
    let last = "";
    while (running) {
      const data = (await api(gateway.root, "GET", "/api/v1/instances")).body.data as InstanceView[];
      const mine = data.filter((i) => i.model === MODEL).sort((x, y) => x.instanceId.localeCompare(y.instanceId));
      const key = JSON.stringify(mine.map((i) => [i.instanceId, i.state]));
      if (key !== last) pictures.push(mine);
      last = key;
      await sleep(40);
    }
  })();
  return { pictures, stop: async () => ((running = false), await loop) };
}

/** Waits until the load has served a few requests and the recorder has its first picture. */
async function untilUnderWay(load: LoadRun, recorder: { pictures: InstanceView[][] }): Promise<void> {
  await waitFor("the load under way and the first picture taken", () => load.ok >= 3 && recorder.pictures.length > 0, 30_000, 20);
}

/** Waits until the recorder has pictured `settled` (the model's instances once the rollout is over) and the load has served a few requests more. */
async function untilServedAfter(load: LoadRun, recorder: { pictures: InstanceView[][] }, settled: InstanceView[]): Promise<void> {
  const ids = settled.map((i) => i.instanceId).sort().join();
  const okAtSettled = load.ok;
  await waitFor(
    "the settled instances pictured and a few requests served since",
    () => {
      const last = recorder.pictures.at(-1) ?? [];
      return load.ok >= okAtSettled + 3 && last.map((i) => i.instanceId).sort().join() === ids && last.every((i) => i.state === "INSTANCE_STATE_ONLINE");
    },
    30_000,
    20,
  );
}

/** Checks a recorded rollout: always 2 online, at most one loading at a time, old ids replaced one by one. */
function checkRollout(pictures: InstanceView[][], oldIds: string[]): string[] {
  const online = (p: InstanceView[]) => p.filter((i) => i.state === "INSTANCE_STATE_ONLINE").length;
  for (const p of pictures) {
    expect(online(p), `online instances in ${JSON.stringify(p.map((i) => [i.instanceId, i.state]))}`).toBeGreaterThanOrEqual(2);
    expect(p.filter((i) => i.state === "INSTANCE_STATE_LOADING").length).toBeLessThanOrEqual(1);
    expect(p.length).toBeLessThanOrEqual(4);
  }
  // Old ids leave one at a time: the count of old ids still present never drops by two between pictures.
  const oldCounts = pictures.map((p) => p.filter((i) => oldIds.includes(i.instanceId)).length);
  for (let k = 1; k < oldCounts.length; k++) expect(oldCounts[k - 1] - oldCounts[k]).toBeLessThanOrEqual(1);
  const last = pictures.at(-1)!;
  expect(last.some((i) => oldIds.includes(i.instanceId))).toBe(false);
  return last.map((i) => i.instanceId);
}

describe("controller: rolling restart and update", () => {
  it("restarts a model one instance at a time under continuous load, with zero failed requests", async () => {
    const before = await waitSettled(gateway.root, MODEL, 2);
    const oldIds = before.instances!.map((i) => i.instanceId);
    const recorder = recordInstances();
    const load = continuousLoad();
    await untilUnderWay(load, recorder);
    const res = await api(gateway.root, "POST", `/api/v1/models/${MODEL}/restart`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(BigInt(res.body.generation)).toBeGreaterThan(BigInt(before.generation!));
    const after = await waitSettled(gateway.root, MODEL, 2, 60_000);
    await untilServedAfter(load, recorder, after.instances!);
    await load.stop();
    await recorder.stop();
    expect(load.failures, load.failures.slice(0, 5).join("\n")).toEqual([]);
    expect(load.ok).toBeGreaterThan(10);
    const newIds = checkRollout(recorder.pictures, oldIds);
    expect(newIds.sort()).toEqual(after.instances!.map((i) => i.instanceId).sort());
    expect(new Set(after.instances!.map((i) => i.workerId)).size).toBe(2);
  });

  it("updates a model's parameters one instance at a time under continuous load, with zero failed requests", async () => {
    const before = await waitSettled(gateway.root, MODEL, 2);
    const oldIds = before.instances!.map((i) => i.instanceId);
    const recorder = recordInstances();
    const load = continuousLoad();
    await untilUnderWay(load, recorder);
    const res = await api(gateway.root, "PUT", `/api/v1/models/${MODEL}`, { source: testSource(), replicas: 2, llamaCpp: { sequences: 2, contextSize: 128 } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const after = await waitSettled(gateway.root, MODEL, 2, 60_000);
    await untilServedAfter(load, recorder, after.instances!);
    await load.stop();
    await recorder.stop();
    expect(load.failures, load.failures.slice(0, 5).join("\n")).toEqual([]);
    checkRollout(recorder.pictures, oldIds);
    expect(after.instances!.map((i) => i.contextSize)).toEqual([128, 128]);
    expect(after.spec?.llamaCpp?.contextSize).toBe(128);
  });

  it("scales without replacing: up adds instances, down drains the surplus, and the generation stays", async () => {
    const before = await waitSettled(gateway.root, MODEL, 2);
    const up = await api(gateway.root, "POST", `/api/v1/models/${MODEL}/scale`, { replicas: 3 });
    expect(up.status, JSON.stringify(up.body)).toBe(200);
    const three = await waitSettled(gateway.root, MODEL, 3);
    expect(three.generation).toBe(before.generation);
    expect(three.instances!.map((i) => i.instanceId)).toEqual(expect.arrayContaining(before.instances!.map((i) => i.instanceId)));
    const down = await api(gateway.root, "POST", `/api/v1/models/${MODEL}/scale`, { replicas: 1 });
    expect(down.status).toBe(200);
    const one = await waitSettled(gateway.root, MODEL, 1);
    expect(three.instances!.map((i) => i.instanceId)).toContain(one.instances![0].instanceId);
  });
});
