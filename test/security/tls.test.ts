import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import http2 from "node:http2";
import tls from "node:tls";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WorkerService, SessionRequestSchema, type SessionRequest } from "../../src/gen/smmf/v1/worker_pb.js";
import { InferenceService } from "../../src/gen/smmf/v1/inference_pb.js";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { makeTestCa, type TestCa } from "../helpers/testCertificates.js";
import { fetchWithCa } from "../helpers/fetchWithCa.js";
import { testModelPath } from "../helpers/testModel.js";
import { runCli } from "../helpers/controlCluster.js";
import { waitFor } from "../helpers/distCluster.js";

/**
 * Every hop encrypted and authenticated, with real processes: etcd with TLS client certificates and auth (a
 * user whose role covers only /smmf/), workers requiring mTLS and checking each caller's role, a gateway
 * serving HTTPS (HTTP/1.1 and h2) and a controller, all with certificates of one test CA.
 */
describe("TLS everywhere: etcd TLS and auth, mTLS to workers, HTTPS front doors", () => {
  let ca: TestCa;
  let other: TestCa;
  let etcd: TestEtcd;
  let worker: SmmfProcess;
  let gateway: SmmfProcess;
  let controller: SmmfProcess;
  let workerAddress: string;
  let gatewayUrl: string;
  let controllerUrl: string;
  let caPem: string;
  const certs: Record<string, { cert: string; key: string }> = {};

  const fingerprint = (address: string, client?: { cert: string; key: string }): Promise<string> =>
    new Promise((resolve, reject) => {
      const url = new URL(address);
      const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: caPem, ALPNProtocols: ["h2"], ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}) }, () => {
        const fp = socket.getPeerCertificate().fingerprint256;
        socket.destroy();
        resolve(fp);
      });
      socket.on("error", reject);
    });

  const workerClient = (client?: { cert: string; key: string }, trust = caPem) =>
    createTransportClients(workerAddress, { ca: trust, ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}) });

  beforeAll(async () => {
    ca = makeTestCa("SMMF cluster CA");
    other = makeTestCa("Someone else's CA");
    caPem = readFileSync(ca.caFile, "utf8");
    certs.etcd = ca.issue("etcd");
    certs.etcdClient = ca.issue("etcd-client");
    certs.worker = ca.issue("worker");
    certs.gatewayServer = ca.issue("gateway-server");
    certs.gateway = ca.issue("gateway", { organizations: ["smmf-gateway"] });
    certs.controller = ca.issue("controller", { organizations: ["smmf-controller"] });
    certs.noRole = ca.issue("no-role");
    certs.stranger = other.issue("stranger", { organizations: ["smmf-gateway", "smmf-controller"] });

    etcd = await startEtcd({ tls: { caFile: ca.caFile, cert: certs.etcd.cert, key: certs.etcd.key, client: certs.etcdClient } });
    // etcd auth: root, and the user SMMF runs as, whose role can touch only /smmf/.
    await etcd.etcdctl("user", "add", "root:root-password");
    await etcd.etcdctl("role", "add", "smmf");
    await etcd.etcdctl("role", "grant-permission", "smmf", "--prefix=true", "readwrite", "/smmf/");
    await etcd.etcdctl("user", "add", "smmf:smmf-password");
    await etcd.etcdctl("user", "grant-role", "smmf", "smmf");
    await etcd.etcdctl("auth", "enable");
    const passwordFile = join(ca.dir, "etcd-password");
    writeFileSync(passwordFile, "smmf-password\n");
    const etcdFlags = ["--etcd", etcd.endpoints, "--etcd-ca", ca.caFile, "--etcd-cert", certs.etcdClient.cert, "--etcd-key", certs.etcdClient.key, "--etcd-user", "smmf", "--etcd-password-file", passwordFile];

    worker = await startSmmf(
      ["worker", ...etcdFlags, "--model", `stories260K=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--log-level", "warn", "--tls-cert", certs.worker.cert, "--tls-key", certs.worker.key, "--tls-ca", ca.caFile],
      { timeoutMs: 60_000, env: { SMMF_CERT_POLL_MS: "200" } },
    );
    workerAddress = /serving \S+ at (\S+)/.exec(worker.stdout())![1];
    expect(workerAddress).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

    const gatewayPort = await freePort();
    gateway = await startSmmf(
      ["gateway", ...etcdFlags, "--port", String(gatewayPort), "--log-level", "warn", "--tls-cert", certs.gatewayServer.cert, "--tls-key", certs.gatewayServer.key, "--tls-ca", ca.caFile, "--tls-client-cert", certs.gateway.cert, "--tls-client-key", certs.gateway.key],
      { timeoutMs: 60_000, env: { SMMF_CERT_POLL_MS: "200" } },
    );
    gatewayUrl = `https://127.0.0.1:${gatewayPort}`;
    expect(gateway.stdout()).toContain(`${gatewayUrl}/v1`);

    const controllerPort = await freePort();
    controller = await startSmmf(
      ["controller", ...etcdFlags, "--port", String(controllerPort), "--log-level", "warn", "--tls-cert", certs.gatewayServer.cert, "--tls-key", certs.gatewayServer.key, "--tls-ca", ca.caFile, "--tls-client-cert", certs.controller.cert, "--tls-client-key", certs.controller.key],
      { timeoutMs: 60_000 },
    );
    controllerUrl = `https://127.0.0.1:${controllerPort}`;
    const get = fetchWithCa(caPem);
    await waitFor("the gateway to be ready", async () => (await get(`${gatewayUrl}/readyz`)).status === 200, 20_000);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([worker?.kill(), gateway?.kill(), controller?.kill()].map((p) => p?.catch(() => undefined)));
    await etcd?.close();
    ca?.remove();
    other?.remove();
  });

  it("serves the OpenAI API over HTTPS (HTTP/1.1 and h2), generating on a worker reached over mTLS", async () => {
    const openai = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: "unused", maxRetries: 0, fetch: fetchWithCa(caPem) });
    const chat = await openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8 });
    expect(chat.choices[0].message.content!.length).toBeGreaterThan(0);
    expect(chat.usage!.completion_tokens).toBeGreaterThan(0);

    // h2 by ALPN on the same port.
    const session = http2.connect(gatewayUrl, { ca: caPem });
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ":path": "/healthz" });
      stream.on("response", (headers) => resolve(Number(headers[":status"])));
      stream.on("error", reject);
      stream.end();
    });
    expect((session.socket as tls.TLSSocket).alpnProtocol).toBe("h2");
    session.close();
    expect(status).toBe(200);

    // A cleartext request to the TLS port gets no HTTP answer.
    const plain = await new Promise<string>((resolve) => {
      const req = http.get(`http://127.0.0.1:${new URL(gatewayUrl).port}/healthz`, (res) => resolve(`answered ${res.statusCode}`));
      req.on("error", (err) => resolve(`refused: ${err.message}`));
    });
    expect(plain).toMatch(/^refused/);
  });

  it("runs the controller's happy path: a model started through the controller (HTTPS) is placed over mTLS and served", async () => {
    const env = { NODE_EXTRA_CA_CERTS: ca.caFile };
    const started = await runCli(["model", "start", "tls-tiny", "--source", testModelPath(), "--context-size", "256", "--wait", "--url", controllerUrl], 90_000, undefined, env);
    expect(started.code, started.stderr).toBe(0);
    const openai = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: "unused", maxRetries: 0, fetch: fetchWithCa(caPem) });
    const reply = await waitFor("tls-tiny to answer through the gateway", async () => (await openai.completions.create({ model: "tls-tiny", prompt: "Once", max_tokens: 4 })).choices[0].text, 20_000, 200);
    expect(typeof reply).toBe("string");
    const listed = await runCli(["model", "list", "--json", "--url", controllerUrl], 30_000, undefined, env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain("tls-tiny");
  }, 120_000);

  it("etcd: SMMF's user can touch /smmf/ and nothing else", async () => {
    await expect(etcd.etcdctl("--user", "smmf:smmf-password", "put", "/elsewhere/x", "1")).rejects.toThrow(/permission denied/i);
    await expect(etcd.etcdctl("--user", "smmf:smmf-password", "get", "--prefix", "/")).rejects.toThrow(/permission denied/i);
    const keys = await etcd.etcdctl("--user", "smmf:smmf-password", "get", "--prefix", "--keys-only", "/smmf/v1/instances/");
    expect(keys).toContain("/smmf/v1/instances/stories260K/");
    // Without a password etcd answers nothing at all.
    await expect(etcd.etcdctl("get", "--prefix", "/smmf/")).rejects.toThrow();
  });

  it("a worker refuses callers without a client certificate, or with one of another CA", async () => {
    const none = workerClient();
    await expect(none.worker.listInstances({}, { timeoutMs: 10_000 })).rejects.toSatisfy((err: unknown) => ConnectError.from(err).code !== Code.PermissionDenied);
    const stranger = workerClient(certs.stranger);
    await expect(stranger.worker.listInstances({}, { timeoutMs: 10_000 })).rejects.toBeInstanceOf(ConnectError);
    const plain = createClient(WorkerService, createGrpcTransport({ baseUrl: workerAddress.replace("https:", "http:") }));
    await expect(plain.listInstances({}, { timeoutMs: 10_000 })).rejects.toBeInstanceOf(ConnectError);
  });

  it("a worker lets each certificate do what its role allows, and nothing more", async () => {
    const asGateway = workerClient(certs.gateway);
    expect((await asGateway.worker.listInstances({}, { timeoutMs: 10_000 })).instances.length).toBeGreaterThan(0);
    // A gateway certificate cannot open a controller session or load.
    await expect(drain(asGateway.worker.session(oneOpen(), { timeoutMs: 10_000 }))).rejects.toMatchObject({ code: Code.PermissionDenied });
    await expect(asGateway.worker.loadInstance({ spec: { model: "x", instanceId: "x-1", engine: "llama.cpp", source: testModelPath() } }, { timeoutMs: 10_000 })).rejects.toMatchObject({ code: Code.PermissionDenied });
    const counted = await asGateway.inference.countTokens({ model: "stories260K", input: { case: "prompt", value: "Once upon a time" } }, { timeoutMs: 10_000 });
    expect(counted.tokenCount).toBeGreaterThan(0);

    // A controller certificate cannot generate.
    const asController = workerClient(certs.controller);
    await expect(asController.inference.countTokens({ model: "stories260K", input: { case: "prompt", value: "x" } }, { timeoutMs: 10_000 })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect((await asController.worker.listInstances({}, { timeoutMs: 10_000 })).instances.length).toBeGreaterThan(0);

    // A certificate of the cluster's CA that names no role gets nothing.
    const noRole = workerClient(certs.noRole);
    const refused = await noRole.worker.listInstances({}, { timeoutMs: 10_000 }).catch((err: unknown) => ConnectError.from(err));
    expect(refused).toMatchObject({ code: Code.PermissionDenied });
    expect((refused as ConnectError).rawMessage).toMatch(/names no SMMF role/);
  });

  it("never sends a prompt to a worker address that is not https, even one written into etcd", async () => {
    let received = 0;
    const fake = http.createServer((req, res) => {
      received++;
      req.resume();
      res.end();
    });
    fake.on("connection", () => received++);
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
    const address = `http://127.0.0.1:${(fake.address() as { port: number }).port}`;
    try {
      const record = { instanceId: "fake-1", model: "fake", engine: "llama.cpp", workerId: "fake-worker", address, state: "INSTANCE_STATE_ONLINE", maxConcurrency: 4, contextSize: 256, startedAt: new Date().toISOString(), version: 1 };
      await etcd.etcdctl("--user", "root:root-password", "put", "/smmf/v1/instances/fake/fake-1", JSON.stringify(record));
      const openai = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: "unused", maxRetries: 0, fetch: fetchWithCa(caPem) });
      // Wait until the gateway has discovered the record (it lists the model), then ask for it.
      await waitFor("the gateway to list the fake model", async () => (await openai.models.list()).data.some((m) => m.id === "fake"), 20_000, 100);
      const err = await openai.chat.completions.create({ model: "fake", messages: [{ role: "user", content: "a secret prompt" }], max_tokens: 2 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
      expect(received).toBe(0);
    } finally {
      await etcd.etcdctl("--user", "root:root-password", "del", "/smmf/v1/instances/fake/fake-1");
      fake.close();
    }
  });

  it("picks up rotated certificates on disk while requests keep succeeding (0 failed)", async () => {
    const before = { worker: await fingerprint(workerAddress, certs.gateway), gateway: await fingerprint(gatewayUrl) };
    const openai = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: "unused", maxRetries: 0, fetch: fetchWithCa(caPem) });
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        try {
          await openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 2 });
          ok++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    await waitFor("some requests before the rotation", () => ok >= 3, 20_000, 20);
    // New certificates, renamed into place: the worker's, the gateway's own, and its client certificate.
    ca.issue("worker");
    ca.issue("gateway-server");
    ca.issue("gateway", { organizations: ["smmf-gateway"] });
    await waitFor("the worker to serve its new certificate", async () => (await fingerprint(workerAddress, certs.gateway)) !== before.worker, 20_000, 100);
    await waitFor("the gateway to serve its new certificate", async () => (await fingerprint(gatewayUrl)) !== before.gateway, 20_000, 100);
    const afterRotation = ok;
    await waitFor("requests after the rotation", () => ok >= afterRotation + 5, 20_000, 20);
    stop = true;
    await traffic;
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThanOrEqual(8);
  }, 90_000);
});

function createTransportClients(baseUrl: string, nodeOptions: { ca: string; cert?: Buffer; key?: Buffer }) {
  const transport = createGrpcTransport({ baseUrl, nodeOptions });
  return { worker: createClient(WorkerService, transport), inference: createClient(InferenceService, transport) };
}

async function* oneOpen(): AsyncGenerator<SessionRequest> {
  yield create(SessionRequestSchema, { commandId: 1n, command: { case: "open", value: { controllerId: "impostor", term: 1n } } });
}

async function drain(responses: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of responses) void _;
}

describe("smmf serve over HTTPS", () => {
  it("serves the OpenAI API over HTTPS with --tls-cert/--tls-key, and nothing in cleartext", async () => {
    const ca = makeTestCa();
    const port = await freePort();
    let serve: SmmfProcess | undefined;
    try {
      const server = ca.issue("serve");
      serve = await startSmmf(["serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--log-level", "warn", "--data-dir", join(ca.dir, "data"), "--tls-cert", server.cert, "--tls-key", server.key], { timeoutMs: 60_000 });
      expect(serve.stdout()).toContain(`https://127.0.0.1:${port}/v1`);
      const openai = new OpenAI({ baseURL: `https://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0, fetch: fetchWithCa(readFileSync(ca.caFile)) });
      const done = await openai.completions.create({ model: "stories260K", prompt: "Once", max_tokens: 3 });
      expect(done.usage!.completion_tokens).toBe(3);
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      await serve?.kill();
      ca.remove();
    }
  }, 90_000);
});
