// Observability fully on (metrics, traces exported over OTLP/HTTP to a local sink, the request log in SQLite)
// versus off (`--observability off`), side by side in one run: two `smmf serve` processes, the same model and
// settings, taking turns round by round. Reports streaming throughput and the gateway hop overhead
// (x-smmf-overhead-ms) p50/p99 of each, and their ratios.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROUNDS = Number(process.env.BENCH_OBS_ROUNDS ?? 5);
const STREAM_REQUESTS = 16;
const STREAM_TOKENS = 128;
const SMALL_REQUESTS = Number(process.env.BENCH_OBS_SMALL ?? 150);

interface Server {
  port: number;
  agent: http.Agent;
  child: ChildProcess;
}

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = http.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => r(port));
    });
  });
}

async function serve(modelPath: string, extra: string[]): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, [resolve(root, "bin/smmf.js"), "serve", "--port", String(port), "--model", `stories260K=${modelPath}`, "--threads", "1", "--sequences", "8", "--context-size", "1024", "--gpu", "off", "--log-level", "warn", ...extra], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((ok, fail) => {
    let out = "";
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes("SMMF is serving")) ok();
    });
    child.once("exit", (code) => fail(new Error(`smmf serve exited (${code})`)));
  });
  return { port, child, agent: new http.Agent({ keepAlive: true, maxSockets: 16 }) };
}

function post(s: Server, body: object): Promise<{ text: string; overheadMs: number | null }> {
  return new Promise((ok, fail) => {
    const req = http.request({ host: "127.0.0.1", port: s.port, path: "/v1/completions", method: "POST", agent: s.agent, headers: { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => {
        if (res.statusCode !== 200) return fail(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        const overhead = res.headers["x-smmf-overhead-ms"];
        ok({ text, overheadMs: typeof overhead === "string" ? Number(overhead) : null });
      });
    });
    req.on("error", fail);
    req.end(JSON.stringify(body));
  });
}

interface Tally {
  tokens: number;
  ms: number;
  overhead: number[];
}

async function streamingPhase(s: Server, tally: Tally): Promise<void> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = 0; i < STREAM_REQUESTS / 8; i++) {
        const { text } = await post(s, { model: "stories260K", prompt: "Once upon a time", max_tokens: STREAM_TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } });
        tally.tokens += Number(/"completion_tokens":(\d+)/.exec(text)?.[1] ?? 0);
      }
    }),
  );
  tally.ms += performance.now() - started;
}

async function overheadPhase(s: Server, tally: Tally): Promise<void> {
  for (let i = 0; i < SMALL_REQUESTS; i++) {
    const { overheadMs } = await post(s, { model: "stories260K", prompt: "Once", max_tokens: 2 });
    if (overheadMs !== null) tally.overhead.push(overheadMs);
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export async function benchObservability(modelPath: string): Promise<void> {
  let spans = 0;
  const sink = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      spans++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
  const dataDir = mkdtempSync(join(tmpdir(), "smmf-bench-obs-"));
  const sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
  const servers = {
    // BENCH_OBS_ON_FLAGS replaces the "on" side's flags (e.g. "--request-log off" to measure traces alone).
    on: await serve(modelPath, process.env.BENCH_OBS_ON_FLAGS?.split(" ").filter(Boolean) ?? ["--observability", "on", "--otlp-endpoint", sinkUrl, "--request-log", "on", "--request-log-capture", "full", "--data-dir", dataDir]),
    off: await serve(modelPath, ["--observability", "off"]),
  };
  const tallies: Record<"on" | "off", Tally> = { on: { tokens: 0, ms: 0, overhead: [] }, off: { tokens: 0, ms: 0, overhead: [] } };
  console.log(`\nObservability on (metrics, traces over OTLP/HTTP, request log in SQLite) vs off: ${ROUNDS} rounds of ${STREAM_REQUESTS} streams × ${STREAM_TOKENS} tokens at concurrency 8, and ${SMALL_REQUESTS} 2-token requests one at a time`);
  try {
    for (const s of Object.values(servers)) await streamingPhase(s, { tokens: 0, ms: 0, overhead: [] }); // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (["on", "off"] as const) : (["off", "on"] as const);
      for (const key of order) await streamingPhase(servers[key], tallies[key]);
      for (const key of order) await overheadPhase(servers[key], tallies[key]);
    }
  } finally {
    for (const s of Object.values(servers)) {
      s.agent.destroy();
      const exited = new Promise((r) => s.child.once("exit", r));
      s.child.kill("SIGTERM");
      await exited;
    }
    sink.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  const rate = (k: "on" | "off") => tallies[k].tokens / (tallies[k].ms / 1000);
  console.log("observability   tokens/s  overhead p50 ms  overhead p99 ms");
  for (const k of ["on", "off"] as const) {
    console.log(`${k.padEnd(14)}${rate(k).toFixed(0).padStart(10)}${percentile(tallies[k].overhead, 50).toFixed(2).padStart(17)}${percentile(tallies[k].overhead, 99).toFixed(2).padStart(17)}`);
  }
  console.log(`on/off: throughput ${(rate("on") / rate("off")).toFixed(3)}, overhead p99 ${(percentile(tallies.on.overhead, 99) / percentile(tallies.off.overhead, 99)).toFixed(3)} (${spans} OTLP export requests received)`);
  console.log("target: throughput and overhead p99 within 5% of each other");
}
