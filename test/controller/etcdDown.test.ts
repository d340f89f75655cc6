import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startApiGateway, startControllerProc, type ControllerProc } from "../helpers/controlCluster.js";
import type { DistGateway } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// The operating API while etcd is down: the client is told to retry (503 unavailable), not that SMMF broke.
let etcd: TestEtcd;
let gateway: DistGateway & { root: string };
let controller: ControllerProc;

beforeAll(async () => {
  etcd = await startEtcd();
  [gateway, controller] = await Promise.all([startApiGateway(etcd), startControllerProc(etcd, "down-c")]);
}, 60_000);

afterAll(async () => {
  await gateway?.proc.stop();
  await controller?.proc.stop();
  await etcd?.close();
});

describe("etcd unavailable", () => {
  it("a change through the API answers 503 unavailable within its deadline, and works again once etcd is back", async () => {
    await etcd.stop();
    const started = Date.now();
    const down = await api(gateway.root, "DELETE", "/api/v1/models/ghost");
    expect(down.status, JSON.stringify(down.body)).toBe(503);
    expect(down.body.error).toMatchObject({ code: "unavailable", message: expect.stringMatching(/etcd is unavailable now; retry later/) });
    expect(Date.now() - started).toBeLessThan(15_000);
    await etcd.start();
    await expect.poll(async () => (await api(gateway.root, "DELETE", "/api/v1/models/ghost")).status, { timeout: 20_000, interval: 200 }).toBe(404);
  });

  it("a controller is ready while it takes part in the election, not while etcd is out of reach, and alive throughout", async () => {
    const ready = async () => (await fetch(`${controller.url}/readyz`)).status;
    await expect.poll(ready, { timeout: 10_000, interval: 100 }).toBe(200);
    await etcd.stop();
    // Its lease is lost within the TTL (2 s) once etcd stops answering.
    await expect.poll(ready, { timeout: 15_000, interval: 100 }).toBe(503);
    expect((await fetch(`${controller.url}/healthz`)).status).toBe(200);
    await etcd.start();
    await expect.poll(ready, { timeout: 20_000, interval: 200 }).toBe(200);
  });
});
