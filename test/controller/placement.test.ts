import { createReadStream } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, getModel, startApiGateway, startBareWorker, startControllerProc, testSource, waitSettled, type BareWorker, type ControllerProc } from "../helpers/controlCluster.js";
import { killAll, waitFor, type DistGateway } from "../helpers/distCluster.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { testModelPath } from "../helpers/testModel.js";

// Two bare workers (labelled zone=a and zone=b, 64 MiB offered each), one controller, one gateway.
let etcd: TestEtcd;
let workerA: BareWorker;
let workerB: BareWorker;
let controller: ControllerProc;
let gateway: DistGateway & { root: string };

const SPEC = { source: "", replicas: 2, llamaCpp: { sequences: 2, contextSize: 256 } };

async function modelKeys(): Promise<string> {
  return etcd.etcdctl("get", "--prefix", "--keys-only", "/smmf/v1/models/");
}

beforeAll(async () => {
  SPEC.source = testSource();
  etcd = await startEtcd();
  [workerA, workerB, controller, gateway] = await Promise.all([
    // The http(s)-source test downloads from a file server on 127.0.0.1: the operator allows that host, and private addresses.
    startBareWorker(etcd, "pl-a", { labels: ["zone=a"], maxMemoryMb: 64, sourceHosts: ["127.0.0.1"], sourceAllowPrivate: true }),
    startBareWorker(etcd, "pl-b", { labels: ["zone=b"], maxMemoryMb: 64, sourceHosts: ["127.0.0.1"], sourceAllowPrivate: true }),
    startControllerProc(etcd, "pl-controller"),
    startApiGateway(etcd),
  ]);
  await waitFor("both workers in the gateway's worker list", async () => (await api(gateway.root, "GET", "/api/v1/workers")).body.data?.length === 2, 10_000);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, controller.proc, workerA?.proc, workerB?.proc);
  await etcd?.close();
});

describe("controller: placement and serving", () => {
  it("starts a model with 2 replicas over the two workers, and both instances serve requests through the gateway", async () => {
    const started = await api(gateway.root, "POST", "/api/v1/models", { name: "pl-model", ...SPEC });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    expect(started.body.spec).toMatchObject({ name: "pl-model", replicas: 2, engine: "llama.cpp" });
    // The desired state is in etcd, readable with etcdctl.
    const stored = JSON.parse(await etcd.etcdctl("get", "/smmf/v1/models/pl-model", "--print-value-only"));
    expect(stored).toMatchObject({ version: 1, spec: { name: "pl-model", replicas: 2, source: SPEC.source } });

    const model = await waitSettled(gateway.root, "pl-model", 2);
    expect(new Set(model.instances!.map((i) => i.workerId))).toEqual(new Set(["pl-a", "pl-b"]));
    expect(model.readyReplicas).toBe(2);

    const openai = new OpenAI({ baseURL: gateway.baseURL, apiKey: "unused", maxRetries: 0 });
    const generations = async (w: BareWorker) => promValue(promSamples(await (await fetch(`${w.address}/metrics`)).text()), "smmf_worker_generations_total", { model: "pl-model" });
    await waitFor("the gateway to route to both instances", async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const { response } = await openai.completions.create({ model: "pl-model", prompt: `Once ${i}`, max_tokens: 2 }).withResponse(); // new prompts: placed evenly (the default prefix policy)
        seen.add(response.headers.get("x-smmf-instance") ?? "");
      }
      return seen.size === 2 ? seen : undefined;
    }, 15_000);
    // Each worker counts the generations it ran on /metrics; the controller counts its loads.
    expect(await generations(workerA)).toBeGreaterThan(0);
    expect(await generations(workerB)).toBeGreaterThan(0);
    const controllerMetrics = promSamples(await (await fetch(`${controller.url}/metrics`)).text());
    expect(promValue(controllerMetrics, "smmf_controller_actions_total", { action: "load" })).toBe(2);
    expect(promValue(controllerMetrics, "smmf_controller_leader")).toBe(1);
    expect(promValue(controllerMetrics, "smmf_etcd_up")).toBe(1);
  });

  it("places by labels: a model asking for zone=a lands only on the zone=a worker", async () => {
    const started = await api(gateway.root, "POST", "/api/v1/models", { name: "pl-zoned", ...SPEC, placement: { zone: "a" } });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const model = await waitSettled(gateway.root, "pl-zoned", 2);
    expect(model.instances!.map((i) => i.workerId)).toEqual(["pl-a", "pl-a"]);
    const stopped = await api(gateway.root, "DELETE", "/api/v1/models/pl-zoned");
    expect(stopped.status).toBe(200);
    await waitFor("pl-zoned's instances to go", async () => (await getModel(gateway.root, "pl-zoned")) === undefined, 15_000);
  });

  it("refuses bad requests with a clear error and the right status, leaving the desired state unchanged", async () => {
    const before = { keys: await modelKeys(), models: (await api(gateway.root, "GET", "/api/v1/models")).body };
    const cases: [string, string, unknown, number, string, string | null, RegExp][] = [
      ["duplicate start", "/api/v1/models", { name: "pl-model", ...SPEC }, 409, "already_exists", "name", /already started/],
      ["bad name", "/api/v1/models", { name: "bad name!", ...SPEC }, 400, "invalid_argument", "name", /invalid/],
      ["too many replicas", "/api/v1/models", { name: "pl-x", ...SPEC, replicas: 5000 }, 400, "invalid_argument", "replicas", /at most 1000/],
      ["bad chat template", "/api/v1/models", { name: "pl-x", ...SPEC, llamaCpp: { chatTemplate: "chatml" } }, 400, "invalid_argument", "chat_template", /auto/],
      ["unknown engine", "/api/v1/models", { name: "pl-x", ...SPEC, engine: "tensorrt" }, 400, "invalid_argument", "engine", /unknown engine/],
      ["missing file", "/api/v1/models", { name: "pl-x", ...SPEC, source: "missing.gguf" }, 400, "failed_precondition", "source", /'source' is not an allowed model source on worker/],
      ["no worker with the labels", "/api/v1/models", { name: "pl-x", ...SPEC, placement: { gpu: "h100" } }, 400, "failed_precondition", null, /no worker has the labels gpu=h100/],
      ["no room", "/api/v1/models", { name: "pl-x", ...SPEC, replicas: 40 }, 400, "failed_precondition", null, /no worker has room: an instance needs about \d+ MiB/],
      ["unknown field", "/api/v1/models", { name: "pl-x", ...SPEC, gpus: 3 }, 400, "invalid_argument", null, /gpus/],
      ["scale an unknown model", "/api/v1/models/nope/scale", { replicas: 3 }, 404, "model_not_found", "name", /nope/],
      ["restart an unknown model", "/api/v1/models/nope/restart", undefined, 404, "model_not_found", "name", /nope/],
      ["bad replica count", "/api/v1/models/pl-model/scale", { replicas: -1 }, 400, "invalid_argument", "replicas", /replicas/],
      ["scale beyond the room", "/api/v1/models/pl-model/scale", { replicas: 40 }, 400, "failed_precondition", null, /no worker has room/],
      ["an unknown instance", "/api/v1/instances/nope-123/offline", undefined, 404, "not_found", "instance_id", /nope-123/],
    ];
    for (const [what, path, body, status, code, param, message] of cases) {
      const res = await api(gateway.root, "POST", path, body);
      expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(status);
      expect(res.body.error, what).toMatchObject({ code, param });
      expect(res.body.error.message, what).toMatch(message);
    }
    const stopUnknown = await api(gateway.root, "DELETE", "/api/v1/models/nope");
    expect(stopUnknown.status).toBe(404);
    expect(stopUnknown.body.error.code).toBe("model_not_found");
    expect(await modelKeys()).toBe(before.keys);
    const after = (await api(gateway.root, "GET", "/api/v1/models")).body;
    expect(after.data.map((m: { name: string; desiredReplicas: number }) => [m.name, m.desiredReplicas])).toEqual(
      before.models.data.map((m: { name: string; desiredReplicas: number }) => [m.name, m.desiredReplicas]),
    );
  });

  it("re-places the replica of a worker killed with SIGKILL on the other worker, back to 2 ready replicas", async () => {
    const started = Date.now();
    await workerB.proc.kill();
    const model = await waitFor(
      "pl-model to be back to 2 online instances, both on pl-a",
      async () => {
        const m = await getModel(gateway.root, "pl-model");
        const instances = m?.instances ?? [];
        return instances.length === 2 && instances.every((i) => i.workerId === "pl-a" && i.state === "INSTANCE_STATE_ONLINE") ? m : undefined;
      },
      20_000,
      100,
    );
    expect(model.readyReplicas).toBe(2);
    // Worker lease TTL 2 s: the dead worker's instance is replaced within a few seconds.
    expect(Date.now() - started).toBeLessThan(15_000);
    const workers = (await api(gateway.root, "GET", "/api/v1/workers")).body.data.map((w: { worker: { workerId: string } }) => w.worker.workerId);
    expect(workers).toEqual(["pl-a"]);
  });

  it("starts a model from an http(s) URL: the worker downloads the GGUF file once and serves it", async () => {
    let downloads = 0;
    const files = createServer((req, res) => {
      if (req.url !== "/models/stories260K.gguf") {
        res.writeHead(404);
        return void res.end();
      }
      downloads++;
      res.writeHead(200, { "content-type": "application/octet-stream" });
      createReadStream(testModelPath()).pipe(res);
    });
    await new Promise<void>((r) => files.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(files.address() as AddressInfo).port}/models`;
    try {
      const missing = await api(gateway.root, "POST", "/api/v1/models", { name: "pl-url", ...SPEC, replicas: 1, source: `${base}/nope.gguf` });
      expect(missing.status).toBe(400);
      expect(missing.body.error).toMatchObject({ code: "failed_precondition", param: "source" });
      expect(missing.body.error.message).toMatch(/cannot download .*nope\.gguf: HTTP 404/);
      const started = await api(gateway.root, "POST", "/api/v1/models", { name: "pl-url", ...SPEC, replicas: 1, source: `${base}/stories260K.gguf` });
      expect(started.status, JSON.stringify(started.body)).toBe(201);
      await waitSettled(gateway.root, "pl-url", 1);
      const openai = new OpenAI({ baseURL: gateway.baseURL, apiKey: "unused", maxRetries: 0 });
      expect((await openai.completions.create({ model: "pl-url", prompt: "Once", max_tokens: 3 })).usage?.completion_tokens).toBe(3);
      // Estimated and loaded from the worker's cache: one download (two at most, when the estimate and the load fell on different workers).
      expect(downloads).toBeGreaterThanOrEqual(1);
      expect(downloads).toBeLessThanOrEqual(2);
      expect((await api(gateway.root, "DELETE", "/api/v1/models/pl-url")).status).toBe(200);
    } finally {
      files.close();
    }
  });

  it("stops a model: its instances go away, then requests for it get 404", async () => {
    const res = await api(gateway.root, "DELETE", "/api/v1/models/pl-model");
    expect(res.status).toBe(200);
    expect(await modelKeys()).not.toContain("pl-model");
    await waitFor("pl-model's instances to go", async () => (await api(gateway.root, "GET", "/api/v1/instances")).body.data.every((i: { model: string }) => i.model !== "pl-model"), 15_000);
    const openai = new OpenAI({ baseURL: gateway.baseURL, apiKey: "unused", maxRetries: 0 });
    const err = await openai.completions.create({ model: "pl-model", prompt: "Once", max_tokens: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found");
    expect((await api(gateway.root, "GET", "/api/v1/models/pl-model")).status).toBe(404);
  });
});
