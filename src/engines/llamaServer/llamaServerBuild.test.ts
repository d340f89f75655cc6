import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildLlamaServer } from "./buildLlamaServer.js";
import { cachedLlamaServerPath, findLlamaServer, llamaServerSource } from "./llamaServerBuild.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "smmf-llama-server-build-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function executable(path: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, "#!/bin/sh\n");
  chmodSync(path, 0o755);
  return path;
}

describe("llama-server's source and cache", () => {
  it("is node-llama-cpp's bundled llama.cpp, keyed by node-llama-cpp's version and llama.cpp's release", () => {
    const source = llamaServerSource()!;
    expect(source.bundle).toMatch(/node-llama-cpp\/llama\/gitRelease\.bundle$/);
    expect(source.key).toMatch(/^3\.21\.1-\S+$/);
    expect(cachedLlamaServerPath(source, { XDG_CACHE_HOME: dir })).toBe(join(dir, "smmf", "llama-server", source.key, "llama-server"));
  });

  it("finds the cached build, or SMMF_LLAMA_SERVER when set (which must be an executable file)", () => {
    const source = llamaServerSource()!;
    expect(findLlamaServer({ XDG_CACHE_HOME: dir })).toBeUndefined();
    const cached = executable(cachedLlamaServerPath(source, { XDG_CACHE_HOME: dir }));
    expect(findLlamaServer({ XDG_CACHE_HOME: dir })).toBe(cached);
    const other = executable(join(dir, "elsewhere", "llama-server"));
    expect(findLlamaServer({ XDG_CACHE_HOME: dir, SMMF_LLAMA_SERVER: other })).toBe(other);
    expect(findLlamaServer({ XDG_CACHE_HOME: dir, SMMF_LLAMA_SERVER: join(dir, "missing") })).toBeUndefined();
    chmodSync(other, 0o644);
    expect(findLlamaServer({ XDG_CACHE_HOME: dir, SMMF_LLAMA_SERVER: other })).toBeUndefined();
  });
});

describe("buildLlamaServer", () => {
  it("answers the cached binary at once, without building", async () => {
    const cached = executable(cachedLlamaServerPath(llamaServerSource()!, { XDG_CACHE_HOME: dir }));
    // No tool on PATH: a build would fail.
    await expect(buildLlamaServer({ env: { XDG_CACHE_HOME: dir, PATH: "" } })).resolves.toBe(cached);
  });

  it("names the missing tools and the Debian packages that have them, and leaves nothing behind", async () => {
    const err = await buildLlamaServer({ env: { XDG_CACHE_HOME: dir, PATH: join(dir, "empty-bin") } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "failed_precondition", message: "building llama-server needs git, cmake, c++ on PATH (Debian: apt-get install git cmake g++)" });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("reports a failing step with its log, and keeps the log", async () => {
    // Tools that exist but fail: git cannot clone.
    const bin = join(dir, "bin");
    for (const tool of ["git", "cmake", "c++"]) writeFileSync(executable(join(bin, tool)), "#!/bin/sh\necho \"$0 failed on purpose\" >&2\nexit 3\n");
    const err = await buildLlamaServer({ env: { XDG_CACHE_HOME: join(dir, "cache"), PATH: bin } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "internal" });
    const log = /\(log: (.+)\)$/.exec((err as Error).message)![1];
    expect((err as Error).message).toMatch(/^building llama-server failed: git clone exited with 3/);
    expect(readdirSync(dirname(log))).toContain("build.log");
  });
});
