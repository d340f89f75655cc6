import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/controlCluster.js";
import { FileKeyStore } from "../../src/auth/FileKeyStore.js";
import { newKeyId, newSecret, sha256Hex } from "../../src/auth/apiKeySecret.js";
import { ControllerService } from "../../src/gen/smmf/v1/controller_pb.js";
import { ApiKeyRole, ApiKeySchema } from "../../src/gen/smmf/v1/auth_pb.js";
import { InferenceService } from "../../src/gen/smmf/v1/inference_pb.js";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { projectRoot, testModelPath } from "../helpers/testModel.js";

// `smmf serve` (a real process) on loopback serving the test model under two names; keys made with the real
// `smmf key` command in its data dir, while it runs.
let dir: string;
let smmf: SmmfProcess;
let url: string;
const secrets: Record<string, string> = {};


async function createKey(name: string, ...flags: string[]): Promise<string> {
  const out = await runCli(["key", "create", name, "--data-dir", join(dir, "data"), ...flags]);
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
  const port = await freePort();
  smmf = await startSmmf(["serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--model", `other=${testModelPath()}`, "--gpu", "off", "--threads", "1", "--data-dir", join(dir, "data"), "--log-level", "info"], { timeoutMs: 60_000 });
  url = `http://127.0.0.1:${port}`;
}, 90_000);

afterAll(async () => {
  await smmf?.stop();
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
    for (const path of ["/api/v1/models", "/api/v1/instances", "/api/v1/requests", "/v1/nothing"]) expect((await get(path)).status, path).toBe(401);
    expect((await post("/api/v1/models", { name: "x", source: "x.gguf" })).status).toBe(401);
    // A wrong secret of the right shape, and one of another shape.
    expect((await get("/v1/models", `smmf-k000000000000-${"A".repeat(43)}`)).body.error?.code).toBe("invalid_api_key");
    expect((await get("/v1/models", "sk-not-ours")).status).toBe(401);
    const err = await openai("sk-nope").models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    for (const transport of [createConnectTransport({ baseUrl: url, httpVersion: "1.1" }), createGrpcTransport({ baseUrl: url })]) {
      expect((await rpcError(createClient(ControllerService, transport).listModels({}))).code).toBe(Code.Unauthenticated);
      expect((await rpcError(createClient(ControllerService, transport).scaleModel({ name: "stories260K", replicas: 2 }))).code).toBe(Code.Unauthenticated);
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

  it("a rotated key's old secret stops working and the new one works; a revoked key is refused within a second", async () => {
    const old = secrets.app;
    const out = await runCli(["key", "rotate", "app", "--data-dir", join(dir, "data")]);
    expect(out.code, out.stderr).toBe(0);
    const fresh = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(out.stdout)![0];
    await expect.poll(async () => (await get("/v1/models", old)).status, { timeout: 1_000, interval: 20 }).toBe(401);
    expect((await get("/v1/models", fresh)).status).toBe(200);
    secrets.app = fresh;
    expect((await runCli(["key", "revoke", "app", "--data-dir", join(dir, "data")])).code).toBe(0);
    await expect.poll(async () => (await get("/v1/models", fresh)).status, { timeout: 1_000, interval: 20 }).toBe(401);
    expect((await get("/v1/models", fresh)).body.error?.message).toMatch(/'app' has been revoked/);
    expect((await runCli(["key", "revoke", "app", "--data-dir", join(dir, "data")])).code).toBe(3);
  });

  it("an expired key is refused", async () => {
    const store = new FileKeyStore(join(dir, "data"), createLogger("error", "test"), { watch: false });
    const id = newKeyId();
    const secret = newSecret(id);
    await store.put(create(ApiKeySchema, { id, name: "stale", role: ApiKeyRole.ADMIN, secretSha256: sha256Hex(secret), createdAt: timestampFromMs(Date.now() - 120_000), expiresAt: timestampFromMs(Date.now() - 60_000), version: 1 }));
    await store.close();
    await expect.poll(async () => (await get("/v1/models", secret)).body.error?.message, { timeout: 5_000 }).toMatch(/'stale' has expired/);
  });

  it("keeps secrets only as hashes: not in the keys file (mode 0600), the logs, /metrics or the listing", async () => {
    const path = join(dir, "data", "keys.json");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const file = readFileSync(path, "utf8");
    const list = await runCli(["key", "list", "--data-dir", join(dir, "data"), "--json"]);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const secret of Object.values(secrets)) {
      const random = secret.slice(-43);
      for (const [where, text] of [["keys file", file], ["stdout", smmf.stdout()], ["stderr", smmf.stderr()], ["metrics", metrics], ["key list", list.stdout]] as const) expect(text.includes(random), where).toBe(false);
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
      expect(out.stderr).toMatch(/smmf key create admin --role admin/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
