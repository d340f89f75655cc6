import { readdirSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { testModelPath } from "../helpers/testModel.js";

// bin/smmf.js gives the roles that host llama.cpp (serve, worker) a libuv thread pool of one thread, unless
// UV_THREADPOOL_SIZE is set (node-llama-cpp's decode and sampling jobs then run one after the other instead of
// slowing each other down; README, Benchmark). The pool's threads exist from the process's first pool job on.
const started: SmmfProcess[] = [];
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
});

async function serveThreads(env: Record<string, string>): Promise<number> {
  const port = await freePort();
  const proc = await startSmmf(["serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--threads", "1", "--gpu", "off", "--log-level", "warn", "--request-log", "off"], { env });
  started.push(proc);
  // Answer one request first: every part that starts threads has run.
  const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "stories260K", prompt: "Once", max_tokens: 2 }) });
  expect(res.status).toBe(200);
  return readdirSync(`/proc/${proc.pid}/task`).length;
}

describe("libuv thread pool of the llama.cpp roles", () => {
  it("smmf serve runs with one pool thread by default, and with UV_THREADPOOL_SIZE's when it is set", async () => {
    const [byDefault, four, two] = await Promise.all([serveThreads({}), serveThreads({ UV_THREADPOOL_SIZE: "4" }), serveThreads({ UV_THREADPOOL_SIZE: "2" })]);
    expect(four - two).toBe(2);
    expect(two - byDefault).toBe(1);
  }, 60_000);
});
