// Observability fully on (metrics, traces exported over OTLP/HTTP to a local sink, the request log in SQLite)
// versus off (`--observability off`), side by side in one run: `smmf serve` processes with the same model and
// settings, taking turns, started afresh every round. A second "off" server is the control: how far two identical servers differ on this
// machine (the resolution of the comparison). Reports streaming throughput, the gateway hop overhead
// (x-smmf-overhead-ms) and the client's end-to-end latency of small requests, with the on/off ratios and 90%
// bootstrap intervals of the percentile ratios.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { benchTracer } from "./tracer.js";
import { percentile, percentileRatio } from "./stats.js";
import { checkTarget } from "./targets.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROUNDS = Number(process.env.BENCH_OBS_ROUNDS ?? 10);
/** Streams per side and round (a multiple of 8, the concurrency). */
const STREAM_REQUESTS = Number(process.env.BENCH_OBS_STREAMS ?? 16);
const STREAM_TOKENS = 128;
/** Small requests per side and round. */
const SMALL_REQUESTS = Number(process.env.BENCH_OBS_SMALL ?? 1000);
const SIDES = ["on", "off", "control"] as const;
type Side = (typeof SIDES)[number];

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

function post(s: Server, body: object): Promise<{ text: string; overheadMs: number | null; ms: number }> {
  const started = performance.now();
  return new Promise((ok, fail) => {
    const req = http.request({ host: "127.0.0.1", port: s.port, path: "/v1/completions", method: "POST", agent: s.agent, headers: { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => {
        if (res.statusCode !== 200) return fail(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        const overhead = res.headers["x-smmf-overhead-ms"];
        ok({ text, overheadMs: typeof overhead === "string" ? Number(overhead) : null, ms: performance.now() - started });
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
  /** End to end, as the client saw it. */
  latency: number[];
}

const tally = (): Tally => ({ tokens: 0, ms: 0, overhead: [], latency: [] });

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

/**
 * Small requests one at a time, taking turns request by request between the servers (in a random order each
 * turn), so that the machine's noise falls on every side alike.
 */
async function overheadPhase(servers: Record<Side, Server>, tallies: Record<Side, Tally>): Promise<void> {
  for (let i = 0; i < SMALL_REQUESTS; i++) {
    const turn = [...SIDES].sort(() => Math.random() - 0.5);
    for (const key of turn) {
      const { overheadMs, ms } = await post(servers[key], { model: "stories260K", prompt: "Once", max_tokens: 2 });
      if (overheadMs !== null) tallies[key].overhead.push(overheadMs);
      tallies[key].latency.push(ms);
    }
  }
}



export async function benchObservability(modelPath: string): Promise<void> {
  await benchTracer();
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
  // BENCH_OBS_ON_FLAGS replaces the "on" side's flags ({sink}: the OTLP sink's URL, {data}: a data folder),
  // e.g. "--otlp-endpoint {sink} --request-log off" to measure traces alone.
  const flags: Record<Side, string[]> = {
    on: process.env.BENCH_OBS_ON_FLAGS?.replaceAll("{sink}", sinkUrl).replaceAll("{data}", dataDir).split(" ").filter(Boolean) ?? ["--observability", "on", "--otlp-endpoint", sinkUrl, "--request-log", "on", "--request-log-capture", "full", "--data-dir", dataDir],
    off: ["--observability", "off"],
    control: ["--observability", "off"],
  };
  const tallies: Record<Side, Tally> = { on: tally(), off: tally(), control: tally() };
  console.log(`\nObservability on (metrics, traces over OTLP/HTTP, request log in SQLite) vs off, and a second "off" server as the control: ${ROUNDS} rounds, each on fresh processes, of ${STREAM_REQUESTS} streams × ${STREAM_TOKENS} tokens at concurrency 8 per side, and ${SMALL_REQUESTS} 2-token requests per side one at a time, the servers taking turns`);
  let servers: Partial<Record<Side, Server>> = {};
  const stopAll = async () => {
    await Promise.all(
      Object.values(servers).map(async (s) => {
        s.agent.destroy();
        const exited = new Promise((r) => s.child.once("exit", r));
        s.child.kill("SIGTERM");
        await exited;
      }),
    );
    servers = {};
  };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Fresh processes every round, started in a random order: a process's own luck (memory layout, which core
      // its threads land on) would otherwise count as a difference between the sides.
      for (const key of [...SIDES].sort(() => Math.random() - 0.5)) servers[key] = await serve(modelPath, flags[key]);
      const running = servers as Record<Side, Server>;
      for (const key of SIDES) {
        await streamingPhase(running[key], tally()); // warm-up
        for (let i = 0; i < 50; i++) await post(running[key], { model: "stories260K", prompt: "Once", max_tokens: 2 });
      }
      for (const key of [...SIDES].sort(() => Math.random() - 0.5)) await streamingPhase(running[key], tallies[key]);
      await overheadPhase(running, tallies);
      await stopAll();
    }
  } finally {
    await stopAll();
    sink.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  const rate = (k: Side) => (tallies[k].ms > 0 ? tallies[k].tokens / (tallies[k].ms / 1000) : NaN);
  const cols = (values: (string | number)[]) => values.map((v, i) => (i === 0 ? String(v).padEnd(12) : String(v).padStart(13))).join("");
  console.log(cols(["server", "tokens/s", "overhead p50", "overhead p99", "latency p50", "latency p99"]));
  for (const k of SIDES) {
    const t = tallies[k];
    console.log(cols([k, rate(k).toFixed(0), ...[percentile(t.overhead, 50), percentile(t.overhead, 99), percentile(t.latency, 50), percentile(t.latency, 99)].map((v) => `${v.toFixed(2)} ms`)]));
  }
  console.log("ratios (90% bootstrap interval)   throughput  overhead p50       overhead p99       latency p99");
  for (const [a, b] of [["on", "off"], ["control", "off"]] as const) {
    const [x, y] = [tallies[a], tallies[b]];
    console.log(`${`${a}/off`.padEnd(34)}${(rate(a) / rate(b)).toFixed(3).padEnd(12)}${percentileRatio(x.overhead, y.overhead, 50).padEnd(19)}${percentileRatio(x.overhead, y.overhead, 99).padEnd(19)}${percentileRatio(x.latency, y.latency, 99)}`);
  }
  console.log(`${tallies.on.overhead.length} small requests per side; ${spans} OTLP export requests received from the "on" server`);
  console.log("target: on/off throughput and overhead p99 within 5% of each other (control/off shows what two identical servers differ by here)");
  checkTarget("observability on/off throughput within 5%", Math.abs(rate("on") / rate("off") - 1) <= 0.05, `${(rate("on") / rate("off")).toFixed(3)}`);
  const p99 = (k: Side) => percentile(tallies[k].overhead, 99);
  checkTarget("observability on/off overhead p99 within 5%", p99("on") / p99("off") <= 1.05, `${(p99("on") / p99("off")).toFixed(3)}`);
}
