import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authenticator } from "../auth/Authenticator.js";
import { CLUSTER_HEADER } from "../auth/clusterCredential.js";
import type { KeyStore } from "../auth/KeyStore.js";
import { newKeyId, newSecret, sha256Hex } from "../auth/apiKeySecret.js";
import { ApiKeyRole, ApiKeySchema, type ApiKey } from "../gen/smmf/v1/auth_pb.js";
import { WorkerService } from "../gen/smmf/v1/worker_pb.js";
import { startServer, type RunningServer } from "./startServer.js";

// A role registers one RPC and a REST handler that answers every path; the shell's checks come first.
const id = newKeyId();
const secret = newSecret(id);
const key = create(ApiKeySchema, { id, name: "reader", role: ApiKeyRole.READER, secretSha256: sha256Hex(secret) });
const store: KeyStore = { keys: () => new Map([[id, key]]), ready: async () => undefined, subscribe: () => () => undefined, put: async () => undefined, delete: async () => false, close: async () => undefined };
const CLUSTER = "a-cluster-secret-of-some-length";
let server: RunningServer;
let reached: { path: string; key: ApiKey | null }[] = [];
let rpcs = 0;

beforeAll(async () => {
  server = await startServer({
    host: "127.0.0.1",
    port: 0,
    auth: new Authenticator(store, "auto"),
    clusterSecret: CLUSTER,
    routes(r) {
      r.service(WorkerService, {
        async health() {
          rpcs++;
          return {};
        },
      });
    },
    rest(req, res, k) {
      reached.push({ path: req.url ?? "", key: k });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    },
  });
});
afterAll(() => server?.close());

const url = () => `http://127.0.0.1:${server.port}`;

describe("the server shell", () => {
  it("checks the key before any REST route of the role runs, by the role each path needs, and hands the key on", async () => {
    reached = [];
    for (const path of ["/v1/models", "/api/v1/models", "/anything/else"]) expect((await fetch(`${url()}${path}`)).status, path).toBe(401);
    expect(reached).toEqual([]);
    expect((await fetch(`${url()}/api/v1/models`, { method: "POST", headers: { authorization: `Bearer ${secret}` } })).status).toBe(403);
    expect(reached).toEqual([]);
    expect((await fetch(`${url()}/api/v1/models`, { headers: { authorization: `Bearer ${secret}` } })).status).toBe(200);
    expect((await fetch(`${url()}/healthz`)).status).toBe(200);
    expect(reached.map((r) => [r.path, r.key?.name ?? null])).toEqual([
      ["/api/v1/models", "reader"],
      ["/healthz", null],
    ]);
  });

  it("asks every RPC for the cluster credential and the API key before the service runs", async () => {
    const client = createClient(WorkerService, createGrpcTransport({ baseUrl: url() }));
    const code = async (headers: Record<string, string>) => (await client.health({}, { headers }).then(() => Code.Unknown, (e: ConnectError) => e.code));
    expect(await code({})).toBe(Code.Unauthenticated);
    expect(await code({ authorization: `Bearer ${secret}` })).toBe(Code.Unauthenticated);
    expect(await code({ [CLUSTER_HEADER]: CLUSTER })).toBe(Code.Unauthenticated);
    // WorkerService calls need the admin role; a reader key is refused after the credential is checked.
    expect(await code({ [CLUSTER_HEADER]: CLUSTER, authorization: `Bearer ${secret}` })).toBe(Code.PermissionDenied);
    expect(rpcs).toBe(0);
  });
});
