import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER_HEADER } from "../../src/auth/clusterCredential.js";
import { GenerateRequestSchema, InferenceService } from "../../src/gen/smmf/v1/inference_pb.js";
import { SessionRequestSchema, WorkerService } from "../../src/gen/smmf/v1/worker_pb.js";
import { createAsyncQueue } from "../../src/util/createAsyncQueue.js";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { api, testSource, type ControllerProc } from "../helpers/controlCluster.js";
import { startDistGateway, waitFor, type DistGateway } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { testModelPath } from "../helpers/testModel.js";

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

/** What a stranger on a worker's port tries: list, load, unload, drain, generate. Each must be refused. */
async function expectClosed(address: string, headers: Record<string, string> = {}): Promise<void> {
  const transport = createGrpcTransport({ baseUrl: address });
  const worker = createClient(WorkerService, transport);
  const inference = createClient(InferenceService, transport);
  const calls: [string, () => Promise<unknown>][] = [
    ["ListInstances", () => worker.listInstances({}, { headers })],
    ["LoadInstance", () => worker.loadInstance({ spec: { model: "x", engine: "llama.cpp", source: "stories260K.gguf" } }, { headers })],
    ["UnloadInstance", () => worker.unloadInstance({ instanceId: "x" }, { headers })],
    ["Generate", async () => {
      async function* start() {
        yield create(GenerateRequestSchema, { kind: { case: "start", value: { model: "stories260K", input: { case: "prompt", value: "Once" } } } });
      }
      for await (const _ of inference.generate(start(), { headers }));
    }],
  ];
  for (const [name, call] of calls) expect((await rpcError(call())).code, name).toBe(Code.Unauthenticated);
}

describe("the embedded worker's port", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  }, 60_000);
  afterAll(() => server?.close());

  it("refuses strangers (no cluster credential, or a wrong one), while the gateway in the same process serves", async () => {
    await expectClosed(server.embedded.worker.address);
    await expectClosed(server.embedded.worker.address, { [CLUSTER_HEADER]: randomBytes(32).toString("base64url") });
    const r = await server.openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 3 });
    expect(r.usage?.completion_tokens).toBe(3);
  });
});

describe("a cluster with a cluster credential", () => {
  const secret = randomBytes(24).toString("base64url");
  let etcd: TestEtcd;
  let worker: SmmfProcess;
  let workerAddress: string;
  let gateway: DistGateway;
  let controller: ControllerProc;
  let dataDir: string;

  beforeAll(async () => {
    etcd = await startEtcd();
    dataDir = mkdtempSync(join(tmpdir(), "smmf-internal-"));
    const env = { SMMF_CLUSTER_SECRET: secret };
    worker = await startSmmf(["worker", "--etcd", etcd.endpoints, "--no-models", "--model-dir", dirname(testModelPath()), "--data-dir", dataDir, "--gpu", "off", "--threads", "1", "--worker-id", "guarded-w", "--log-level", "warn"], { env, timeoutMs: 60_000 });
    workerAddress = /serving .* at (\S+)/.exec(worker.stdout())![1];
    const port = await freePort();
    controller = await startControllerProcWithEnv(etcd, port, env);
    gateway = await startDistGateway(etcd, [], env);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([gateway?.proc.stop(), controller?.proc.stop(), worker?.stop()]);
    await etcd?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("the worker refuses strangers; the controller (placing a model) and the gateway (serving it) get through", async () => {
    await expectClosed(workerAddress);
    const started = await api(controller.url, "POST", "/api/v1/models", { name: "guarded", source: testSource(), replicas: 1, llamaCpp: { contextSize: 256, sequences: 1 } });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    await waitFor("the model to be ready", async () => (await api(controller.url, "GET", "/api/v1/models/guarded")).body?.readyReplicas === 1, 30_000);
    const root = gateway.baseURL.replace(/\/v1$/, "");
    await waitFor("the gateway to see it", async () => (await fetch(`${root}/readyz`)).status === 200, 10_000);
    const r = await gateway.openai.completions.create({ model: "guarded", prompt: "Once", max_tokens: 3 });
    expect(r.usage?.completion_tokens).toBe(3);
  });

  it("a session with a forged term is refused (even with the credential), and the leader keeps leading", async () => {
    const requests = createAsyncQueue<ReturnType<typeof create<typeof SessionRequestSchema>>>();
    requests.push(create(SessionRequestSchema, { command: { case: "open", value: { controllerId: "forger", term: 1n << 40n } } }));
    const client = createClient(WorkerService, createGrpcTransport({ baseUrl: workerAddress }));
    const err = await rpcError((async () => {
      for await (const _ of client.session(requests, { headers: { [CLUSTER_HEADER]: secret } }));
    })());
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toMatch(/is not the elected one/);
    requests.end();
    // The real leader still commands the worker: a scale goes through.
    const scaled = await api(controller.url, "POST", "/api/v1/models/guarded/scale", { replicas: 2 });
    expect(scaled.status, JSON.stringify(scaled.body)).toBe(200);
    await waitFor("two ready replicas", async () => (await api(controller.url, "GET", "/api/v1/models/guarded")).body?.readyReplicas === 2, 30_000);
  });

  it("a worker listening beyond loopback without a cluster credential refuses to start", async () => {
    const proc = await startSmmf(["worker", "--etcd", etcd.endpoints, "--worker-host", "0.0.0.0", "--no-models", "--gpu", "off", "--log-level", "warn"], { readyPattern: /SMMF worker/, timeoutMs: 30_000 }).catch((e: Error) => e);
    expect(proc).toBeInstanceOf(Error);
    expect((proc as Error).message).toMatch(/refusing to listen on 0\.0\.0\.0 without a cluster credential/);
  });
});

async function startControllerProcWithEnv(etcd: TestEtcd, port: number, env: Record<string, string>): Promise<ControllerProc> {
  const proc = await startSmmf(["controller", "--etcd", etcd.endpoints, "--port", String(port), "--controller-id", "guarded-c", "--lease-ttl", "2", "--log-level", "warn"], { env, timeoutMs: 60_000 });
  const m = /SMMF controller (\S+) serving at (\S+)/.exec(proc.stdout())!;
  return { proc, id: m[1], url: m[2] };
}
