import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startApiGateway } from "../helpers/controlCluster.js";
import type { DistGateway } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";

// The operating API while etcd is down: the client is told to retry (503 unavailable), not that SMMF broke.
let etcd: TestEtcd;
let gateway: DistGateway & { root: string };

beforeAll(async () => {
  etcd = await startEtcd();
  gateway = await startApiGateway(etcd);
}, 60_000);

afterAll(async () => {
  await gateway?.proc.stop();
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
});
