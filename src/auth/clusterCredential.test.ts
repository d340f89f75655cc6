import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readClusterSecret } from "./clusterCredential.js";

describe("readClusterSecret", () => {
  it("takes SMMF_CLUSTER_SECRET first, else the file (trimmed), else none", () => {
    const dir = mkdtempSync(join(tmpdir(), "smmf-secret-"));
    try {
      const file = join(dir, "secret");
      writeFileSync(file, "from-the-file-0123456789\n");
      expect(readClusterSecret(file, { SMMF_CLUSTER_SECRET: "from-the-env-0123456789" })).toBe("from-the-env-0123456789");
      expect(readClusterSecret(file, {})).toBe("from-the-file-0123456789");
      expect(readClusterSecret(undefined, {})).toBeUndefined();
      expect(() => readClusterSecret(join(dir, "missing"), {})).toThrow(/cannot read the cluster secret file .*missing: ENOENT/);
      expect(() => readClusterSecret(undefined, { SMMF_CLUSTER_SECRET: "short" })).toThrow(/at least 16 characters/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
