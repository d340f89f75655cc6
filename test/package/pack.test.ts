import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../helpers/testModel.js";

const run = promisify(execFile);

// What `npm pack` (and so `npm publish`) puts in the package: the compiled program and what installing it
// needs, never the sources, tests or benchmarks.
describe("the package", () => {
  it("holds dist/, proto/, bin/, README and LICENSE (and what its install script needs), nothing else", async () => {
    const { stdout } = await run("npm", ["pack", "--dry-run", "--json"], { cwd: projectRoot, timeout: 120_000 });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
    const allowed = [/^dist\//, /^proto\//, /^bin\//, /^patches\/[^/]+\.patch$/, /^scripts\/(postinstall|build)\.mjs$/, /^(README\.md|LICENSE|package\.json)$/];
    expect(files.filter((f) => !allowed.some((a) => a.test(f)))).toEqual([]);
    expect(files).toEqual(expect.arrayContaining(["bin/smmf.js", "dist/cli/main.js", "dist/telemetry/runTelemetryThread.js", "proto/smmf/v1/inference.proto", "README.md", "LICENSE", "package.json"]));
    expect(files.filter((f) => /\.test\.js$|^src\/|^test\/|^bench\//.test(f))).toEqual([]);
  });

  it("runs without tsx or esbuild: both are dev dependencies only", () => {
    const pkg = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as Record<string, Record<string, string>>;
    for (const name of ["tsx", "esbuild", "typescript"]) {
      expect(pkg.dependencies[name], name).toBeUndefined();
      expect(pkg.devDependencies[name], name).toBeDefined();
    }
    expect(pkg.bin).toEqual({ smmf: "bin/smmf.js" });
  });
});
