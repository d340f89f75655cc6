// The relay part of `npm run bench` (alone: `npm run bench:relay`): requests relayed by `smmf serve` to a
// loopback HTTPS mock upstream, with upstream connection reuse on (the default pool) and off
// (`keepAlive: false`: a new TCP connection and TLS handshake per request), side by side. Each side is its own
// `smmf serve` process with its own mock upstream (which counts connections and TLS handshakes); the sides
// take turns, in a random order, round by round, so machine noise hits both alike.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCountingUpstream, UPSTREAM_TEXT, type CountingUpstream } from "../test/helpers/countingUpstream.js";
import { makeTestCertificates } from "../test/helpers/testCertificates.js";
import { startServe } from "./startServe.js";
import { percentile, percentileRatio } from "./stats.js";

const ROUNDS = Number(process.env.BENCH_RELAY_ROUNDS ?? 6);
const REQUESTS = Number(process.env.BENCH_RELAY_REQUESTS ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_RELAY_CONCURRENCY ?? 16);
const BODY = JSON.stringify({ model: "relay", messages: [{ role: "user", content: "Hi" }] });

interface Side {
  name: string;
  upstream: CountingUpstream;
  child: ChildProcess;
  port: number;
  agent: http.Agent;
  latencies: number[];
  ms: number;
  requests: number;
  /** CPU time the side's `smmf serve` process spent in the counted rounds, ms. */
  cpuMs: number;
}

/** CPU time (user + system) a process has used so far, ms (Linux: /proc/PID/stat, in clock ticks of 10 ms). */
function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function startSide(name: string, keepAlive: boolean, caFile: string, dir: string, tls: { key: string; cert: string }): Promise<Side> {
  const upstream = await startCountingUpstream(tls);
  const config = join(dir, `${name}.json`);
  writeFileSync(config, JSON.stringify({ models: [{ name: "relay", engine: "openai-compatible", file: "", baseUrl: upstream.url, upstreamModel: "mock", maxConcurrency: CONCURRENCY, keepAlive }] }));
  const { child, port } = await startServe(name, ["--config", config, "--observability", "off", "--data-dir", join(dir, name), "--log-level", "warn"], { ...process.env, NODE_EXTRA_CA_CERTS: caFile });
  return { name, upstream, child, port, agent: new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY }), latencies: [], ms: 0, requests: 0, cpuMs: 0 };
}

/** One non-streaming chat completion through a side; checks the answer, returns the latency in ms. */
function chat(side: Side): Promise<number> {
  const started = performance.now();
  return new Promise((ok, fail) => {
    const req = http.request({ host: "127.0.0.1", port: side.port, path: "/v1/chat/completions", method: "POST", agent: side.agent, headers: { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        if (res.statusCode !== 200 || !text.includes(UPSTREAM_TEXT)) return fail(new Error(`${side.name}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        ok(performance.now() - started);
      });
    });
    req.on("error", fail);
    req.end(BODY);
  });
}

/** `count` requests, CONCURRENCY at a time; adds their latencies and the wall time to the side. */
async function round(side: Side, count: number): Promise<void> {
  let next = 0;
  const cpu = cpuMsOf(side.child.pid!);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) {
        next++;
        side.latencies.push(await chat(side));
      }
    }),
  );
  side.ms += performance.now() - started;
  side.cpuMs += cpuMsOf(side.child.pid!) - cpu;
  side.requests += count;
}

export async function benchRelay(): Promise<void> {
  console.log(`\nrelay to a loopback HTTPS upstream: non-streaming chat completions, ${CONCURRENCY} at a time, ${ROUNDS} rounds × ${REQUESTS} requests per side (observability off)`);
  const certs = makeTestCertificates();
  const dir = mkdtempSync(join(tmpdir(), "smmf-bench-relay-"));
  const sides = [await startSide("reuse on", true, certs.caFile, dir, certs), await startSide("reuse off", false, certs.caFile, dir, certs)];
  try {
    for (const side of sides) await round(side, CONCURRENCY * 4); // warm-up, not counted
    for (const side of sides) {
      side.latencies = [];
      side.ms = 0;
      side.requests = 0;
      side.cpuMs = 0;
      side.upstream.reset();
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const side of Math.random() < 0.5 ? sides : [...sides].reverse()) await round(side, REQUESTS);
    }
    const rate = (s: Side) => s.requests / (s.ms / 1000);
    const cols = ([name, ...rest]: (string | number)[]) => String(name).padEnd(12) + rest.map((v) => String(v).padStart(16)).join("");
    const cpu = (s: Side) => s.cpuMs / s.requests;
    console.log(cols(["side", "requests/s", "p50 ms", "p99 ms", "SMMF CPU ms/req", "connections", "TLS handshakes", "resumed"]));
    for (const s of sides) {
      console.log(cols([s.name, rate(s).toFixed(0), percentile(s.latencies, 50).toFixed(2), percentile(s.latencies, 99).toFixed(2), cpu(s).toFixed(3), s.upstream.connections, s.upstream.handshakes, s.upstream.resumed]));
    }
    const [on, off] = sides;
    console.log(`on/off: requests/s ${(rate(on) / rate(off)).toFixed(3)}   SMMF CPU per request ${(cpu(on) / cpu(off)).toFixed(3)}   latency p50 ${percentileRatio(on.latencies, off.latencies, 50)}   p99 ${percentileRatio(on.latencies, off.latencies, 99)}   (90% bootstrap intervals)`);
    console.log(`connections per request: on ${(on.upstream.connections / on.requests).toFixed(4)}, off ${(off.upstream.connections / off.requests).toFixed(4)}`);
  } finally {
    for (const s of sides) {
      s.child.kill("SIGTERM");
      s.agent.destroy();
      await s.upstream.close();
    }
    certs.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}
