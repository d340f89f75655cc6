import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type TestEtcd } from "./startEtcd.js";

// Tests of a test helper (startEtcd), not of SMMF: grouped under their own name, apart from the product's tests.
describe("test helpers (not product tests)", () => {
  describe("startEtcd", () => {
    let etcd: TestEtcd;

    beforeAll(async () => {
      etcd = await startEtcd();
    });

    afterAll(async () => {
      await etcd?.close();
    });

    it("serves put/get through etcdctl", async () => {
      expect(etcd.endpoints).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(await etcd.etcdctl("put", "/smmf-test/a", "one")).toContain("OK");
      expect(await etcd.etcdctl("get", "/smmf-test/a", "--print-value-only")).toBe("one\n");
    });

    it("keeps data across stop() and start(), on the same endpoint", async () => {
      await etcd.etcdctl("put", "/smmf-test/kept", "yes");
      await etcd.stop();
      await expect(etcd.etcdctl("--dial-timeout=500ms", "--command-timeout=1s", "get", "/smmf-test/kept")).rejects.toThrow();
      await etcd.start();
      expect(await etcd.etcdctl("get", "/smmf-test/kept", "--print-value-only")).toBe("yes\n");
    });

    it("keeps data across kill() and start()", async () => {
      await etcd.etcdctl("put", "/smmf-test/killed", "still-here");
      await etcd.kill();
      await etcd.start();
      expect(await etcd.etcdctl("get", "/smmf-test/killed", "--print-value-only")).toBe("still-here\n");
    });

    it("loses data with start({ wipe: true })", async () => {
      await etcd.etcdctl("put", "/smmf-test/wiped", "gone-soon");
      await etcd.stop();
      await etcd.start({ wipe: true });
      expect(await etcd.etcdctl("get", "/smmf-test/wiped", "--print-value-only")).toBe("");
      expect(await etcd.etcdctl("get", "/smmf-test/", "--prefix", "--keys-only")).toBe("");
    });

    it("talks to the etcd3 client", async () => {
      const client = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 2_000 });
      try {
        await client.put("/smmf-test/client").value("from-etcd3");
        expect(await client.get("/smmf-test/client").string()).toBe("from-etcd3");
        expect(await etcd.etcdctl("get", "/smmf-test/client", "--print-value-only")).toBe("from-etcd3\n");
        await etcd.etcdctl("put", "/smmf-test/ctl", "from-etcdctl");
        expect(await client.get("/smmf-test/ctl").string()).toBe("from-etcdctl");
      } finally {
        client.close();
      }
    });
  });
});
