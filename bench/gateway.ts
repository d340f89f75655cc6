// `npm run bench:gateway` (also part of `npm run bench`): the gateway's own capacity and overhead, measured the
// way the fastest gateways measure theirs. A loopback mock OpenAI upstream (bench/mockOpenAi.ts, its own
// process) answers every request with two tokens; SMMF relays to it in two layouts, embedded (`smmf serve`) and
// split (a gateway and a worker process on etcd); load comes from autocannon in a process of its own
// (bench/loadgen.ts). Printed side by side in one run: the mock alone; each layout at saturation (32 and 256
// connections) and at fixed offered rates (200 and 1,000 requests/s): achieved rate, errors, client latency
// p50/p99 and the gateway's `x-smmf-overhead-ms` p50/p99; bytes allocated per request and GC pause time of
// the SMMF processes (from V8's --trace-gc-nvp: `allocated` and `pause` of every collection). Observability on.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startEtcd } from "../test/helpers/startEtcd.js";
import type { LoadResult, LoadSpec } from "./loadgen.js";
import { create } from "@bufbuild/protobuf";
import { GenerateRequestSchema } from "../src/gen/smmf/v1/inference_pb.js";
import { GrpcWorker } from "../src/gateway/GrpcWorker.js";
import { checkTarget } from "./targets.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SECONDS = Number(process.env.BENCH_GATEWAY_SECONDS ?? 10);
/** For exploration: only these layouts (comma-separated: bare, embedded, split); and a folder for CPU profiles of the SMMF processes. */
const LAYOUTS = (process.env.BENCH_GATEWAY_LAYOUTS ?? "bare,embedded,split").split(",");
const PROFILE_DIR = process.env.BENCH_GATEWAY_CPU_PROF;
const BODY = JSON.stringify({ model: "relay", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
const PATH = "/v1/chat/completions";

/** Garbage collection in one SMMF process, read from its --trace-gc-nvp lines as they come. */
class GcWatch {
  allocated = 0;
  pauseMs = 0;
  collections = 0;
  private rest = "";

  constructor(child: ChildProcess) {
    child.stdout!.on("data", (chunk: Buffer) => {
      const text = this.rest + chunk.toString();
      const lines = text.split("\n");
      this.rest = lines.pop()!;
      for (const line of lines) {
        const pause = /\bpause=([\d.]+)/.exec(line);
        const allocated = /\ballocated=(\d+)/.exec(line);
        if (!pause || !allocated) continue;
        this.pauseMs += Number(pause[1]);
        this.allocated += Number(allocated[1]);
        this.collections++;
      }
    });
  }

  snapshot(): { allocated: number; pauseMs: number; collections: number } {
    return { allocated: this.allocated, pauseMs: this.pauseMs, collections: this.collections };
  }
}

interface Proc {
  child: ChildProcess;
  gc?: GcWatch;
}

async function freePort(): Promise<number> {
  const probe = http.createServer();
  await new Promise<void>((ok) => probe.listen(0, "127.0.0.1", ok));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((ok) => probe.close(ok));
  return port;
}

/** Spawns `argv` and waits for a line of its stdout that matches `ready` (or a trace-gc line before it). */
function start(argv: string[], ready: RegExp, gc: boolean): Promise<Proc & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, argv, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  const watch = gc ? new GcWatch(child) : undefined;
  return new Promise((ok, fail) => {
    let out = "";
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = ready.exec(out);
      if (m) {
        child.stdout!.off("data", onData);
        if (!gc) child.stdout!.resume();
        ok({ child, gc: watch, match: m });
      } else if (out.length > 1 << 20) out = out.slice(-4096);
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => fail(new Error(`${argv.slice(-8).join(" ")} exited with ${code}`)));
  });
}

function smmf(args: string[], ready: RegExp): Promise<Proc & { match: RegExpExecArray }> {
  const prof = PROFILE_DIR ? ["--cpu-prof", "--cpu-prof-dir", resolve(PROFILE_DIR)] : [];
  return start(["--trace-gc-nvp", ...prof, join(root, "bin", "smmf.js"), ...args], ready, true);
}

function load(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(root, "bench", "loadgen.ts"), JSON.stringify(spec)], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.once("exit", (code) => (code === 0 ? ok(JSON.parse(out.trim().split("\n").pop()!) as LoadResult) : fail(new Error(`the load generator exited with ${code}`))));
  });
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Row {
  layout: string;
  load: string;
  result: LoadResult;
  /** Per request, bytes allocated by the SMMF processes; GC pause per second of the run. */
  allocatedPerRequest?: number;
  gcPauseMsPerS?: number;
  gcPauseMsTotal?: number;
}

const LOADS: { name: string; connections: number; rate?: number }[] = [
  { name: "saturation, 32 conns", connections: 32 },
  { name: "saturation, 256 conns", connections: 256 },
  { name: "200 req/s offered", connections: 64, rate: 200 },
  { name: "1,000 req/s offered", connections: 64, rate: 1000 },
];

async function runLoads(layout: string, url: string, procs: Proc[], rows: Row[]): Promise<void> {
  // Warm-up: JIT, connection pools.
  await load({ url, path: PATH, body: BODY, connections: 32, durationS: 3 });
  for (const l of LOADS) {
    const before = procs.map((p) => p.gc!.snapshot());
    const result = await load({ url, path: PATH, body: BODY, connections: l.connections, durationS: SECONDS, rate: l.rate });
    const after = procs.map((p) => p.gc!.snapshot());
    const allocated = after.reduce((sum, a, i) => sum + a.allocated - before[i].allocated, 0);
    const pause = after.reduce((sum, a, i) => sum + a.pauseMs - before[i].pauseMs, 0);
    rows.push({ layout, load: l.name, result, allocatedPerRequest: result.requests > 0 ? allocated / result.requests : undefined, gcPauseMsPerS: pause / result.seconds, gcPauseMsTotal: pause });
  }
}

function stop(...procs: (Proc | undefined)[]): Promise<void> {
  return Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((ok) => {
          if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return ok();
          p.child.once("exit", () => ok());
          // A profiled process writes its profile as it exits: let it end on its own.
          p.child.kill(PROFILE_DIR ? "SIGTERM" : "SIGKILL");
        }),
    ),
  ).then(() => undefined);
}

/**
 * The floor under the split layout's overhead: one gateway→worker round trip (GrpcWorker, the gateway's client,
 * to the worker's Generate handler in another process, whose worker answers at once), one call at a time with
 * nothing else running. What the overhead adds to it at a load is queueing.
 */
async function grpcHopFloor(calls = 5_000): Promise<{ p50: number; p99: number }> {
  const server = await start(["--import", "tsx", join(root, "bench", "grpcHopServer.ts")], /PORT (\d+)/, false);
  const worker = new GrpcWorker(`http://127.0.0.1:${server.match[1]}`, {});
  try {
    const request = create(GenerateRequestSchema, { kind: { case: "start", value: { model: "m", input: { case: "prompt", value: "Hi" } } } });
    const signal = new AbortController().signal;
    const times: number[] = [];
    for (let i = 0; i < calls + 500; i++) {
      const t = performance.now();
      for await (const _ of worker.generate(request, signal)) void _;
      if (i >= 500) times.push(performance.now() - t); // the first 500 warm up
    }
    return percentiles(times);
  } finally {
    worker.close();
    await stop(server);
  }
}

function percentiles(times: number[]): { p50: number; p99: number } {
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(times.length * 0.5)], p99: times[Math.floor(times.length * 0.99)] };
}

interface Floor {
  p50: number;
  p99: number;
  /** Bytes allocated per round trip by both processes (V8's --trace-gc-nvp). */
  allocated: number;
}

/**
 * What the machine and Node cost before SMMF adds anything: round trips, one at a time, from a process of its
 * own (bench/floorEchoClient.ts) to a bare HTTP/2 server answering as a gRPC server answers a short call, and to
 * a bare TCP echo (bench/floorEcho.ts), both processes' allocations counted.
 */
async function rawFloors(calls = 10_000): Promise<{ h2: Floor; tcp: Floor }> {
  const server = await start(["--trace-gc-nvp", "--import", "tsx", join(root, "bench", "floorEcho.ts")], /PORTS (\d+) (\d+)/, true);
  const run = async (mode: "h2" | "tcp", port: string): Promise<Floor> => {
    const serverBefore = server.gc!.snapshot().allocated;
    const client = await start(["--trace-gc-nvp", "--import", "tsx", join(root, "bench", "floorEchoClient.ts"), mode, port, String(calls)], /RESULT (\{.*\})/, true);
    await new Promise((ok) => (client.child.exitCode !== null ? ok(undefined) : client.child.once("exit", ok)));
    const result = JSON.parse(client.match[1]) as { p50: number; p99: number };
    // The client's whole life is counted (its start-up too, a small share over this many calls).
    return { ...result, allocated: (server.gc!.snapshot().allocated - serverBefore + client.gc!.snapshot().allocated) / (calls + 500) };
  };
  try {
    return { h2: await run("h2", server.match[1]), tcp: await run("tcp", server.match[2]) };
  } finally {
    await stop(server);
  }
}

const f = (v: number | undefined, digits = 1) => (v === undefined ? "–" : v.toFixed(digits));

export async function benchGateway(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "smmf-bench-gw-"));
  const rows: Row[] = [];
  let mock: Proc | undefined;
  let hop: { p50: number; p99: number } | undefined;
  let raw: Awaited<ReturnType<typeof rawFloors>> | undefined;
  try {
    mock = await start(["--import", "tsx", join(root, "bench", "mockOpenAi.ts")], /PORT (\d+)/, false);
    const mockUrl = `http://127.0.0.1:${(mock as Proc & { match: RegExpExecArray }).match[1]}`;
    const config = join(dir, "relay.json");
    writeFileSync(config, JSON.stringify({ models: [{ name: "relay", engine: "openai-compatible", file: "", baseUrl: `${mockUrl}/v1`, upstreamModel: "mock", maxConcurrency: 256 }] }));

    console.log(`\n== Gateway capacity and overhead: relayed to a loopback mock upstream (2 tokens), load from autocannon in its own process, ${SECONDS} s per run, observability on`);
    rows.push({ layout: "mock alone", load: "saturation, 32 conns", result: await load({ url: mockUrl, path: PATH, body: BODY, connections: 32, durationS: SECONDS }) });

    // The floor: the leanest relay Node can be (bench/floorRelay.ts), under the same loads.
    if (LAYOUTS.includes("bare")) {
      const bare = await start(["--trace-gc-nvp", "--import", "tsx", join(root, "bench", "floorRelay.ts"), (mock as Proc & { match: RegExpExecArray }).match[1]], /PORT (\d+)/, true);
      try {
        await runLoads("bare Node relay", `http://127.0.0.1:${bare.match[1]}`, [bare], rows);
      } finally {
        await stop(bare);
      }
    }

    // Embedded: gateway, registry and worker in one process.
    if (LAYOUTS.includes("embedded")) {
      const port = await freePort();
      const serve = await smmf(["serve", "--config", config, "--port", String(port), "--data-dir", join(dir, "serve"), "--log-level", "warn"], /SMMF is serving/);
      try {
        await runLoads("embedded", `http://127.0.0.1:${port}`, [serve], rows);
      } finally {
        await stop(serve);
      }
    }

    // Split: a gateway process and a worker process on etcd.
    if (LAYOUTS.includes("split")) {
      hop = await grpcHopFloor();
      raw = await rawFloors();
      const etcd = await startEtcd();
      let worker: Proc | undefined;
      let gateway: Proc | undefined;
      try {
        worker = await smmf(["worker", "--etcd", etcd.endpoints, "--config", config, "--data-dir", join(dir, "worker"), "--log-level", "warn"], /SMMF worker \S+ serving/);
        const port = await freePort();
        gateway = await smmf(["gateway", "--etcd", etcd.endpoints, "--port", String(port), "--data-dir", join(dir, "gateway"), "--log-level", "warn"], /serving at/);
        const url = `http://127.0.0.1:${port}`;
        await until("the gateway to list the relay model", async () => {
          const res = await fetch(`${url}${PATH}`, { method: "POST", headers: { "content-type": "application/json" }, body: BODY });
          await res.arrayBuffer();
          return res.status === 200;
        });
        await runLoads("split", url, [gateway, worker], rows);
      } finally {
        await stop(gateway, worker);
        await etcd.close();
      }
    }
  } finally {
    await stop(mock);
    rmSync(dir, { recursive: true, force: true });
  }

  console.log(`machine: ${cpus().length} cores, node ${process.version}`);
  const head = ["layout", "load", "achieved/s", "errors", "p50 ms", "p99 ms", "overhead p50", "overhead p99", "alloc KB/req", "GC pause ms/s"];
  const table = rows.map((r) => [r.layout, r.load, f(r.result.perSecond, 0), String(r.result.errors), f(r.result.latencyP50Ms), f(r.result.latencyP99Ms), f(r.result.overheadP50Ms, 2), f(r.result.overheadP99Ms, 2), f(r.allocatedPerRequest === undefined ? undefined : r.allocatedPerRequest / 1024, 0), f(r.gcPauseMsPerS)]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
  for (const line of [head, ...table]) console.log(line.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "));
  for (const r of rows) if (r.result.firstError) console.log(`  ${r.layout}, ${r.load}: first error: ${r.result.firstError}`);
  const at = (layout: string, name: string) => rows.find((r) => r.layout === layout && r.load === name)?.result;
  const sat = (layout: string) => Math.max(at(layout, LOADS[0].name)?.perSecond ?? 0, at(layout, LOADS[1].name)?.perSecond ?? 0);
  const mockRate = rows[0].result.perSecond;
  console.log(`embedded at saturation: ${f(sat("embedded"), 0)} req/s (${f(sat("embedded") / mockRate, 3)} of the mock alone; target ≥ 3,000: ${f(sat("embedded") / 3000, 2)}×)`);
  console.log(`split at saturation: ${f(sat("split"), 0)} req/s (target ≥ 1,500: ${f(sat("split") / 1500, 2)}×)`);
  const k = at("split", LOADS[3].name);
  console.log(`split at 1,000 req/s offered: ${f(k?.perSecond, 0)} achieved, ${k?.errors} errors, overhead p50 ${f(k?.overheadP50Ms, 2)} ms (target ≤ 0.5), p99 ${f(k?.overheadP99Ms, 2)} ms (target ≤ 2)`);
  if (LAYOUTS.includes("embedded")) checkTarget("embedded at saturation ≥ 3,000 requests/s", sat("embedded") >= 3000, `${f(sat("embedded"), 0)}/s`);
  if (LAYOUTS.includes("split")) {
    checkTarget("split at saturation ≥ 1,500 requests/s", sat("split") >= 1500, `${f(sat("split"), 0)}/s`);
    checkTarget("split at 1,000/s: overhead p50 ≤ 0.5 ms", (k?.overheadP50Ms ?? Infinity) <= 0.5, `${f(k?.overheadP50Ms, 2)} ms`);
    checkTarget("split at 1,000/s: overhead p99 ≤ 2 ms", (k?.overheadP99Ms ?? Infinity) <= 2, `${f(k?.overheadP99Ms, 2)} ms`);
  }
  for (const r of rows) if (r.layout === "embedded" || r.layout === "split") checkTarget(`${r.layout}, ${r.load}: no errors`, r.result.errors === 0, `${r.result.errors} errors`);
  const b = at("bare Node relay", LOADS[3].name);
  if (b) console.log(`the bare Node relay (no SMMF: bench/floorRelay.ts) at 1,000 req/s offered: overhead p50 ${f(b.overheadP50Ms, 2)} ms, p99 ${f(b.overheadP99Ms, 2)} ms; at saturation ${f(sat("bare Node relay"), 0)} req/s`);
  if (raw) console.log(`one round trip to another process, one at a time, nothing else running: bare HTTP/2 (a gRPC-shaped answer) p50 ${f(raw.h2.p50, 2)} ms, p99 ${f(raw.h2.p99, 2)} ms, ${f(raw.h2.allocated / 1024, 1)} KB allocated (both ends); bare TCP echo p50 ${f(raw.tcp.p50, 2)} ms, p99 ${f(raw.tcp.p99, 2)} ms, ${f(raw.tcp.allocated / 1024, 1)} KB`);
  if (hop) console.log(`the gRPC hop alone (gateway client → worker handler in another process, one call at a time, nothing else running): p50 ${f(hop.p50, 2)} ms, p99 ${f(hop.p99, 2)} ms`);
  const bareAlloc = rows.filter((r) => r.layout === "bare Node relay" && r.allocatedPerRequest !== undefined).map((r) => r.allocatedPerRequest!);
  if (raw && bareAlloc.length) console.log(`Node's floor for the split layout (the bare relay plus one bare HTTP/2 round trip): ${f((Math.min(...bareAlloc) + raw.h2.allocated) / 1024, 0)} KB allocated per request`);
  for (const layout of ["bare Node relay", "embedded", "split"]) {
    const allocs = rows.filter((r) => r.layout === layout && r.allocatedPerRequest !== undefined).map((r) => r.allocatedPerRequest! / 1024);
    if (allocs.length) console.log(`${layout}: allocated per request ${f(Math.min(...allocs), 0)}–${f(Math.max(...allocs), 0)} KB${layout === "bare Node relay" ? "" : " (target ≤ 40 KB)"}`);
    if (allocs.length && layout !== "bare Node relay") checkTarget(`${layout}: ≤ 40 KB allocated per request`, Math.max(...allocs) <= 40, `${f(Math.max(...allocs), 0)} KB`);
  }
}
