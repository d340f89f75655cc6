import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/controlCluster.js";
import { findLlamaServer } from "../../src/engines/llamaServer/llamaServerBuild.js";
import { requireLlamaServer } from "../helpers/llamaServerBinary.js";

// `smmf engine`: the engines a worker on this machine runs, and the build of llama.cpp's server.
describe("smmf engine", () => {
  it("lists llama.cpp-server when llama-server is built here, and not when it is not", async () => {
    const bin = requireLlamaServer();
    const env = { SMMF_LLAMA_SERVER: bin };
    const here = await runCli(["engine", "list", "--json"], 60_000, undefined, env);
    expect(here.code, here.stderr).toBe(0);
    const engines = JSON.parse(here.stdout) as string[];
    expect(engines.slice(0, 2)).toEqual(["llama.cpp", "llama.cpp-server"]);
    expect(engines).toContain("vllm");
    const text = await runCli(["engine", "list"], 60_000, undefined, env);
    expect(text.stdout).toContain(`llama.cpp-server\t${bin}\n`);
    const without = await runCli(["engine", "list"], 60_000, undefined, { SMMF_LLAMA_SERVER: "/nonexistent/llama-server" });
    expect(without.stdout).not.toMatch(/^llama\.cpp-server\t/m);
    expect(without.stdout).toContain("(llama.cpp-server: not built here; smmf engine build llama.cpp-server)");
  });

  it("builds: an already built llama-server is printed at once; bad usage exits 2", async () => {
    // The build npm test made (scripts/test.sh), in the cache.
    const cached = findLlamaServer({ ...process.env, SMMF_LLAMA_SERVER: "" });
    if (!cached) throw new Error("no llama-server in the cache: run node bin/smmf.js engine build llama.cpp-server (npm test does)");
    const built = await runCli(["engine", "build", "llama.cpp-server"]);
    expect(built.code, built.stderr).toBe(0);
    expect(built.stdout).toBe(`${cached}\n`);
    const wrong = await runCli(["engine", "build", "vllm"]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain("the engine to build is llama.cpp-server");
    const jobs = await runCli(["engine", "build", "llama.cpp-server", "--jobs", "many"]);
    expect(jobs.code).toBe(2);
    expect(jobs.stderr).toContain("--jobs must be a whole number");
  });
});
