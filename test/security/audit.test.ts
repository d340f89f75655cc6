import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Etcd3 } from "etcd3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileKeyStore } from "../../src/auth/FileKeyStore.js";
import { newKeyId, newSecret, sha256Hex } from "../../src/auth/apiKeySecret.js";
import { EtcdAuditLog, AUDIT_PREFIX } from "../../src/controller/EtcdAuditLog.js";
import { newAuditId } from "../../src/controller/newAuditId.js";
import { AuditRecordSchema } from "../../src/gen/smmf/v1/audit_pb.js";
import { ApiKeyRole, ApiKeySchema } from "../../src/gen/smmf/v1/auth_pb.js";
import { ControllerService } from "../../src/gen/smmf/v1/controller_pb.js";
import { createLogger } from "../../src/telemetry/createLogger.js";
import { api, runCli, startApiGateway, startControllerProc, type ControllerProc } from "../helpers/controlCluster.js";
import type { DistGateway } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { testModelPath } from "../helpers/testModel.js";

/** An audit record as GET /api/v1/audit answers it. */
interface AuditView {
  id: string;
  time: string;
  actor: string;
  address: string;
  action: string;
  target: string;
  requestJson: string;
  ok: boolean;
  errorCode: string;
  errorMessage: string;
}

interface AuditList {
  object: string;
  data: AuditView[];
  next: string | null;
}

async function audit(root: string, query = "", key?: string): Promise<{ status: number; body: AuditList & { error?: { code: string } } }> {
  const res = await fetch(`${root}/api/v1/audit${query}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  return { status: res.status, body: (await res.json()) as AuditList & { error?: { code: string } } };
}

async function send(root: string, method: string, path: string, body?: unknown, key?: string): Promise<{ status: number; body: { error?: { code: string } } }> {
  const headers: Record<string, string> = { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(key ? { authorization: `Bearer ${key}` } : {}) };
  const res = await fetch(`${root}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
}

/** The fields a reader of the record looks at. */
const summary = (r: AuditView) => ({ actor: r.actor, action: r.action, target: r.target, ok: r.ok, errorCode: r.errorCode });

const SPEC = { source: "stories260K.gguf", llamaCpp: { sequences: 1, contextSize: 128, embeddings: false } };

describe("audit record, embedded mode (smmf serve in this process)", () => {
  let server: TestServer;
  let dir: string;
  const secrets: Record<string, string> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "smmf-audit-"));
    server = await startTestServer({ modelDir: dirname(testModelPath()), dataDir: join(dir, "data") });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("without keys: start, scale and stop are recorded as 'anonymous', with target, request and result; refused changes with their error code", async () => {
    expect((await send(server.url, "POST", "/api/v1/models", { name: "aud", ...SPEC })).status).toBe(201);
    expect((await send(server.url, "POST", "/api/v1/models/aud/scale", { replicas: 2 })).status).toBe(200);
    expect((await send(server.url, "DELETE", "/api/v1/models/aud")).status).toBe(200);
    const invalid = await send(server.url, "POST", "/api/v1/models", { name: "bad name!", ...SPEC });
    expect(invalid.body.error?.code).toBe("invalid_argument");
    expect((await send(server.url, "POST", "/api/v1/models/ghost/scale", { replicas: 1 })).status).toBe(404);

    const { status, body } = await audit(server.url);
    expect(status).toBe(200);
    expect(body.object).toBe("list");
    expect(body.next).toBeNull();
    expect(body.data.map(summary)).toEqual([
      { actor: "anonymous", action: "ScaleModel", target: "ghost", ok: false, errorCode: "model_not_found" },
      { actor: "anonymous", action: "StartModel", target: "bad name!", ok: false, errorCode: "invalid_argument" },
      { actor: "anonymous", action: "StopModel", target: "aud", ok: true, errorCode: "" },
      { actor: "anonymous", action: "ScaleModel", target: "aud", ok: true, errorCode: "" },
      { actor: "anonymous", action: "StartModel", target: "aud", ok: true, errorCode: "" },
    ]);
    const [ghost, bad, , scale, start] = body.data;
    expect(ghost.errorMessage).toMatch(/ghost/);
    expect(bad.errorMessage).toMatch(/name/);
    expect(JSON.parse(scale.requestJson)).toEqual({ name: "aud", replicas: 2 });
    expect(JSON.parse(start.requestJson).spec).toMatchObject({ name: "aud", source: "stories260K.gguf", llamaCpp: { contextSize: 128 } });
    expect(start.address).toBe("127.0.0.1");
    expect(Date.parse(ghost.time)).toBeGreaterThanOrEqual(Date.parse(start.time));

    // Filters, and pages by the cursor.
    expect((await audit(server.url, "?target=aud")).body.data.map((r) => r.action)).toEqual(["StopModel", "ScaleModel", "StartModel"]);
    const first = await audit(server.url, "?action=ScaleModel&limit=1");
    expect(first.body.data.map((r) => r.target)).toEqual(["ghost"]);
    expect(first.body.next).toBe(first.body.data[0].id);
    const second = await audit(server.url, `?action=ScaleModel&limit=1&before=${first.body.next}`);
    expect(second.body.data.map((r) => r.target)).toEqual(["aud"]);
    expect(second.body.next).toBeNull();
    expect((await audit(server.url, "?limit=5000")).body.error?.code).toBe("invalid_argument");
  });

  it("with API keys: the admin key's name is the actor (REST and Connect), no secret is recorded, reading needs the reader role, and smmf audit prints the rows", async () => {
    const keys = new FileKeyStore(join(dir, "data"), createLogger("silent"), { watch: false });
    for (const [name, role] of [["ops-admin", ApiKeyRole.ADMIN], ["auditor", ApiKeyRole.READER], ["app", ApiKeyRole.INFERENCE]] as const) {
      const id = newKeyId();
      secrets[name] = newSecret(id);
      await keys.put(create(ApiKeySchema, { id, name, role, createdAt: timestampFromMs(Date.now()), secretSha256: sha256Hex(secrets[name]), version: 1 }));
    }
    await keys.close();
    // The server picks the keys file up by itself.
    await expect.poll(async () => (await audit(server.url)).status, { timeout: 5_000 }).toBe(401);

    expect((await send(server.url, "POST", "/api/v1/models", { name: "keyed", ...SPEC }, secrets["ops-admin"])).status).toBe(201);
    const connect = createClient(ControllerService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    await connect.scaleModel({ name: "keyed", replicas: 2 }, { headers: { authorization: `Bearer ${secrets["ops-admin"]}` }, timeoutMs: 30_000 });
    expect((await send(server.url, "DELETE", "/api/v1/models/keyed", undefined, secrets["ops-admin"])).status).toBe(200);
    // A reader may not change anything; the refusal happens before the change, so it is no change to record.
    expect((await send(server.url, "DELETE", "/api/v1/models/keyed", undefined, secrets.auditor)).status).toBe(403);

    expect((await audit(server.url, "", secrets.app)).status).toBe(403);
    const read = await audit(server.url, "?target=keyed&limit=1000", secrets.auditor);
    expect(read.status).toBe(200);
    expect(read.body.data.map(summary)).toEqual([
      { actor: "ops-admin", action: "StopModel", target: "keyed", ok: true, errorCode: "" },
      { actor: "ops-admin", action: "ScaleModel", target: "keyed", ok: true, errorCode: "" },
      { actor: "ops-admin", action: "StartModel", target: "keyed", ok: true, errorCode: "" },
    ]);
    const everything = JSON.stringify((await audit(server.url, "?limit=1000", secrets.auditor)).body);
    for (const secret of Object.values(secrets)) {
      expect(everything).not.toContain(secret);
      expect(everything).not.toContain(secret.slice(-43));
      expect(everything).not.toContain(sha256Hex(secret));
    }
    expect(everything.toLowerCase()).not.toContain("bearer");
    // Connect's ListAudit is a read too.
    const listed = await connect.listAudit({ limit: 2 }, { headers: { authorization: `Bearer ${secrets.auditor}` }, timeoutMs: 30_000 });
    expect(listed.records.map((r) => r.action)).toEqual(["StopModel", "ScaleModel"]);

    const cli = await runCli(["audit", "--api-key", secrets.auditor, "--url", server.url, "--limit", "3"]);
    expect(cli.code, cli.stderr).toBe(0);
    const lines = cli.stdout.trim().split("\n");
    expect(lines[0].split(/\s{2,}/)).toEqual(["TIME", "ACTOR", "ACTION", "TARGET", "RESULT"]);
    // ACTOR is the key's name, with the caller's address when the server knows it: "ops-admin (127.0.0.1)".
    const rows = lines.slice(1).map((l) => l.split(/\s{2,}/).slice(1));
    expect(rows.map(([actor, ...rest]) => [actor.replace(/ \(.*\)$/, ""), ...rest])).toEqual([
      ["ops-admin", "StopModel", "keyed", "ok"],
      ["ops-admin", "ScaleModel", "keyed", "ok"],
      ["ops-admin", "StartModel", "keyed", "ok"],
    ]);
    expect(rows[0][0]).toBe("ops-admin (127.0.0.1)");
    expect(cli.stderr).toMatch(/more: smmf audit --before \d{15}-[0-9a-f]{8}/);
    const json = await runCli(["audit", "--api-key", secrets.auditor, "--url", server.url, "--limit", "1", "--json"]);
    expect(JSON.parse(json.stdout).records[0]).toMatchObject({ actor: "ops-admin", action: "StopModel", ok: true });
    const refused = await runCli(["audit", "--api-key", secrets.app, "--url", server.url]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/needs role reader/);
  }, 60_000);
});

describe("audit record, distributed: in etcd, shared by controllers and gateways", () => {
  let etcd: TestEtcd;
  let controller: ControllerProc;
  let gateway: DistGateway & { root: string };

  beforeAll(async () => {
    etcd = await startEtcd();
    [controller, gateway] = await Promise.all([startControllerProc(etcd, "audit-controller"), startApiGateway(etcd)]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([controller?.proc.stop(), gateway?.proc.stop()]);
    await etcd?.close();
  });

  it("a change made on the controller is read back through a gateway", async () => {
    // No worker: the start is refused (no room), and recorded so.
    const start = await api(controller.url, "POST", "/api/v1/models", { name: "dist", ...SPEC });
    expect(start.body.error?.code).toBe("failed_precondition");
    const read = await audit(gateway.root, "?target=dist");
    expect(read.body.data.map(summary)).toEqual([{ actor: "anonymous", action: "StartModel", target: "dist", ok: false, errorCode: "failed_precondition" }]);
    expect(read.body.data[0].address).toBe("127.0.0.1");
    const stored = await etcd.etcdctl("get", "--prefix", AUDIT_PREFIX, "--print-value-only");
    expect(stored).toContain('"target":"dist"');
  });

  it("keeps only the newest records in etcd", async () => {
    const client = new Etcd3({ hosts: etcd.endpoints });
    const log = new EtcdAuditLog(client, createLogger("silent"), 3);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const id = newAuditId(Date.now() + 1000 + i);
        ids.push(id);
        await log.append(create(AuditRecordSchema, { id, actor: "t", action: "StopModel", target: `t${i}`, ok: true, version: 1 }));
      }
      await expect.poll(async () => (await client.getAll().prefix(AUDIT_PREFIX).keys()).sort(), { timeout: 10_000 }).toEqual(ids.slice(2).map((id) => AUDIT_PREFIX + id));
      const page = await log.list({ limit: 2, before: "", action: "", target: "" });
      expect(page.records.map((r) => r.target)).toEqual(["t4", "t3"]);
      expect((await log.list({ limit: 2, before: page.next, action: "", target: "" })).records.map((r) => r.target)).toEqual(["t2"]);
    } finally {
      await log.close();
      client.close();
    }
  });
});
