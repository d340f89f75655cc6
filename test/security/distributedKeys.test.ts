import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, startControllerProc, type ControllerProc } from "../helpers/controlCluster.js";
import { startDistGateway, startDistWorker, waitUntilReady, type DistGateway, type DistWorker } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { promSamples, promValue } from "../helpers/promSamples.js";

// etcd, a worker, two gateways and a controller as processes; keys made with `smmf key --etcd`.
let etcd: TestEtcd;
let worker: DistWorker;
let gateways: DistGateway[];
let controller: ControllerProc;


const roots = () => [...gateways.map((g) => g.baseURL.replace(/\/v1$/, "")), controller.url];
const status = async (root: string, path: string, key?: string) => (await fetch(`${root}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} })).status;

beforeAll(async () => {
  etcd = await startEtcd();
  worker = await startDistWorker(etcd);
  gateways = [await startDistGateway(etcd), await startDistGateway(etcd)];
  controller = await startControllerProc(etcd, "keys-controller");
  for (const g of gateways) await waitUntilReady(g);
}, 120_000);

afterAll(async () => {
  await Promise.all([...(gateways ?? []).map((g) => g.proc.stop()), controller?.proc.stop(), worker?.proc.stop()]);
  await etcd?.close();
});

describe("API keys in etcd, across gateways and a controller", () => {
  let secret = "";

  it("a key created in etcd is checked by every gateway and the controller within a second", async () => {
    for (const root of roots()) expect(await status(root, "/api/v1/models"), root).toBe(200);
    const out = await runCli(["key", "create", "ops", "--role", "reader", "--bootstrap", "--etcd", etcd.endpoints]);
    expect(out.code, out.stderr).toBe(0);
    secret = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(out.stdout)![0];
    for (const root of roots()) {
      await expect.poll(() => status(root, "/api/v1/models"), { timeout: 1_000, interval: 20 }).toBe(401);
      expect(await status(root, "/api/v1/models", secret), root).toBe(200);
    }
    // The controller refuses a reader's change like the gateway does.
    const scale = await fetch(`${controller.url}/api/v1/models/stories260K/scale`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${secret}` }, body: JSON.stringify({ replicas: 2 }) });
    expect(scale.status).toBe(403);
  });

  it("stores only the secret's hash in etcd", async () => {
    const all = await etcd.etcdctl("get", "--prefix", "/smmf/");
    expect(all).toContain("/smmf/v1/keys/");
    expect(all.includes(secret.slice(-43))).toBe(false);
  });

  it("two gateways hold a key's requests per minute together, within 10% (each admits half)", async () => {
    const out = await runCli(["key", "create", "shared", "--role", "inference", "--rpm", "20", "--bootstrap", "--etcd", etcd.endpoints]);
    expect(out.code, out.stderr).toBe(0);
    const shared = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(out.stdout)![0];
    // Each gateway counts both (their records in etcd), and knows the key.
    for (const g of gateways) {
      const root = g.baseURL.replace(/\/v1$/, "");
      await expect.poll(async () => promValue(promSamples(await (await fetch(`${root}/metrics`)).text()), "smmf_gateway_fleet_size"), { timeout: 10_000 }).toBe(2);
      await expect.poll(() => status(root, "/v1/models", shared), { timeout: 1_000, interval: 20 }).toBe(200);
    }
    let admitted = 0;
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`${gateways[i % 2].baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${shared}` }, body: JSON.stringify({ model: "stories260K", prompt: "Once", max_tokens: 1 }) });
      await res.arrayBuffer();
      if (res.status === 200) admitted++;
      else expect(res.status).toBe(429);
    }
    expect(admitted).toBeGreaterThanOrEqual(18);
    expect(admitted).toBeLessThanOrEqual(22);
  });

  it("a revoked key is refused by both gateways and the controller within a second; revoking the last key does not open them", async () => {
    // An admin key made through one gateway's API revokes through the controller's.
    const made = await runCli(["key", "create", "boss", "--role", "admin", "--bootstrap", "--etcd", etcd.endpoints]);
    const boss = /^smmf-k[0-9a-f]{12}-\S{43}$/m.exec(made.stdout)![0];
    await expect.poll(() => status(controller.url, "/api/v1/models", boss), { timeout: 1_000, interval: 20 }).toBe(200);
    const out = await runCli(["key", "revoke", "ops", "--url", controller.url, "--api-key", boss]);
    expect(out.code, out.stderr).toBe(0);
    for (const root of roots()) {
      await expect.poll(() => status(root, "/api/v1/models", secret), { timeout: 1_000, interval: 20 }).toBe(401);
      expect(await status(root, "/api/v1/models"), root).toBe(401);
    }
  });
});
