// The access-control part of `npm run bench` (alone: `npm run bench:auth`): what checking API keys costs a
// request. First the check itself, in process (header, record lookup, SHA-256, expiry, role); then two
// `smmf serve` processes relaying to one loopback mock upstream, one with API keys (the client sends its key),
// one without any, taking turns round by round: client latency p50/p99 of small non-streaming requests.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Authenticator } from "../src/auth/Authenticator.js";
import { KeyAccounting } from "../src/auth/KeyAccounting.js";
import { KeyLimiter } from "../src/auth/KeyLimiter.js";
import { Metrics } from "../src/telemetry/Metrics.js";
import { FileKeyStore } from "../src/auth/FileKeyStore.js";
import { newKeyId, newSecret, sha256Hex } from "../src/auth/apiKeySecret.js";
import { ApiKeyRole, ApiKeySchema } from "../src/gen/smmf/v1/auth_pb.js";
import { createLogger } from "../src/telemetry/createLogger.js";
import { startCountingUpstream, UPSTREAM_TEXT } from "../test/helpers/countingUpstream.js";
import { startServe } from "./startServe.js";
import { percentile, percentileRatio } from "./stats.js";
import { checkTarget } from "./targets.js";

const ROUNDS = Number(process.env.BENCH_AUTH_ROUNDS ?? 8);
const REQUESTS = Number(process.env.BENCH_AUTH_REQUESTS ?? 500);
const BODY = JSON.stringify({ model: "relay", messages: [{ role: "user", content: "Hi" }] });

interface Side {
  name: string;
  child: ChildProcess;
  port: number;
  agent: http.Agent;
  headers: Record<string, string>;
  latencies: number[];
}

/** A key store in `dir` with 100 keys (one of them returned, as a client would hold it). */
async function keysIn(dir: string): Promise<string> {
  const store = new FileKeyStore(dir, createLogger("error"), { watch: false });
  let secret = "";
  for (let i = 0; i < 100; i++) {
    const id = newKeyId();
    const s = newSecret(id);
    if (i === 50) secret = s;
    await store.put(create(ApiKeySchema, { id, name: `key-${i}`, role: ApiKeyRole.INFERENCE, models: ["relay"], rpm: 1_000_000, tpm: 1_000_000_000, createdAt: timestampFromMs(Date.now()), expiresAt: timestampFromMs(Date.now() + 86_400_000), secretSha256: sha256Hex(s), version: 1 }));
  }
  await store.close();
  return secret;
}

async function startSide(name: string, dataDir: string, upstreamUrl: string, dir: string, headers: Record<string, string>): Promise<Side> {
  const config = join(dir, `${name}.json`);
  writeFileSync(config, JSON.stringify({ models: [{ name: "relay", engine: "openai-compatible", file: "", baseUrl: upstreamUrl, upstreamModel: "mock" }] }));
  const { child, port } = await startServe(name, ["--config", config, "--observability", "off", "--data-dir", dataDir, "--log-level", "warn"]);
  return { name, child, port, agent: new http.Agent({ keepAlive: true, maxSockets: 1 }), headers, latencies: [] };
}

function chat(side: Side): Promise<number> {
  const started = performance.now();
  return new Promise((ok, fail) => {
    const req = http.request({ host: "127.0.0.1", port: side.port, path: "/v1/chat/completions", method: "POST", agent: side.agent, headers: { "content-type": "application/json", ...side.headers } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => (res.statusCode === 200 && text.includes(UPSTREAM_TEXT) ? ok(performance.now() - started) : fail(new Error(`${side.name}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`))));
    });
    req.on("error", fail);
    req.end(BODY);
  });
}

export async function benchAuth(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "smmf-bench-auth-"));
  const upstream = await startCountingUpstream();
  const sides: Side[] = [];
  try {
    const secret = await keysIn(join(dir, "on"));
    // The check alone, as the gateway runs it for every request.
    const store = new FileKeyStore(join(dir, "on"), createLogger("error"), { watch: false });
    const auth = new Authenticator(store, "auto");
    const accounting = new KeyAccounting(new KeyLimiter(), new Metrics());
    const header = (name: string) => (name === "authorization" ? `Bearer ${secret}` : undefined);
    const headers: Record<string, string> = {};
    const setHeader = (name: string, value: string) => void (headers[name] = value);
    const once = () => accounting.admit(auth.authorize(header, ApiKeyRole.INFERENCE), setHeader)?.(10, 20);
    for (let i = 0; i < 20_000; i++) once();
    const n = 200_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) once();
    const perCheckUs = ((performance.now() - t0) * 1000) / n;
    await store.close();
    console.log(`\naccess control: one request's key check, limits and usage (100 keys): ${perCheckUs.toFixed(2)} µs (target: the whole cost within 50 µs at p50)`);
    checkTarget("access control's cost per request ≤ 50 µs", perCheckUs <= 50, `${perCheckUs.toFixed(2)} µs`);

    sides.push(await startSide("keys on", join(dir, "on"), upstream.url, dir, { authorization: `Bearer ${secret}` }));
    sides.push(await startSide("no keys", join(dir, "off"), upstream.url, dir, {}));
    for (const side of sides) for (let i = 0; i < 200; i++) await chat(side); // warm-up
    for (const side of sides) side.latencies = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (const side of Math.random() < 0.5 ? sides : [...sides].reverse()) for (let i = 0; i < REQUESTS; i++) side.latencies.push(await chat(side));
    }
    const [on, off] = sides;
    console.log(`relayed non-streaming chat completions, one at a time, ${ROUNDS} rounds × ${REQUESTS} per side`);
    for (const s of sides) console.log(`${s.name.padEnd(10)} latency p50 ${percentile(s.latencies, 50).toFixed(3)} ms   p99 ${percentile(s.latencies, 99).toFixed(3)} ms`);
    console.log(`on − off: p50 ${(percentile(on.latencies, 50) - percentile(off.latencies, 50)).toFixed(3)} ms;   on/off: p50 ${percentileRatio(on.latencies, off.latencies, 50)}   p99 ${percentileRatio(on.latencies, off.latencies, 99)}   (90% bootstrap intervals)`);
  } finally {
    for (const s of sides) {
      s.child.kill("SIGTERM");
      s.agent.destroy();
    }
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
