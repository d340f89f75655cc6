// `npm run bench:heap`: what one request allocates on the JavaScript heap of `smmf serve`, and what observability
// adds to it. Two-token chat completions with the test model, 8 at a time, observability on and off (two
// servers, measured one after the other, each after a warm-up): V8's sampling heap profiler (bench/heapSampler.mjs,
// collected objects counted) gives bytes per request and where they are allocated (by the nearest SMMF
// function on the stack, or Node's own code where there is none).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { testModelPath } from "../test/helpers/testModel.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const REQUESTS = Number(process.env.BENCH_HEAP_REQUESTS ?? 1500);
const BODY = JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 2, temperature: 0 });

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

async function serve(dir: string, observability: "on" | "off", profile: string): Promise<{ child: ChildProcess; port: number }> {
  const probe = http.createServer();
  await new Promise<void>((ok) => probe.listen(0, "127.0.0.1", ok));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((ok) => probe.close(ok));
  const args = ["--import", join(root, "bench", "heapSampler.mjs"), join(root, "bin", "smmf.js"), "serve", "--port", String(port), "--model", `stories260K=${testModelPath()}`, "--source-dir", dirname(testModelPath()), "--gpu", "off", "--threads", "1", "--observability", observability, "--data-dir", join(dir, observability), "--log-level", "warn"];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, SMMF_HEAP_PROFILE: profile } });
  await new Promise<void>((ok, fail) => {
    let out = "";
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes("SMMF is serving")) ok();
    });
    child.once("exit", (code) => fail(new Error(`smmf serve exited with ${code}`)));
  });
  return { child, port };
}

async function requests(port: number, count: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  let next = 0;
  const one = () =>
    new Promise<void>((ok, fail) => {
      const req = http.request({ host: "127.0.0.1", port, path: "/v1/chat/completions", method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? ok() : fail(new Error(`HTTP ${res.statusCode}`))));
      });
      req.on("error", fail);
      req.end(BODY);
    });
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next++ < count) await one();
  }));
  agent.destroy();
}

/** Bytes per request: in all, and by the nearest SMMF function on the stack ("(Node)" where there is none). */
function attribute(profile: { head: Node }, count: number): { total: number; by: Map<string, number> } {
  const by = new Map<string, number>();
  let total = 0;
  const walk = (n: Node, own: string) => {
    const { functionName, url, lineNumber } = n.callFrame;
    const mine = /\/(dist|src)\//.test(url) && !url.includes("node_modules") ? `${functionName || "(anonymous)"} ${url.replace(/.*\/(dist|src)\//, "$1/")}:${lineNumber + 1}` : own;
    if (n.selfSize) {
      total += n.selfSize;
      by.set(mine, (by.get(mine) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, mine);
  };
  walk(profile.head, "(Node and libraries, no SMMF frame)");
  for (const [k, v] of by) by.set(k, v / count);
  return { total: total / count, by };
}

async function measure(dir: string, observability: "on" | "off"): Promise<{ total: number; by: Map<string, number> }> {
  const file = join(dir, `${observability}.heapprofile`);
  const { child, port } = await serve(dir, observability, file);
  try {
    await requests(port, 300); // warm-up
    child.kill("SIGUSR2");
    await requests(port, REQUESTS);
    child.kill("SIGUSR2");
    while (!existsSync(file)) await new Promise((r) => setTimeout(r, 50));
    let text = "";
    // The profile is written in one call; read it once it parses.
    for (;;) {
      text = readFileSync(file, "utf8");
      try {
        return attribute(JSON.parse(text) as { head: Node }, REQUESTS);
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
}

export async function benchHeap(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "smmf-bench-heap-"));
  try {
    const off = await measure(dir, "off");
    const on = await measure(dir, "on");
    const kb = (b: number) => (b / 1024).toFixed(1);
    console.log(`\n== Heap allocated per request: smmf serve, 2-token chat completions with stories260K, 8 at a time, ${REQUESTS} requests per side (V8's sampling heap profiler, collected objects counted)`);
    console.log(`observability off: ${kb(off.total)} KB per request`);
    console.log(`observability on:  ${kb(on.total)} KB per request (+${kb(on.total - off.total)} KB, +${((100 * (on.total - off.total)) / off.total).toFixed(1)}%)`);
    console.log("where, observability on (KB per request, by the nearest SMMF function on the stack):");
    for (const [where, bytes] of [...on.by].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`${kb(bytes).padStart(8)}  ${where}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
