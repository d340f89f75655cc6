import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startSmmf } from "../helpers/childProcess.js";
import { api, runCli, startBareWorker, type BareWorker, type ControllerProc } from "../helpers/controlCluster.js";
import { startCountingUpstream, type CountingUpstream } from "../helpers/countingUpstream.js";
import { killAll, waitFor } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";

// The controller's quotas (maxModels, maxReplicas): a change that would pass one is refused with
// failed_precondition (HTTP 400, CLI exit 4) saying which quota, and the desired state stays as it was.

let upstream: CountingUpstream;

beforeAll(async () => {
  upstream = await startCountingUpstream();
});

afterAll(async () => {
  await upstream?.close();
});

const relayed = (name: string, replicas: number) => ({ name, engine: "openai-compatible", replicas, proxy: { baseUrl: upstream.url } });

async function desired(root: string): Promise<[string, number][]> {
  const models = (await api(root, "GET", "/api/v1/models")).body.data as { name: string; desiredReplicas?: number; managed?: boolean }[];
  return models.filter((m) => m.managed).map((m) => [m.name, m.desiredReplicas ?? 0]);
}

function expectRefused(res: { status: number; body: { error?: { code: string; param: string | null; message: string } } }, param: string | null, message: RegExp): void {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body.error).toMatchObject({ code: "failed_precondition", param });
  expect(res.body.error!.message).toMatch(message);
}

describe("controller quotas: smmf controller --max-models 2 --max-replicas 3", () => {
  let etcd: TestEtcd;
  let worker: BareWorker;
  let controller: ControllerProc;

  beforeAll(async () => {
    etcd = await startEtcd();
    const port = await freePort();
    const [w, proc] = await Promise.all([
      startBareWorker(etcd, "q-w"),
      startSmmf(["controller", "--etcd", etcd.endpoints, "--port", String(port), "--controller-id", "q-controller", "--lease-ttl", "2", "--log-level", "warn", "--max-models", "2", "--max-replicas", "3"], { timeoutMs: 60_000 }),
    ]);
    const m = /SMMF controller (\S+) serving at (\S+)/.exec(proc.stdout());
    if (!m) throw new Error(`unexpected controller output: ${proc.stdout()}`);
    worker = w;
    controller = { proc, id: m[1], url: m[2] };
    await waitFor("the worker registered", async () => (await api(controller.url, "GET", "/api/v1/workers")).body.data?.length === 1, 15_000);
  }, 120_000);

  afterAll(async () => {
    await killAll(controller?.proc, worker?.proc);
    await etcd?.close();
  });

  it("refuses a third model and more than 3 replicas (start, scale, update), through REST and the CLI", async () => {
    const root = controller.url;
    expect((await api(root, "POST", "/api/v1/models", relayed("q1", 3))).status).toBe(201);
    expectRefused(await api(root, "POST", "/api/v1/models", relayed("q2", 4)), "replicas", /'replicas' 4 is above the quota of 3 replicas per model \(maxReplicas, --max-replicas\)/);
    expect((await api(root, "POST", "/api/v1/models", relayed("q2", 1))).status).toBe(201);
    expectRefused(await api(root, "POST", "/api/v1/models", relayed("q3", 1)), null, /cannot start 'q3': the quota of 2 models \(maxModels, --max-models\) is used up \(2 started\); stop one first/);
    expectRefused(await api(root, "POST", "/api/v1/models/q1/scale", { replicas: 4 }), "replicas", /above the quota of 3/);
    expectRefused(await api(root, "PUT", "/api/v1/models/q2", relayed("q2", 5)), "replicas", /'replicas' 5 is above the quota of 3/);

    const cliStart = await runCli(["model", "start", "q3", "--engine", "openai-compatible", "--base-url", upstream.url, `--url=${root}`]);
    expect(cliStart.code, cliStart.stderr).toBe(4);
    expect(cliStart.stderr).toMatch(/the quota of 2 models/);
    const cliScale = await runCli(["model", "scale", "q1", "9", `--url=${root}`]);
    expect(cliScale.code, cliScale.stderr).toBe(4);
    expect(cliScale.stderr).toMatch(/above the quota of 3 replicas per model/);

    // Nothing of it was written.
    expect(await desired(root)).toEqual([
      ["q1", 3],
      ["q2", 1],
    ]);
    expect(await etcd.etcdctl("get", "--prefix", "--keys-only", "/smmf/v1/models/")).not.toContain("q3");

    // Within the quotas, changes go through: scaling down and up to the quota, and a start once a model is stopped.
    expect((await api(root, "POST", "/api/v1/models/q2/scale", { replicas: 3 })).status).toBe(200);
    expect((await api(root, "DELETE", "/api/v1/models/q2")).status).toBe(200);
    expect((await api(root, "POST", "/api/v1/models", relayed("q3", 1))).status).toBe(201);
    expect(await desired(root)).toEqual([
      ["q1", 3],
      ["q3", 1],
    ]);
  });

  it("a gateway serving the operating API checks its own quotas (smmf gateway --max-replicas 2)", async () => {
    const port = await freePort();
    const gateway = await startSmmf(["gateway", "--etcd", etcd.endpoints, "--port", String(port), "--log-level", "warn", "--max-replicas", "2"], { timeoutMs: 60_000 });
    try {
      const root = `http://127.0.0.1:${port}`;
      expectRefused(await api(root, "POST", "/api/v1/models/q3/scale", { replicas: 3 }), "replicas", /'replicas' 3 is above the quota of 2 replicas per model \(maxReplicas, --max-replicas\)/);
      expect((await api(root, "POST", "/api/v1/models/q3/scale", { replicas: 2 })).status).toBe(200);
    } finally {
      await killAll(gateway);
    }
  });
});

describe("controller quotas: the embedded mode (maxModels 1, maxReplicas 2)", () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ models: [], maxModels: 1, maxReplicas: 2 });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
  });

  it("lets one of two concurrent starts through and refuses the other; refuses 3 replicas", async () => {
    const [a, b] = await Promise.all([api(server.url, "POST", "/api/v1/models", relayed("e1", 1)), api(server.url, "POST", "/api/v1/models", relayed("e2", 1))]);
    expect([a.status, b.status].sort()).toEqual([201, 400]);
    const refused = a.status === 400 ? a : b;
    expectRefused(refused, null, /the quota of 1 models \(maxModels, --max-models\) is used up/);
    const name = a.status === 201 ? "e1" : "e2";
    expectRefused(await api(server.url, "POST", `/api/v1/models/${name}/scale`, { replicas: 3 }), "replicas", /'replicas' 3 is above the quota of 2/);
    expect((await api(server.url, "POST", `/api/v1/models/${name}/scale`, { replicas: 2 })).status).toBe(200);
    expect(await desired(server.url)).toEqual([[name, 2]]);
  });
});
