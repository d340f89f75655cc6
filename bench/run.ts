// npm run bench: completion tokens/s and time to first token for the same model and settings through
// (a) node-llama-cpp in-process, (b) a worker over gRPC, (c) the full gateway REST path (smmf serve),
// streaming, at concurrency 1 and 8. Rounds interleave the three paths so machine noise hits them alike.
import { benchConsole } from "./console.js";
import { benchHeap } from "./heap.js";
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { getLlama, LlamaCompletion, LlamaLogLevel } from "node-llama-cpp";
import { GenerateRequestSchema, InferenceService, type GenerateRequest } from "../src/gen/smmf/v1/inference_pb.js";
import { DEFAULTS } from "../src/config/loadConfig.js";
import { benchModelPath } from "./benchModel.js";
import { benchDistributed } from "./distributed.js";
import { benchObservability } from "./observability.js";
import { benchRelay } from "./relay.js";
import { benchAuth } from "./auth.js";
import { benchSoak } from "./soak.js";
import { benchGrammar } from "./grammar.js";
import { benchFootprint } from "./footprint.js";
import { benchGateway } from "./gateway.js";
import { percentile } from "./stats.js";
import { checkTarget, finishTargets } from "./targets.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const SEQUENCES = 8;
const CONTEXT = 2048;
const MAX_TOKENS = Number(process.env.BENCH_TOKENS ?? 256);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
// Requests per round and path: at concurrency 1 one after another; at 8 spread over 8 streams.
const REQUESTS = { 1: Number(process.env.BENCH_REQUESTS_C1 ?? 6), 8: Number(process.env.BENCH_REQUESTS_C8 ?? 16) } as Record<number, number>;
const PROMPT = "Once upon a time";
// The worker's stream interval, as `smmf serve` defaults it.
const STREAM_INTERVAL_MS = Number(process.env.BENCH_STREAM_INTERVAL_MS ?? DEFAULTS.streamIntervalMs);
// Greedy decoding: every path generates the same tokens.
const SAMPLING = { temperature: 0 };

interface Sample {
  ttftMs: number;
  /** From the first token to the last. */
  decodeMs: number;
  tokens: number;
}
type Runner = () => Promise<Sample>;

function waitForLine(child: ChildProcess, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolvePromise, reject) => {
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = out.match(pattern);
      if (m) resolvePromise(m);
    });
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    child.once("exit", (code) => reject(new Error(`child exited with ${code}: ${err}`)));
  });
}

function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = http.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

// (a) node-llama-cpp in-process, with the same settings the engine uses.
async function inProcess(modelPath: string): Promise<{ run: Runner; close: () => Promise<void> }> {
  const llama = await getLlama({ build: "never", gpu: false, maxThreads: THREADS, logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ sequences: SEQUENCES, contextSize: CONTEXT, threads: THREADS });
  const free = Array.from({ length: SEQUENCES }, () => new LlamaCompletion({ contextSequence: context.getSequence() }));
  const tokens = model.tokenize(PROMPT);
  return {
    async run() {
      const completion = free.pop()!;
      const started = performance.now();
      let first = 0;
      let count = 0;
      try {
        await completion.generateCompletionWithMeta(tokens, {
          maxTokens: MAX_TOKENS,
          ...SAMPLING,
          repeatPenalty: false,
          contextShiftSize: 1,
          disableContextShift: true,
          onToken(t) {
            count += t.length;
          },
          onTextChunk() {
            if (!first) first = performance.now();
          },
        });
      } finally {
        free.push(completion);
      }
      return { ttftMs: first - started, decodeMs: performance.now() - first, tokens: count };
    },
    close: async () => {
      await context.dispose();
      await model.dispose();
    },
  };
}

// (b) a worker process over gRPC.
async function overGrpc(modelPath: string): Promise<{ run: Runner; close: () => Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", resolve(root, "bench/workerProcess.ts"), modelPath, String(SEQUENCES), String(THREADS), String(STREAM_INTERVAL_MS)], { stdio: ["ignore", "pipe", "pipe"] });
  const [, port] = await waitForLine(child, /PORT (\d+)/);
  const client = createClient(InferenceService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
  const request = create(GenerateRequestSchema, {
    kind: { case: "start", value: { model: "stories260K", input: { case: "prompt", value: PROMPT }, params: { maxTokens: MAX_TOKENS, ...SAMPLING } } },
  });
  async function* once(): AsyncIterable<GenerateRequest> {
    yield request;
  }
  return {
    async run() {
      const started = performance.now();
      let first = 0;
      let tokens = 0;
      for await (const res of client.generate(once())) {
        if (res.kind.case === "delta" && !first) first = performance.now();
        if (res.kind.case === "done") tokens = res.kind.value.usage?.completionTokens ?? 0;
      }
      return { ttftMs: first - started, decodeMs: performance.now() - first, tokens };
    },
    close: async () => {
      child.kill("SIGTERM");
    },
  };
}

// (c) smmf serve (gateway + worker), REST streaming over HTTP/1.1.
async function overRest(modelPath: string): Promise<{ run: Runner; close: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [resolve(root, "bin/smmf.js"), "serve", "--port", String(port), "--model", `stories260K=${modelPath}`, "--threads", String(THREADS), "--sequences", String(SEQUENCES), "--context-size", String(CONTEXT), "--gpu", "off", "--log-level", "warn", "--stream-interval-ms", String(STREAM_INTERVAL_MS)],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  await waitForLine(child, /SMMF is serving/);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const body = JSON.stringify({ model: "stories260K", prompt: PROMPT, max_tokens: MAX_TOKENS, stream: true, stream_options: { include_usage: true }, ...SAMPLING });
  return {
    run: () =>
      new Promise<Sample>((resolveSample, reject) => {
        const started = performance.now();
        let first = 0;
        let tail = "";
        const req = http.request({ host: "127.0.0.1", port, path: "/v1/completions", method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            if (!first) first = performance.now();
            tail = (tail + chunk).slice(-4096);
          });
          res.on("end", () => {
            const usage = tail.match(/"completion_tokens":(\d+)/);
            if (res.statusCode !== 200 || !usage) return reject(new Error(`bad response ${res.statusCode}: ${tail.slice(-300)}`));
            resolveSample({ ttftMs: first - started, decodeMs: performance.now() - first, tokens: Number(usage[1]) });
          });
        });
        req.on("error", reject);
        req.end(body);
      }),
    close: async () => {
      agent.destroy();
      child.kill("SIGTERM");
    },
  };
}

interface Tally {
  tokens: number;
  ms: number;
  ttft: number[];
  /** Per-request decode rate: tokens after the first over the time from first to last. */
  decodeRate: number[];
}

async function phase(run: Runner, concurrency: number, tally: Tally, requests = REQUESTS[concurrency]): Promise<void> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = 0; i < requests / concurrency; i++) {
        const s = await run();
        tally.tokens += s.tokens;
        tally.ttft.push(s.ttftMs);
        if (s.tokens > 1 && s.decodeMs > 0) tally.decodeRate.push((s.tokens - 1) / (s.decodeMs / 1000));
      }
    }),
  );
  tally.ms += performance.now() - started;
}


const modelPath = benchModelPath();
console.log(`SMMF benchmark: stories260K, ${MAX_TOKENS} tokens per request, greedy, threads ${THREADS}, ${SEQUENCES} sequences, stream interval ${STREAM_INTERVAL_MS} ms, ${ROUNDS} rounds × ${REQUESTS[1]} requests at concurrency 1 and ${REQUESTS[8]} at 8 per path`);
const paths = { a: await inProcess(modelPath), b: await overGrpc(modelPath), c: await overRest(modelPath) };
const names = { a: "(a) node-llama-cpp in-process", b: "(b) worker over gRPC", c: "(c) gateway REST (SSE)" };
const results: Record<string, Tally> = {};
try {
  // Warm-up: every sequence of every path once (a sequence's first use allocates its cache).
  for (const key of Object.keys(paths) as (keyof typeof paths)[]) await Promise.all(Array.from({ length: SEQUENCES }, () => paths[key].run()));
  for (let round = 0; round < ROUNDS; round++) {
    for (const concurrency of [1, 8]) {
      const keys = Object.keys(paths) as (keyof typeof paths)[];
      for (const key of keys) results[`${key}@${concurrency}`] ??= { tokens: 0, ms: 0, ttft: [], decodeRate: [] };
      if (concurrency === 1) {
        // One request at a time, the paths taking turns (in rotating order), so that drift hits them alike.
        for (let i = 0; i < REQUESTS[1]; i++) {
          for (let k = 0; k < keys.length; k++) {
            const key = keys[(i + k) % keys.length];
            await phase(paths[key].run, 1, results[`${key}@1`], 1);
          }
        }
      } else {
        for (const key of keys) await phase(paths[key].run, concurrency, results[`${key}@${concurrency}`]);
      }
    }
  }
} finally {
  for (const p of Object.values(paths)) await p.close();
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
for (const concurrency of [1, 8]) {
  const tally = (key: string) => results[`${key}@${concurrency}`];
  const rate = (key: string) => tally(key).tokens / (tally(key).ms / 1000);
  const decode = (key: string) => mean(tally(key).decodeRate);
  console.log(`\nconcurrency ${concurrency}`);
  console.log("path                             tokens/s  decode tok/s/stream  TTFT p50 ms  TTFT p99 ms");
  for (const key of ["a", "b", "c"] as const) {
    const t = tally(key);
    console.log(`${names[key].padEnd(32)}${rate(key).toFixed(0).padStart(9)}${decode(key).toFixed(0).padStart(21)}${percentile(t.ttft, 50).toFixed(2).padStart(13)}${percentile(t.ttft, 99).toFixed(2).padStart(13)}`);
  }
  console.log(`tokens/s (wall time, TTFT included): (b)/(a) = ${(rate("b") / rate("a")).toFixed(3)}   (c)/(a) = ${(rate("c") / rate("a")).toFixed(3)}`);
  console.log(`decode tokens/s per stream:          (b)/(a) = ${(decode("b") / decode("a")).toFixed(3)}   (c)/(a) = ${(decode("c") / decode("a")).toFixed(3)}`);
  checkTarget(`(c)/(a) ≥ 0.95 at concurrency ${concurrency}`, rate("c") / rate("a") >= 0.95, (rate("c") / rate("a")).toFixed(3));
  if (concurrency === 8) {
    const t = tally("c");
    checkTarget("TTFT p99 ≤ 3 × p50 at concurrency 8 (path c)", percentile(t.ttft, 99) <= 3 * percentile(t.ttft, 50), `p99 ${percentile(t.ttft, 99).toFixed(1)} ms, p50 ${percentile(t.ttft, 50).toFixed(1)} ms`);
  }
}
console.log("\ntargets: (c)/(a) >= 0.95 at concurrency 1 and 8; TTFT p99 <= 3 x p50 at 8");
if (process.env.BENCH_FOOTPRINT !== "0") await benchFootprint();
if (process.env.BENCH_GATEWAY !== "0") await benchGateway();
if (process.env.BENCH_GRAMMAR !== "0") await benchGrammar(modelPath);
if (process.env.BENCH_RELAY !== "0") await benchRelay();
if (process.env.BENCH_AUTH !== "0") await benchAuth();
if (process.env.BENCH_OBSERVABILITY !== "0") await benchObservability(modelPath);
if (process.env.BENCH_DISTRIBUTED !== "0") await benchDistributed(modelPath);
if (process.env.BENCH_CONSOLE !== "0") await benchConsole();
if (process.env.BENCH_HEAP !== "0") await benchHeap();
// The TLS soak, 1 minute here (BENCH_SOAK_MINUTES changes it; `npm run bench:soak` runs the full 10 minutes alone).
const soak = process.env.BENCH_SOAK !== "0" ? await benchSoak({ minutes: Number(process.env.BENCH_SOAK_MINUTES ?? 1) }) : { ok: true };
checkTarget("the TLS soak holds (no errors, no leak)", soak.ok, soak.ok ? "ok" : "failed: see above");
process.exit(finishTargets());
