// The TLS soak (alone, 10 minutes by default: `npm run bench:soak`; part of `npm run bench` with 1 minute):
// two distributed clusters of real processes on one etcd, under a fixed open-loop request rate for a long
// time, side by side:
//   TLS on:  client --HTTPS--> smmf gateway --mTLS (gRPC)--> smmf worker --HTTPS--> mock OpenAI upstream
//   TLS off: client --HTTP-->  smmf gateway --h2c + cluster secret--> smmf worker --HTTP--> mock upstream
// Both sides get the same rate, their requests interleaved on one schedule (so machine noise hits them
// alike): non-streaming chat completions and a small share of streaming ones, relayed by the worker to a
// loopback mock upstream (test/helpers/countingUpstream.ts). After a warm-up, every minute prints one line per
// side (requests, errors, latency, RSS of the gateway and worker processes, their CPU per request); the end
// prints both sides side by side with the ratios on/off. The soak fails (ok: false) when a side had an error
// or a process's RSS grew more than the limit (10%) from the end of the warm-up to the end (medians of the RSS
// samples of the first and the last minute: see ProcessWatch). The processes run with their defaults (the
// gateways keep the request log); BENCH_SOAK_GATEWAY_FLAGS and BENCH_SOAK_WORKER_FLAGS add flags to both sides.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startSmmf, tail, type SmmfProcess } from "../test/helpers/childProcess.js";
import { startCountingUpstream, UPSTREAM_TEXT, type CountingUpstream } from "../test/helpers/countingUpstream.js";
import { startEtcd, type TestEtcd } from "../test/helpers/startEtcd.js";
import { makeTestCa, type TestCa } from "../test/helpers/testCertificates.js";
import { percentile, percentileRatio } from "./stats.js";

export interface SoakOptions {
  /** Measured minutes, after the warm-up (default BENCH_SOAK_MINUTES, else 10). */
  minutes?: number;
  /** Requests per second sent to each side (default BENCH_SOAK_RATE, else 40). */
  rate?: number;
  /** Warm-up, not counted, in seconds (default BENCH_SOAK_WARMUP_S, else 20). */
  warmupSeconds?: number;
  /** Share of the requests that stream (default BENCH_SOAK_STREAM_SHARE, else 0.1). */
  streamShare?: number;
  /** Most requests in flight per side; a request due while that many are in flight is not sent and counts as an error (default 256). */
  maxInFlight?: number;
  /** Largest RSS growth allowed from the end of the warm-up to the end, in % (default 10). */
  rssLimitPercent?: number;
  /** Seconds between progress lines (default BENCH_SOAK_REPORT_S, else 60). */
  reportSeconds?: number;
}

export interface SoakProcessSummary {
  cpuMsPerRequest: number;
  rssAfterWarmupMb: number;
  rssEndMb: number;
  rssMaxMb: number;
  rssChangePercent: number;
}

export interface SoakSideSummary {
  name: string;
  requests: number;
  streamed: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  gateway: SoakProcessSummary;
  worker: SoakProcessSummary;
}

export interface SoakResult {
  ok: boolean;
  /** Why not ok (empty when ok). */
  failures: string[];
  sides: SoakSideSummary[];
}

const REQUEST_TIMEOUT_MS = 30_000;
const RSS_SAMPLE_MS = 1_000;
const RSS_WINDOW_MS = 60_000;
const CLUSTER_SECRET = "soak-bench-cluster-secret-0123456789";

const envNumber = (name: string): number | undefined => (process.env[name] !== undefined && process.env[name] !== "" ? Number(process.env[name]) : undefined);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let clockTicks = 0;
/** Clock ticks per second of /proc/PID/stat's CPU times (getconf CLK_TCK; 100 on Linux as a rule). */
function ticksPerSecond(): number {
  if (!clockTicks) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU time (user + system) a process has used so far, ms (Linux: /proc/PID/stat). */
function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond();
}

/** Resident set size of a process now, MB (Linux: /proc/PID/status VmRSS). */
function rssMbOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * One process's RSS and CPU over the measured part. RSS is sampled every second: a Node process's RSS saws up
 * and down by 10–20% with V8's heap growing and shrinking, so "after warm-up" and "at the end" are medians of
 * the samples of the first and the last minute (a quarter of the run when it is shorter than 4 minutes).
 */
class ProcessWatch {
  readonly samples: { at: number; rss: number }[] = [];
  cpuAtStart = 0;
  cpuAtMark = 0;
  constructor(
    readonly label: string,
    readonly proc: SmmfProcess,
  ) {}
  /** RSS now, MB, recorded as a sample at `at` (ms since the start of the measured part). */
  sample(at: number): number {
    const rss = rssMbOf(this.proc.pid);
    this.samples.push({ at, rss });
    return rss;
  }
  cpu(): number {
    return cpuMsOf(this.proc.pid);
  }
  startMeasuring(): void {
    this.sample(0);
    this.cpuAtStart = this.cpuAtMark = this.cpu();
  }
  /** CPU ms since the last mark (or the start), and a new mark. */
  cpuSinceMark(): number {
    const now = this.cpu();
    const used = now - this.cpuAtMark;
    this.cpuAtMark = now;
    return used;
  }
  summary(requests: number, measuredMs: number): SoakProcessSummary {
    this.sample(measuredMs);
    const window = Math.min(RSS_WINDOW_MS, measuredMs / 4);
    const median = (from: number, to: number) => percentile(this.samples.filter((s) => s.at >= from && s.at <= to).map((s) => s.rss), 50);
    const first = median(0, window);
    const last = median(measuredMs - window, measuredMs);
    return {
      cpuMsPerRequest: (this.cpu() - this.cpuAtStart) / requests,
      rssAfterWarmupMb: first,
      rssEndMb: last,
      rssMaxMb: Math.max(...this.samples.map((s) => s.rss)),
      rssChangePercent: ((last - first) / first) * 100,
    };
  }
}

interface Window {
  requests: number;
  streamed: number;
  errors: number;
  latencies: number[];
  /** Of the non-streaming and the streaming requests. */
  nonStreamLatencies: number[];
  streamLatencies: number[];
}
const emptyWindow = (): Window => ({ requests: 0, streamed: 0, errors: 0, latencies: [], nonStreamLatencies: [], streamLatencies: [] });

interface Side {
  name: string;
  model: string;
  tls: boolean;
  upstream: CountingUpstream;
  worker: SmmfProcess;
  gateway: SmmfProcess;
  port: number;
  agent: http.Agent;
  inFlight: number;
  sent: number;
  /** Requests sent after the warm-up, counted when they end. */
  total: Window;
  /** Requests that ended since the last progress line (after the warm-up). */
  minute: Window;
  errorKinds: Map<string, number>;
  watches: { gateway: ProcessWatch; worker: ProcessWatch };
}

/** Checks an answer: a chat completion (or its SSE stream) whose text is the upstream's. */
function checkAnswer(status: number, body: string, stream: boolean): string | undefined {
  if (status !== 200) return `HTTP ${status}: ${body.slice(0, 160)}`;
  try {
    if (!stream) {
      const content = (JSON.parse(body) as { choices: { message: { content: string } }[] }).choices[0]?.message?.content;
      return content === UPSTREAM_TEXT ? undefined : `unexpected answer: ${body.slice(0, 160)}`;
    }
    let text = "";
    let done = false;
    for (const line of body.split("\n")) {
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6).trim();
      if (data === "[DONE]") {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data) as { choices?: { delta?: { content?: string } }[] };
      text += chunk.choices?.[0]?.delta?.content ?? "";
    }
    if (!done) return `stream without [DONE]: ${body.slice(-160)}`;
    return text === UPSTREAM_TEXT ? undefined : `unexpected streamed text ${JSON.stringify(text)}`;
  } catch (err) {
    return `unparsable answer (${(err as Error).message}): ${body.slice(0, 160)}`;
  }
}

/** One chat completion through a side's gateway; resolves with an error text, or undefined when it succeeded. */
function chat(side: Side, stream: boolean): Promise<string | undefined> {
  const body = JSON.stringify({ model: side.model, messages: [{ role: "user", content: "Hi" }], ...(stream ? { stream: true } : {}) });
  const request = side.tls ? https.request : http.request;
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port: side.port, path: "/v1/chat/completions", method: "POST", agent: side.agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve(checkAnswer(res.statusCode ?? 0, text, stream)));
      res.on("error", (err) => resolve(`response error: ${err.message}`));
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on("error", (err) => resolve(`request error: ${(err as NodeJS.ErrnoException).code ?? ""} ${err.message}`));
    req.end(body);
  });
}

/** The gateway's JS heap (used and total) and external memory, MB, from its /metrics; NaN when not readable. */
function gatewayHeap(side: Side): Promise<{ used: number; total: number; external: number }> {
  const request = side.tls ? https.request : http.request;
  return new Promise((resolve) => {
    const none = { used: NaN, total: NaN, external: NaN };
    const req = request({ host: "127.0.0.1", port: side.port, path: "/metrics", agent: side.agent }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        if (res.statusCode !== 200) return resolve(none);
        const metric = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "m").exec(text)?.[1] ?? NaN) / 1024 / 1024;
        resolve({ used: metric("nodejs_heap_size_used_bytes"), total: metric("nodejs_heap_size_total_bytes"), external: metric("nodejs_external_memory_bytes") });
      });
    });
    req.setTimeout(5_000, () => req.destroy());
    req.on("error", () => resolve(none));
    req.end();
  });
}

async function startSide(options: { name: string; model: string; tls: boolean; etcd: TestEtcd; ca: TestCa; dir: string; maxInFlight: number }): Promise<Side> {
  const { name, model, tls, etcd, ca, dir } = options;
  const pem = (file: string) => readFileSync(file, "utf8");
  const slug = tls ? "tls" : "plain";
  let upstream: CountingUpstream;
  let workerTls: string[] = [];
  let gatewayTls: string[] = [];
  let env: Record<string, string>;
  if (tls) {
    const up = ca.issue("upstream");
    upstream = await startCountingUpstream({ key: pem(up.key), cert: pem(up.cert) });
    const worker = ca.issue("worker");
    const server = ca.issue("gateway-server");
    const client = ca.issue("gateway-client", { organizations: ["smmf-gateway"] });
    workerTls = ["--tls-cert", worker.cert, "--tls-key", worker.key, "--tls-ca", ca.caFile];
    gatewayTls = ["--tls-cert", server.cert, "--tls-key", server.key, "--tls-ca", ca.caFile, "--tls-client-cert", client.cert, "--tls-client-key", client.key];
    env = { NODE_EXTRA_CA_CERTS: ca.caFile };
  } else {
    upstream = await startCountingUpstream();
    env = { SMMF_CLUSTER_SECRET: CLUSTER_SECRET };
  }
  const config = join(dir, `${slug}.json`);
  writeFileSync(config, JSON.stringify({ models: [{ name: model, engine: "openai-compatible", file: "", baseUrl: upstream.url, upstreamModel: "mock" }] }));
  const common = ["--etcd", etcd.endpoints, "--log-level", "warn"];
  // BENCH_SOAK_GATEWAY_FLAGS / BENCH_SOAK_WORKER_FLAGS: more flags for both sides' gateways / workers (e.g. --request-log off).
  const extra = (name: string) => (process.env[name] ?? "").split(" ").filter(Boolean);
  const worker = await startSmmf(["worker", "--config", config, ...common, "--data-dir", join(dir, `${slug}-worker`), "--worker-id", `soak-${slug}`, ...workerTls, ...extra("BENCH_SOAK_WORKER_FLAGS")], { env, timeoutMs: 60_000 });
  const port = await freePort();
  const gateway = await startSmmf(["gateway", ...common, "--data-dir", join(dir, `${slug}-gateway`), "--port", String(port), ...gatewayTls, ...extra("BENCH_SOAK_GATEWAY_FLAGS")], { env, timeoutMs: 60_000 });
  const agentOptions = { keepAlive: true, maxSockets: options.maxInFlight, timeout: 60_000 };
  const agent = tls ? new https.Agent({ ...agentOptions, ca: pem(ca.caFile) }) : new http.Agent(agentOptions);
  return {
    name,
    model,
    tls,
    upstream,
    worker,
    gateway,
    port,
    agent,
    inFlight: 0,
    sent: 0,
    total: emptyWindow(),
    minute: emptyWindow(),
    errorKinds: new Map(),
    watches: { gateway: new ProcessWatch("gateway", gateway), worker: new ProcessWatch("worker", worker) },
  };
}

const mb = (v: number) => v.toFixed(1);
const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "-");
const clock = (seconds: number) => `${Math.floor(Math.round(seconds) / 60)}:${String(Math.round(seconds) % 60).padStart(2, "0")}`;

export async function benchSoak(options: SoakOptions = {}): Promise<SoakResult> {
  const minutes = options.minutes ?? envNumber("BENCH_SOAK_MINUTES") ?? 10;
  const rate = options.rate ?? envNumber("BENCH_SOAK_RATE") ?? 40;
  const warmupSeconds = options.warmupSeconds ?? envNumber("BENCH_SOAK_WARMUP_S") ?? 180;
  const streamShare = options.streamShare ?? envNumber("BENCH_SOAK_STREAM_SHARE") ?? 0.1;
  const maxInFlight = options.maxInFlight ?? 256;
  const rssLimit = options.rssLimitPercent ?? 10;
  const reportSeconds = options.reportSeconds ?? envNumber("BENCH_SOAK_REPORT_S") ?? 60;
  if (!(minutes > 0) || !(rate > 0)) throw new Error(`soak: minutes (${minutes}) and rate (${rate}) must be positive`);

  console.log(
    `\nTLS soak: ${minutes} min (after a ${warmupSeconds} s warm-up) at ${rate} requests/s per side, open loop (at most ${maxInFlight} in flight per side), ` +
      `chat completions relayed to a loopback mock upstream, ${Math.round(streamShare * 100)}% streaming; two clusters (etcd shared, a gateway and a worker process each), side by side:\n` +
      `  TLS on:  client -HTTPS-> gateway -mTLS-> worker -HTTPS-> upstream\n` +
      `  TLS off: client -HTTP-> gateway -h2c + cluster secret-> worker -HTTP-> upstream` +
      (minutes < 10 ? `\n  (the full 10-minute soak: npm run bench:soak)` : ""),
  );

  const dir = mkdtempSync(join(tmpdir(), "smmf-bench-soak-"));
  const ca = makeTestCa("SMMF soak CA");
  let etcd: TestEtcd | undefined;
  const sides: Side[] = [];
  try {
    etcd = await startEtcd();
    sides.push(await startSide({ name: "TLS on", model: "relay-tls", tls: true, etcd, ca, dir, maxInFlight }));
    sides.push(await startSide({ name: "TLS off", model: "relay-plain", tls: false, etcd, ca, dir, maxInFlight }));

    // Each gateway answers once it has found its worker in etcd.
    for (const side of sides) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const error = await chat(side, false);
        if (!error) break;
        if (Date.now() > deadline) throw new Error(`${side.name}: the gateway does not answer: ${error}\n--- gateway stderr ---\n${tail(side.gateway.stderr())}\n--- worker stderr ---\n${tail(side.worker.stderr())}`);
        await sleep(200);
      }
    }

    let measuring = false;
    const fire = (side: Side) => {
      const n = side.sent++;
      const stream = Math.floor((n + 1) * streamShare) > Math.floor(n * streamShare);
      const counted = measuring;
      const record = (error: string | undefined, latency: number) => {
        if (!counted) return;
        for (const w of [side.total, side.minute]) {
          w.requests++;
          if (stream) w.streamed++;
          if (error) w.errors++;
          else {
            w.latencies.push(latency);
            (stream ? w.streamLatencies : w.nonStreamLatencies).push(latency);
          }
        }
        if (error) {
          const kind = error.slice(0, 200);
          side.errorKinds.set(kind, (side.errorKinds.get(kind) ?? 0) + 1);
        }
      };
      if (side.inFlight >= maxInFlight) return record(`not sent: ${maxInFlight} requests in flight (client limit)`, 0);
      side.inFlight++;
      const started = performance.now();
      void chat(side, stream).then((error) => {
        side.inFlight--;
        record(error, performance.now() - started);
      });
    };

    // One schedule for both sides, alternating: side i's requests at t0 + (k * sides + i) / (rate * sides).
    const interval = 1000 / (rate * sides.length);
    let stop = false;
    let maxLagMs = 0;
    const schedule = (async () => {
      const t0 = performance.now();
      for (let k = 0; !stop; k++) {
        const due = t0 + k * interval;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        else maxLagMs = Math.max(maxLagMs, -wait);
        if (stop) break;
        fire(sides[k % sides.length]);
      }
    })();

    await sleep(warmupSeconds * 1000);
    measuring = true;
    maxLagMs = 0;
    for (const side of sides) {
      side.watches.gateway.startMeasuring();
      side.watches.worker.startMeasuring();
      side.upstream.reset();
    }
    const measureStart = performance.now();
    const sampler = setInterval(() => {
      const at = performance.now() - measureStart;
      for (const side of sides) for (const w of Object.values(side.watches)) w.sample(at);
    }, RSS_SAMPLE_MS);

    const totalMs = minutes * 60_000;
    for (let next = reportSeconds * 1000; ; next += reportSeconds * 1000) {
      const at = Math.min(next, totalMs);
      const wait = measureStart + at - performance.now();
      if (wait > 0) await sleep(wait);
      for (const side of sides) {
        const m = side.minute;
        const gwCpu = side.watches.gateway.cpuSinceMark();
        const wkCpu = side.watches.worker.cpuSinceMark();
        const heap = await gatewayHeap(side);
        console.log(
          `[${clock(at / 1000).padStart(5)}] ${side.name.padEnd(7)}  ${String(m.requests).padStart(5)} requests (${m.streamed} streamed), ${m.errors} errors, ` +
            `p50 ${ms(percentile(m.latencies, 50))} ms, p99 ${ms(percentile(m.latencies, 99))} ms, ` +
            `RSS gateway ${mb(side.watches.gateway.sample(at))} MB (JS heap ${mb(heap.used)}/${mb(heap.total)}, external ${mb(heap.external)}), worker ${mb(side.watches.worker.sample(at))} MB, ` +
            `CPU ms/request gateway ${(gwCpu / m.requests).toFixed(3)}, worker ${(wkCpu / m.requests).toFixed(3)}`,
        );
        side.minute = emptyWindow();
      }
      if (at >= totalMs) break;
    }
    stop = true;
    await schedule;
    clearInterval(sampler);
    // Let the last requests finish (they count).
    const drainDeadline = Date.now() + REQUEST_TIMEOUT_MS + 5_000;
    while (sides.some((s) => s.inFlight > 0) && Date.now() < drainDeadline) await sleep(20);
    const measuredMs = performance.now() - measureStart;
    const measuredSeconds = measuredMs / 1000;

    const summaries: SoakSideSummary[] = sides.map((s) => ({
      name: s.name,
      requests: s.total.requests,
      streamed: s.total.streamed,
      errors: s.total.errors,
      p50Ms: percentile(s.total.latencies, 50),
      p99Ms: percentile(s.total.latencies, 99),
      gateway: s.watches.gateway.summary(s.total.requests, measuredMs),
      worker: s.watches.worker.summary(s.total.requests, measuredMs),
    }));

    // The table: one column per side, and on/off.
    const [on, off] = summaries;
    const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a / b) ? (a / b).toFixed(3) : "-");
    const row = (label: string, a: string | number, b: string | number, r = "") => console.log(label.padEnd(34) + String(a).padStart(14) + String(b).padStart(14) + r.padStart(14));
    console.log(`\nTLS soak, ${clock(measuredSeconds)} measured at ${rate} requests/s per side (warm-up ${warmupSeconds} s excluded; client schedule lag max ${maxLagMs.toFixed(1)} ms):`);
    row("", on.name, off.name, "on/off");
    row("requests (streamed)", `${on.requests} (${on.streamed})`, `${off.requests} (${off.streamed})`, ratio(on.requests, off.requests));
    row("errors", on.errors, off.errors);
    row("latency p50 ms", ms(on.p50Ms), ms(off.p50Ms), ratio(on.p50Ms, off.p50Ms));
    row("latency p99 ms", ms(on.p99Ms), ms(off.p99Ms), ratio(on.p99Ms, off.p99Ms));
    for (const kind of ["nonStreamLatencies", "streamLatencies"] as const) {
      const [a, b] = sides.map((x) => x.total[kind]);
      for (const p of [50, 99]) row(`  ${kind === "streamLatencies" ? "streaming" : "non-streaming"} p${p} ms`, ms(percentile(a, p)), ms(percentile(b, p)), ratio(percentile(a, p), percentile(b, p)));
    }
    for (const role of ["gateway", "worker"] as const) row(`${role} CPU ms/request`, on[role].cpuMsPerRequest.toFixed(3), off[role].cpuMsPerRequest.toFixed(3), ratio(on[role].cpuMsPerRequest, off[role].cpuMsPerRequest));
    const both = (s: SoakSideSummary) => s.gateway.cpuMsPerRequest + s.worker.cpuMsPerRequest;
    row("gateway + worker CPU ms/request", both(on).toFixed(3), both(off).toFixed(3), ratio(both(on), both(off)));
    for (const role of ["gateway", "worker"] as const) {
      row(`${role} RSS MB after warm-up ¹`, mb(on[role].rssAfterWarmupMb), mb(off[role].rssAfterWarmupMb), ratio(on[role].rssAfterWarmupMb, off[role].rssAfterWarmupMb));
      row(`${role} RSS MB at the end ¹`, mb(on[role].rssEndMb), mb(off[role].rssEndMb), ratio(on[role].rssEndMb, off[role].rssEndMb));
      row(`${role} RSS MB max`, mb(on[role].rssMaxMb), mb(off[role].rssMaxMb), ratio(on[role].rssMaxMb, off[role].rssMaxMb));
      const pct = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(1)}%`;
      row(`${role} RSS change (limit +${rssLimit}%)`, pct(on[role].rssChangePercent), pct(off[role].rssChangePercent));
    }
    const [onSide, offSide] = sides;
    row("upstream connections", onSide.upstream.connections, offSide.upstream.connections);
    row("upstream TLS handshakes (resumed)", `${onSide.upstream.handshakes} (${onSide.upstream.resumed})`, "-");
    console.log(`¹ medians of the RSS samples (1/s) of the first and the last ${(Math.min(RSS_WINDOW_MS, measuredMs / 4) / 1000).toFixed(0)} s; max: of all samples`);
    console.log(`latency on/off with 90% bootstrap intervals: p50 ${percentileRatio(onSide.total.latencies, offSide.total.latencies, 50, 200)}, p99 ${percentileRatio(onSide.total.latencies, offSide.total.latencies, 99, 200)}`);

    const failures: string[] = [];
    for (const s of sides) {
      if (s.total.errors > 0) {
        failures.push(`${s.name}: ${s.total.errors} errors`);
        console.log(`${s.name}: ${s.total.errors} errors:`);
        for (const [kind, count] of [...s.errorKinds].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`  ${count} × ${kind}`);
        console.log(`--- ${s.name} gateway stderr (tail) ---\n${tail(s.gateway.stderr(), 2000)}\n--- ${s.name} worker stderr (tail) ---\n${tail(s.worker.stderr(), 2000)}`);
      }
      if (s.total.requests === 0) failures.push(`${s.name}: no requests measured`);
    }
    for (const s of summaries) {
      for (const role of ["gateway", "worker"] as const) {
        if (s[role].rssChangePercent > rssLimit) failures.push(`${s.name}: ${role} RSS grew ${s[role].rssChangePercent.toFixed(1)}% (${mb(s[role].rssAfterWarmupMb)} → ${mb(s[role].rssEndMb)} MB), more than ${rssLimit}%`);
      }
    }
    console.log(failures.length === 0 ? `soak passed: 0 errors, RSS within +${rssLimit}%` : `soak FAILED: ${failures.join("; ")}`);
    return { ok: failures.length === 0, failures, sides: summaries };
  } finally {
    for (const side of sides) {
      side.agent.destroy();
      await Promise.all([side.gateway.stop(), side.worker.stop()]);
      await side.upstream.close();
    }
    await etcd?.close();
    ca.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}
