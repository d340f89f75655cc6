import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, runCli, startApiGateway, startBareWorker, startControllerProc, testSource, waitSettled, type BareWorker, type ControllerProc } from "../helpers/controlCluster.js";
import { killAll, waitFor, type DistGateway } from "../helpers/distCluster.js";
import { llamaServerChildren, processAlive, requireLlamaServer } from "../helpers/llamaServerBinary.js";
import { promSamples, promValue } from "../helpers/promSamples.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// The llama.cpp-server engine in the distributed mode: a worker advertises it only when llama-server is built
// there; the controller places its models on such workers only, and the instance registers, serves, counts in
// the metrics and stops (its llama-server with it) like any other.
let etcd: TestEtcd;
let lacking: BareWorker;
let having: BareWorker | undefined;
let controller: ControllerProc;
let gateway: DistGateway & { root: string };

beforeAll(async () => {
  requireLlamaServer();
  etcd = await startEtcd();
  [lacking, controller, gateway] = await Promise.all([
    startBareWorker(etcd, "ls-lacking", { env: { SMMF_LLAMA_SERVER: "/nonexistent/llama-server" } }),
    startControllerProc(etcd, "ls-controller"),
    startApiGateway(etcd),
  ]);
  await waitFor("the worker in the gateway's worker list", async () => (await api(gateway.root, "GET", "/api/v1/workers")).body.data?.length === 1, 10_000);
}, 120_000);

afterAll(async () => {
  await killAll(gateway, controller.proc, lacking?.proc, having?.proc);
  await etcd?.close();
});

describe("llama.cpp-server engine, placed by the controller", () => {
  it("is refused while no worker has llama-server, saying how to get it", async () => {
    const workers = (await api(gateway.root, "GET", "/api/v1/workers")).body.data;
    expect(workers[0].worker.engines).toContain("llama.cpp");
    expect(workers[0].worker.engines).not.toContain("llama.cpp-server");
    const res = await api(gateway.root, "POST", "/api/v1/models", { name: "ls-model", engine: "llama.cpp-server", source: testSource(), replicas: 1 });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain("no worker runs the engine llama.cpp-server (it needs llama.cpp's server built on the worker: smmf engine build llama.cpp-server)");
  });

  it("is placed on the worker that has llama-server, serves through the gateway, and stops with its process", async () => {
    having = await startBareWorker(etcd, "ls-having");
    await waitFor("both workers in the gateway's worker list", async () => (await api(gateway.root, "GET", "/api/v1/workers")).body.data?.length === 2, 10_000);
    const started = await runCli(["model", "start", "ls-model", "--engine", "llama.cpp-server", "--source", testSource(), "--sequences", "2", "--wait", `--url=${gateway.root}`]);
    expect(started.code, started.stderr).toBe(0);
    const model = await waitSettled(gateway.root, "ls-model", 1);
    expect(model.instances![0]).toMatchObject({ workerId: "ls-having", state: "INSTANCE_STATE_ONLINE" });
    expect(model.instances![0].contextSize).toBeGreaterThan(0);
    // One instance, one llama-server (a load the controller retried under load is settled by then too).
    await waitFor("one llama-server on the worker", async () => llamaServerChildren(having!.proc.pid).length === 1, 15_000);
    expect(llamaServerChildren(lacking.proc.pid)).toEqual([]);

    const openai = new OpenAI({ baseURL: gateway.baseURL, apiKey: "unused", maxRetries: 0 });
    const answer = await openai.chat.completions.create({ model: "ls-model", messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 12, temperature: 0 });
    expect(answer.choices[0].message.content!.length).toBeGreaterThan(0);
    expect(answer.usage?.completion_tokens).toBe(12);
    const metrics = promSamples(await (await fetch(`${having.address}/metrics`)).text());
    expect(promValue(metrics, "smmf_worker_generations_total", { model: "ls-model" })).toBeGreaterThanOrEqual(1);

    const stopped = await runCli(["model", "stop", "ls-model", `--url=${gateway.root}`]);
    expect(stopped.code, stopped.stderr).toBe(0);
    await waitFor("its llama-server to exit", async () => llamaServerChildren(having!.proc.pid).length === 0, 15_000);
  });

  it("takes its llama-server with it when the worker is killed (SIGKILL: no chance to stop it)", async () => {
    const started = await runCli(["model", "start", "ls-again", "--engine", "llama.cpp-server", "--source", testSource(), "--wait", `--url=${gateway.root}`]);
    expect(started.code, started.stderr).toBe(0);
    const [pid] = llamaServerChildren(having!.proc.pid);
    expect(processAlive(pid)).toBe(true);
    await having!.proc.kill();
    // The kernel signals it when its parent dies (setpriv --pdeathsig): no orphan holds the model's memory.
    await waitFor("the orphaned llama-server to exit", async () => !processAlive(pid), 15_000);
  });
});
