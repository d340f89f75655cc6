import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startSmmf, type SmmfProcess } from "../helpers/childProcess.js";
import { api, runCli, testSource } from "../helpers/controlCluster.js";
import { killAll, waitFor } from "../helpers/distCluster.js";
import { startEtcd, type TestEtcd } from "../helpers/startEtcd.js";
import { startTestServer, type TestServer } from "../helpers/startTestServer.js";
import { projectRoot, testModelPath } from "../helpers/testModel.js";
import { requireLlamaServer } from "../helpers/llamaServerBinary.js";

// An installation without optional and dev dependencies (no node-llama-cpp) runs a gateway, a controller and
// a worker that serves models from OpenAI-compatible upstreams; the upstream here is an SMMF with the model.
// The API key is given to the worker only, in its environment, under a credential its config names with the
// base URLs it may go to; models name the credential. The key must not show anywhere else.
const KEY = `sk-lite-${randomBytes(12).toString("hex")}`;
let lite: string;
let etcd: TestEtcd;
let upstream: TestServer;
let echo: Server;
let echoUrl: string;
let procs: SmmfProcess[] = [];
let gatewayUrl: string;

const run = promisify(execFile);

/** Whether dist/ was built after the last change to src/ (as bin/smmf.js tells). */
function distIsCurrent(): boolean {
  const built = join(projectRoot, "dist", ".built");
  if (!existsSync(built)) return false;
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((m, e) => Math.max(m, e.isDirectory() ? newest(join(dir, e.name)) : e.name.endsWith(".ts") ? statSync(join(dir, e.name)).mtimeMs : 0), 0);
  return newest(join(projectRoot, "src")) <= statSync(built).mtimeMs;
}

beforeAll(async () => {
  lite = mkdtempSync(join(tmpdir(), "smmf-lite-"));
  if (!distIsCurrent()) throw new Error("dist/ is missing or older than src/: run npm run build (npm test does)");
  // The package as `npm pack` makes it (compiled dist/, no sources, no tsx), with the project's lock file.
  const packed = JSON.parse((await run("npm", ["pack", "--json", "--pack-destination", lite], { cwd: projectRoot, timeout: 120_000 })).stdout) as { filename: string }[];
  await run("tar", ["xzf", join(lite, packed[0].filename), "-C", lite, "--strip-components=1"]);
  cpSync(join(projectRoot, "package-lock.json"), join(lite, "package-lock.json"));
  // From npm's cache only (the project's own `npm ci` filled it): the test needs no network.
  await run("npm", ["ci", "--omit=optional", "--omit=dev", "--offline", "--no-audit", "--no-fund"], { cwd: lite, timeout: 240_000 }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`the light install from npm's cache failed (run npm ci in ${projectRoot} first: it fills the cache): ${err.stderr ?? err.message}`);
  });
  // An upstream that puts the caller's credentials in its error messages.
  echo = createServer((req, res) => {
    req.resume();
    res.writeHead(400, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { message: `echoing ${req.headers.authorization}` } }));
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}/v1`;
  [etcd, upstream] = await Promise.all([startEtcd(), startTestServer()]);
  const [gatewayPort, controllerPort] = [await freePort(), await freePort()];
  const common = ["--etcd", etcd.endpoints, "--log-level", "debug", "--lease-ttl", "2"];
  const workerConfig = join(lite, "worker.config.json");
  writeFileSync(workerConfig, JSON.stringify({ upstreamCredentials: [{ name: "lite", env: "LITE_KEY", allowedBaseUrls: [`${upstream.url}/v1`, echoUrl] }] }));
  procs = await Promise.all([
    startSmmf(["worker", ...common, "--config", workerConfig, "--no-models", "--worker-id", "lite-w"], { root: lite, env: { LITE_KEY: KEY }, timeoutMs: 60_000 }),
    startSmmf(["gateway", ...common, "--port", String(gatewayPort)], { root: lite, timeoutMs: 60_000 }),
    startSmmf(["controller", ...common, "--port", String(controllerPort)], { root: lite, timeoutMs: 60_000 }),
  ]);
  gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
}, 300_000);

afterAll(async () => {
  await killAll(...procs);
  await upstream?.close();
  await etcd?.close();
  // (Not started when the set-up failed early: nothing to wait for.)
  if (echo) await new Promise((r) => echo.close(r));
  if (lite) rmSync(lite, { recursive: true, force: true });
});

describe("a light install (npm ci --omit=optional --omit=dev)", () => {
  it("has no node-llama-cpp, and its worker offers the upstream engines only", async () => {
    expect(existsSync(join(lite, "node_modules", "node-llama-cpp"))).toBe(false);
    expect(existsSync(join(lite, "node_modules", "vitest"))).toBe(false);
    // It runs the compiled package: no TypeScript sources, no tsx.
    expect(existsSync(join(lite, "src"))).toBe(false);
    expect(existsSync(join(lite, "node_modules", "tsx"))).toBe(false);
    expect(existsSync(join(lite, "dist", "cli", "main.js"))).toBe(true);
    const workers = await waitFor("the worker registered", async () => (await api(gatewayUrl, "GET", "/api/v1/workers")).body.data?.[0], 10_000);
    expect(workers.worker.engines).not.toContain("llama.cpp");
    expect(workers.worker.engines).toEqual(expect.arrayContaining(["openai", "azure", "vllm", "tgi", "llama-server", "ollama", "openai-compatible"]));
  });

  it("starts an upstream model through the controller and serves requests", async () => {
    const started = await runCli(
      ["model", "start", "lite-model", "--engine", "openai-compatible", "--base-url", `${upstream.url}/v1`, "--upstream-model", "stories260K", "--credential", "lite", "--wait", `--url=${gatewayUrl}`, "--json"],
      60_000,
      lite,
    );
    expect(started.code, started.stderr).toBe(0);
    expect(JSON.parse(started.stdout).spec).toMatchObject({ engine: "openai-compatible", proxy: { credential: "lite", upstreamModel: "stories260K" } });
    const openai = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: "unused", maxRetries: 0 });
    const chat = await openai.chat.completions.create({ model: "lite-model", messages: [{ role: "user", content: "Hello" }], max_tokens: 5 });
    expect(chat.usage?.completion_tokens).toBe(5);
    let streamed = 0;
    for await (const chunk of await openai.completions.create({ model: "lite-model", prompt: "Once", max_tokens: 6, stream: true })) if (chunk.choices[0]?.text) streamed++;
    expect(streamed).toBeGreaterThan(0);
    // No better-sqlite3 here: the gateway has no request log, and says so; requests are unaffected.
    const log = await api(gatewayUrl, "GET", "/api/v1/requests");
    expect(log.status).toBe(503);
    expect(JSON.stringify(log.body)).toContain("request log");
  });

  it("refuses a llama.cpp model: no worker runs that engine here", async () => {
    const r = await runCli(["model", "start", "local", "--source", testSource(), `--url=${gatewayUrl}`], 60_000, lite);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/no worker runs the engine llama\.cpp \(it needs node-llama-cpp/);
  });

  it("runs llama.cpp's own server where SMMF_LLAMA_SERVER names one: a GGUF model without node-llama-cpp", async () => {
    const worker = await startSmmf(
      ["worker", "--etcd", etcd.endpoints, "--lease-ttl", "2", "--no-models", "--worker-id", "lite-gguf", "--model-dir", dirname(testModelPath()), "--threads", "1", "--log-level", "warn"],
      { root: lite, env: { SMMF_LLAMA_SERVER: requireLlamaServer() }, timeoutMs: 60_000 },
    );
    procs.push(worker);
    const started = await runCli(["model", "start", "lite-gguf", "--engine", "llama.cpp-server", "--source", testSource(), "--wait", `--url=${gatewayUrl}`, "--json"], 60_000, lite);
    expect(started.code, started.stderr).toBe(0);
    const instances = JSON.parse((await runCli(["instance", "list", "--json", `--url=${gatewayUrl}`], 60_000, lite)).stdout) as { model: string; workerId: string; engine: string }[];
    expect(instances.find((i) => i.model === "lite-gguf")).toMatchObject({ workerId: "lite-gguf", engine: "llama.cpp-server" });
    const openai = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: "unused", maxRetries: 0 });
    const answer = await openai.completions.create({ model: "lite-gguf", prompt: "Once upon a time", max_tokens: 8, temperature: 0 });
    expect(answer.usage?.completion_tokens).toBe(8);
    expect(answer.choices[0].text.length).toBeGreaterThan(0);
  });

  it("never shows the API key: not in etcd, not in the CLI's JSON, not in error bodies, not in any log line", async () => {
    const started = await runCli(["model", "start", "echo", "--engine", "openai-compatible", "--base-url", echoUrl, "--credential", "lite", "--wait", `--url=${gatewayUrl}`], 60_000, lite);
    expect(started.code, started.stderr).toBe(0);
    const res = await fetch(`${gatewayUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "echo", messages: [{ role: "user", content: "hi" }] }) });
    const body = await res.text();
    expect(res.status).toBe(400);
    // The upstream's words go to the worker's log (the key taken out), not to the client.
    expect(body).not.toContain("echoing");
    expect(body).toMatch(/rejected the request as invalid \(HTTP 400\)/);
    await waitFor("the upstream's error in the worker's log", () => procs[0].stderr().includes("echoing Bearer [redacted]"), 5_000);

    const everything = [
      body,
      await etcd.etcdctl("get", "--prefix", "/smmf/"),
      (await runCli(["model", "list", "--json", `--url=${gatewayUrl}`], 60_000, lite)).stdout,
      (await runCli(["instance", "list", "--json", `--url=${gatewayUrl}`], 60_000, lite)).stdout,
      (await runCli(["worker", "list", "--json", `--url=${gatewayUrl}`], 60_000, lite)).stdout,
      ...procs.flatMap((p) => [p.stdout(), p.stderr()]),
    ];
    expect(everything[1]).toContain('"credential":"lite"'); // the credential's name is stored, its key is not
    for (const text of everything) expect(text).not.toContain(KEY.slice(8));
  });
});
