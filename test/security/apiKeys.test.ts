import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import * as grpc from "@grpc/grpc-js";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/controlCluster.js";
import { FileKeyStore } from "../../src/auth/FileKeyStore.js";
import { newKeyId, newSecret, sha256Hex } from "../../src/auth/apiKeySecret.js";
import { ControllerService } from "../../src/gen/smmf/v1/controller_pb.js";
import { ApiKeyRole, ApiKeySchema, KeyService } from "../../src/gen/smmf/v1/auth_pb.js";
import { InferenceService } from "../../src/gen/smmf/v1/inference_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { projectRoot, testModelPath } from "../helpers/testModel.js";
import { startOtlpCollector, type OtlpCollector } from "../helpers/otlpCollector.js";

// `smmf serve` (a real process) on loopback serving the test model under two names; keys made with the real
// `smmf key` command in its data dir, while it runs.
let dir: string;
let collector: OtlpCollector;
let smmf: SmmfProcess;
let url: string;
const secrets: Record<string, string> = {};


async function createKey(name: string, ...flags: string[]): Promise<string> {
  const out = await runCli(["key", "create", name, "--bootstrap", "--data-dir", join(dir, "data"), ...flags]);
  expect(out.code, out.stderr).toBe(0);
  const secret = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(out.stdout)?.[0];
  expect(secret, out.stdout).toBeDefined();
  secrets[name] = secret!;
  return secret!;
}

async function get(path: string, key?: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, { headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers } });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string; type: string }; data?: { id?: string; name?: string }[] } };
}

async function post(path: string, body: unknown, key?: string) {
  const res = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
}

const openai = (key: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0, timeout: 20_000 });

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smmf-keys-"));
  collector = await startOtlpCollector();
  const port = await freePort();
  smmf = await startSmmf(
    ["serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--model", `other=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--data-dir", join(dir, "data"), "--log-level", "info", "--otlp-endpoint", collector.url, "--request-log-capture", "full"],
    { timeoutMs: 60_000 },
  );
  url = `http://127.0.0.1:${port}`;
}, 90_000);

afterAll(async () => {
  await smmf?.stop();
  await collector?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("API keys", () => {
  it("with no key at all, a loopback server stays open (the newcomer's path)", async () => {
    expect((await get("/v1/models")).status).toBe(200);
  });

  it("once a key exists, a request without one gets 401 invalid_api_key: REST (OpenAI's shape), Connect and gRPC", async () => {
    await createKey("admin", "--role", "admin");
    await createKey("app", "--role", "inference", "--models", "stories260K");
    await createKey("ops", "--role", "reader");
    // The server picks up the new keys file by itself.
    await expect.poll(async () => (await get("/v1/models")).status, { timeout: 5_000 }).toBe(401);
    const plain = await get("/v1/models");
    expect(plain.body.error).toMatchObject({ code: "invalid_api_key", type: "invalid_request_error" });
    expect(plain.body.error?.message).toMatch(/didn't provide an API key/);
    for (const path of ["/api/v1/models", "/api/v1/models/stories260K", "/api/v1/instances", "/api/v1/workers", "/api/v1/events", "/api/v1/audit", "/api/v1/keys", "/api/v1/requests", "/api/v1/whoami", "/api/v1/traffic", "/api/v1/status", "/v1/responses/resp-x", "/v1/nothing"]) expect((await get(path)).status, path).toBe(401);
    // Every route that changes state, as the operating API lists them.
    const changes: [string, string][] = [
      ["POST", "/api/v1/models"],
      ["PUT", "/api/v1/models/stories260K"],
      ["DELETE", "/api/v1/models/stories260K"],
      ["POST", "/api/v1/models/stories260K/restart"],
      ["POST", "/api/v1/models/stories260K/scale"],
      ["POST", "/api/v1/instances/x/online"],
      ["POST", "/api/v1/instances/x/offline"],
      ["POST", "/api/v1/instances/x/drain"],
      ["POST", "/api/v1/requests/x/feedback"],
      ["POST", "/api/v1/keys"],
      ["POST", "/api/v1/keys/app/revoke"],
      ["POST", "/api/v1/keys/app/rotate"],
      ["POST", "/v1/chat/completions"],
      ["POST", "/v1/completions"],
      ["POST", "/v1/embeddings"],
      ["POST", "/v1/responses"],
      ["POST", "/v1/rerank"],
      ["POST", "/v1/messages/count_tokens"],
    ];
    for (const [method, path] of changes) {
      const res = await fetch(`${url}${path}`, { method, headers: { "content-type": "application/json" }, body: method === "DELETE" ? undefined : JSON.stringify({ replicas: 2, name: "stories260K", source: "x.gguf", model: "stories260K", prompt: "x" }) });
      expect(res.status, `${method} ${path}`).toBe(401);
    }
    // A wrong secret of the right shape, and one of another shape.
    expect((await get("/v1/models", `smmf-k000000000000-${"A".repeat(43)}`)).body.error?.code).toBe("invalid_api_key");
    expect((await get("/v1/models", "sk-not-ours")).status).toBe(401);
    const err = await openai("sk-nope").models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    for (const transport of [createConnectTransport({ baseUrl: url, httpVersion: "1.1" }), createGrpcTransport({ baseUrl: url })]) {
      // Every unary method of ControllerService, reads and changes alike, and the streaming watch.
      const controller = createClient(ControllerService, transport) as unknown as Record<string, (req: object) => Promise<unknown>>;
      for (const method of ControllerService.methods) {
        if (method.methodKind !== "unary") continue;
        expect((await rpcError(controller[method.localName]({}))).code, method.name).toBe(Code.Unauthenticated);
      }
      // Every KeyService method.
      const keyService = createClient(KeyService, transport) as unknown as Record<string, (req: object) => Promise<unknown>>;
      for (const method of KeyService.methods) expect((await rpcError(keyService[method.localName]({}))).code, method.name).toBe(Code.Unauthenticated);
      const watch = (async () => {
        for await (const _ of createClient(ControllerService, transport).watchEvents({}));
      })();
      expect((await rpcError(watch)).code).toBe(Code.Unauthenticated);
      expect((await rpcError(createClient(InferenceService, transport).countTokens({ model: "stories260K", input: { case: "prompt", value: "x" } }))).code).toBe(Code.Unauthenticated);
    }
    // Health stays open, and so does /metrics on loopback.
    expect((await get("/healthz")).status).toBe(200);
    expect((await fetch(`${url}/metrics`)).status).toBe(200);
  });

  it("an inference key uses its models (others answer as unknown, 404) and is refused the operating API (403)", async () => {
    const app = openai(secrets.app);
    const r = await app.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 3 });
    expect(r.usage?.completion_tokens).toBe(3);
    expect((await app.models.list()).data.map((m) => m.id)).toEqual(["stories260K"]);
    const other = await app.completions.create({ model: "other", prompt: "Hi", max_tokens: 3 }).catch((e: unknown) => e);
    expect(other).toMatchObject({ status: 404, code: "model_not_found" });
    expect((await get("/v1/models/other", secrets.app)).status).toBe(404);
    const admin = await get("/api/v1/models", secrets.app);
    expect(admin.status).toBe(403);
    expect(admin.body.error).toMatchObject({ code: "permission_denied" });
    expect(admin.body.error?.message).toMatch(/'app' \(role inference\).*needs role reader/);
    const grpc = createClient(ControllerService, createGrpcTransport({ baseUrl: url }));
    const headers = { authorization: `Bearer ${secrets.app}` };
    expect((await rpcError(grpc.scaleModel({ name: "stories260K", replicas: 2 }, { headers }))).code).toBe(Code.PermissionDenied);
    const inference = createClient(InferenceService, createGrpcTransport({ baseUrl: url }));
    expect((await inference.countTokens({ model: "stories260K", input: { case: "prompt", value: "Once upon" } }, { headers })).tokenCount).toBeGreaterThan(0);
    expect((await rpcError(inference.countTokens({ model: "other", input: { case: "prompt", value: "x" } }, { headers }))).code).toBe(Code.NotFound);
    // x-api-key and api-key headers (Anthropic- and Azure-style clients) work too.
    expect((await get("/v1/models", undefined, { "x-api-key": secrets.app })).status).toBe(200);
    expect((await get("/v1/models", undefined, { "api-key": secrets.app })).status).toBe(200);
  });

  it("Anthropic's client authenticates with its x-api-key header; without a key, with a wrong one or one for another model it gets Anthropic's error shape", async () => {
    const anthropic = (apiKey: string) => new Anthropic({ baseURL: url, apiKey, maxRetries: 0, timeout: 20_000 });
    const ok = await anthropic(secrets.app).messages.create({ model: "stories260K", max_tokens: 3, messages: [{ role: "user", content: "Hi" }] });
    expect(ok.usage.output_tokens).toBe(3);
    const wrong = (await anthropic("smmf-k000000000000-wrong").messages.create({ model: "stories260K", max_tokens: 3, messages: [{ role: "user", content: "Hi" }] }).catch((e: unknown) => e)) as InstanceType<typeof Anthropic.APIError>;
    expect(wrong).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(wrong.error).toMatchObject({ type: "error", error: { type: "authentication_error" } });
    const none = await fetch(`${url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "stories260K", max_tokens: 3, messages: [] }) });
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ type: "error", error: { type: "authentication_error", message: expect.stringMatching(/x-api-key/) } });
    // A model the key may not use is answered as one that does not exist.
    const other = (await anthropic(secrets.app).messages.create({ model: "other", max_tokens: 3, messages: [{ role: "user", content: "Hi" }] }).catch((e: unknown) => e)) as InstanceType<typeof Anthropic.APIError>;
    expect(other).toBeInstanceOf(Anthropic.NotFoundError);
    expect(other.error).toMatchObject({ type: "error", error: { type: "not_found_error" } });
    const counted = await anthropic(secrets.app).messages.countTokens({ model: "other", messages: [{ role: "user", content: "Hi" }] }).catch((e: unknown) => e);
    expect(counted).toBeInstanceOf(Anthropic.NotFoundError);
  });

  it("gRPC health checking needs no key (Kubernetes' probes send none); reflection needs a reader key; an unknown method without a key is UNAUTHENTICATED", async () => {
    const transport = createGrpcTransport({ baseUrl: url });
    expect((await createClient(Health, transport).check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const reflection = createClient(ServerReflection, transport);
    const list = async (headers?: Record<string, string>) => {
      const out: string[] = [];
      for await (const r of reflection.serverReflectionInfo((async function* () { yield { messageRequest: { case: "listServices" as const, value: "" } }; })(), { headers })) {
        if (r.messageResponse.case === "listServicesResponse") out.push(...r.messageResponse.value.service.map((s) => s.name));
      }
      return out;
    };
    expect((await rpcError(list())).code).toBe(Code.Unauthenticated);
    expect((await rpcError(list({ authorization: `Bearer ${secrets.app}` }))).code).toBe(Code.PermissionDenied);
    expect(await list({ authorization: `Bearer ${secrets.ops}` })).toContain("smmf.v1.InferenceService");
    // A method nobody serves, called with a stock gRPC client.
    const unknown = (key?: string) =>
      new Promise<number>((done) => {
        const client = new grpc.Client(new URL(url).host, grpc.credentials.createInsecure());
        const metadata = new grpc.Metadata();
        if (key) metadata.set("authorization", `Bearer ${key}`);
        client.makeUnaryRequest("/smmf.v1.NoSuchService/Call", (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), metadata, { deadline: Date.now() + 20_000 }, (err) => {
          client.close();
          done(err?.code ?? 0);
        });
      });
    expect(await unknown()).toBe(grpc.status.UNAUTHENTICATED);
    expect(await unknown(secrets.app)).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("a reader key reads the operating API and the request log, and may not change anything; an admin key may", async () => {
    expect((await get("/api/v1/models", secrets.ops)).status).toBe(200);
    expect((await get("/api/v1/requests", secrets.ops)).status).toBe(200);
    const change = await post("/api/v1/models", { name: "x", source: "x.gguf" }, secrets.ops);
    expect(change.status).toBe(403);
    // The admin key gets past the check (this spec is then refused on its own merits, not for the key).
    const admin = await post("/api/v1/models", { name: "x", source: "/no/such/x.gguf", replicas: 1 }, secrets.admin);
    expect([401, 403]).not.toContain(admin.status);
    const cli = await runCli(["model", "list", "--url", url, "--api-key", secrets.ops]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain("stories260K");
    const refused = await runCli(["model", "list", "--url", url]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/API key/);
    const fromEnv = await runCli(["model", "list", "--url", url], 60_000, projectRoot, { SMMF_API_KEY: secrets.admin });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
  });

  it("a percent-encoded path is judged as the routes read it: a reader cannot list API keys as /api/v1/ke%79s", async () => {
    for (const path of ["/api/v1/ke%79s", "/api/v1/%6Beys", "/api/v1/keys"]) {
      const asReader = await get(path, secrets.ops);
      expect(asReader.status, path).toBe(403);
      expect((await get(path, secrets.admin)).status, path).toBe(200);
    }
    // Malformed percent-encoding is the caller's error, before any route.
    expect((await get("/api/v1/ke%zzs", secrets.ops)).status).toBe(400);
  });

  it("a rotated key's old secret stops working and the new one works; a revoked key is refused within a second", async () => {
    const old = secrets.app;
    // Through the server's KeyService, with the admin key; an inference key may not.
    expect((await runCli(["key", "rotate", "app", "--url", url, "--api-key", secrets.app])).code).toBe(4);
    const out = await runCli(["key", "rotate", "app", "--url", url, "--api-key", secrets.admin]);
    expect(out.code, out.stderr).toBe(0);
    const fresh = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(out.stdout)![0];
    await expect.poll(async () => (await get("/v1/models", old)).status, { timeout: 1_000, interval: 20 }).toBe(401);
    expect((await get("/v1/models", fresh)).status).toBe(200);
    secrets.app = fresh;
    expect((await runCli(["key", "revoke", "app", "--url", url, "--api-key", secrets.admin])).code).toBe(0);
    await expect.poll(async () => (await get("/v1/models", fresh)).status, { timeout: 1_000, interval: 20 }).toBe(401);
    expect((await get("/v1/models", fresh)).body.error?.message).toMatch(/'app' has been revoked/);
    expect((await runCli(["key", "revoke", "app", "--bootstrap", "--data-dir", join(dir, "data")])).code).toBe(3);
    // Both changes are in the audit record, with the admin key's name and no secret.
    const audit = (await get("/api/v1/audit?limit=50", secrets.admin)).body as unknown as { data: { action: string; actor: string; target: string; ok: boolean }[] };
    expect(audit.data.filter((r) => r.target === "app").map((r) => [r.action, r.actor, r.ok])).toEqual([
      ["RevokeApiKey", "admin", true],
      ["RotateApiKey", "admin", true],
    ]);
  });

  it("an expired key is refused", async () => {
    const store = new FileKeyStore(join(dir, "data"), createLogger("error", "test"), { watch: false });
    const id = newKeyId();
    const secret = newSecret(id);
    await store.put(create(ApiKeySchema, { id, name: "stale", role: ApiKeyRole.ADMIN, secretSha256: sha256Hex(secret), createdAt: timestampFromMs(Date.now() - 120_000), expiresAt: timestampFromMs(Date.now() - 60_000), version: 1 }));
    await store.close();
    await expect.poll(async () => (await get("/v1/models", secret)).body.error?.message, { timeout: 5_000 }).toMatch(/'stale' has expired/);
  });

  it("keeps secrets only as hashes: not in the keys file (mode 0600), the logs, /metrics, traces, the request log, the audit record or the listing", async () => {
    const path = join(dir, "data", "keys.json");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const file = readFileSync(path, "utf8");
    const list = await runCli(["key", "list", "--bootstrap", "--data-dir", join(dir, "data"), "--json"]);
    const listed = await runCli(["key", "list", "--url", url, "--api-key", secrets.admin, "--json"]);
    expect(JSON.parse(listed.stdout)).toEqual(JSON.parse(list.stdout));
    const metrics = await (await fetch(`${url}/metrics`)).text();
    await expect.poll(() => collector.spans().length, { timeout: 10_000 }).toBeGreaterThan(0);
    const traces = JSON.stringify(collector.requests);
    const requestLog = JSON.stringify((await get("/api/v1/requests?limit=1000", secrets.admin)).body);
    expect(requestLog).toContain("stories260K");
    // The request log keeps the key's name (never the key): `smmf requests list --key` lists one key's requests.
    const byKey = await runCli(["requests", "list", "--url", url, "--key", "app", "--json", "--limit", "1000"], 60_000, projectRoot, { SMMF_API_KEY: secrets.admin });
    expect(byKey.code, byKey.stderr).toBe(0);
    const appRows = JSON.parse(byKey.stdout) as { keyName: string; endpoint: string }[];
    expect(appRows.length).toBeGreaterThan(0);
    expect(new Set(appRows.map((r) => r.keyName))).toEqual(new Set(["app"]));
    const none = await runCli(["requests", "list", "--url", url, "--key", "ops", "--json"], 60_000, projectRoot, { SMMF_API_KEY: secrets.admin });
    expect(JSON.parse(none.stdout)).toEqual([]);
    const audit = JSON.stringify((await get("/api/v1/audit?limit=1000", secrets.admin)).body);
    for (const secret of Object.values(secrets)) {
      const random = secret.slice(-43);
      const sources = [["keys file", file], ["key list through the API", listed.stdout], ["stdout", smmf.stdout()], ["stderr", smmf.stderr()], ["metrics", metrics], ["traces", traces], ["request log", requestLog], ["audit record", audit], ["key list", list.stdout]] as const;
      for (const [where, text] of sources) expect(text.includes(random), where).toBe(false);
    }
    // The revoked key stays listed, as revoked.
    expect(JSON.parse(list.stdout).map((k: { name: string; revokedAt?: string }) => [k.name, Boolean(k.revokedAt)])).toEqual([["admin", false], ["app", true], ["ops", false], ["stale", false]]);
  });
});

describe("browser safety", () => {
  it("a body that does not say it is JSON is refused (415): a web page cannot post to the local gateway as a 'simple' request", async () => {
    for (const type of [undefined, "text/plain", "application/x-www-form-urlencoded"]) {
      const status = await new Promise<number>((done, fail) => {
        const req = request(`${url}/v1/completions`, { method: "POST", headers: { authorization: `Bearer ${secrets.admin}`, ...(type ? { "content-type": type } : {}) } }, (res) => {
          res.resume();
          done(res.statusCode!);
        });
        req.on("error", fail);
        req.end(JSON.stringify({ model: "stories260K", prompt: "Hi" }));
      });
      expect(status, type ?? "none").toBe(415);
    }
  });

  it("on loopback, a request whose Host is not a loopback name (DNS rebinding) gets 403", async () => {
    const status = (host: string) =>
      new Promise<number>((done, fail) => {
        const req = request(`${url}/healthz`, { headers: { host } }, (res) => {
          res.resume();
          done(res.statusCode!);
        });
        req.on("error", fail);
        req.end();
      });
    expect(await status("evil.example:8000")).toBe(403);
    expect(await status("localhost:8000")).toBe(200);
  });
});

describe("safe defaults", () => {
  it("`smmf serve --host 0.0.0.0` with no key refuses to start and says how to make the first one", async () => {
    const empty = mkdtempSync(join(tmpdir(), "smmf-nokeys-"));
    try {
      const out = await runCli(["serve", "--host", "0.0.0.0", "--port", String(await freePort()), "--model", `stories260K=${testModelPath()}`, "--gpu", "off", "--data-dir", empty]);
      expect(out.code).not.toBe(0);
      expect(out.stderr).toMatch(/refusing to listen on 0\.0\.0\.0 without an API key/);
      expect(out.stderr).toMatch(/smmf key create admin --role admin --bootstrap --data-dir/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("beyond loopback, /metrics needs a reader key too; --auth off starts without keys, open, and warns", async () => {
    const data = mkdtempSync(join(tmpdir(), "smmf-wide-"));
    const open = mkdtempSync(join(tmpdir(), "smmf-open-"));
    const made = await runCli(["key", "create", "ops", "--role", "reader", "--bootstrap", "--data-dir", data]);
    const reader = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(made.stdout)![0];
    let port = await freePort();
    const wide = await startSmmf(["serve", "--host", "0.0.0.0", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--data-dir", data], { timeoutMs: 60_000 });
    try {
      expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(401);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${reader}` } })).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      await wide.stop();
    }
    port = await freePort();
    const off = await startSmmf(["serve", "--host", "0.0.0.0", "--auth", "off", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--data-dir", open], { timeoutMs: 60_000 });
    try {
      expect(off.stderr()).toMatch(/API keys are off \(--auth off\)/);
      expect((await fetch(`http://127.0.0.1:${port}/v1/models`)).status).toBe(200);
    } finally {
      await off.stop();
      rmSync(data, { recursive: true, force: true });
      rmSync(open, { recursive: true, force: true });
    }
  });
});
