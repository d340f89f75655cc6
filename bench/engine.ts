// npm run bench:engine: the llama.cpp engine at concurrency, side by side in one run.
// 1. Throughput: llama.cpp's own llama-server (when a binary is found: `smmf engine build llama.cpp-server`, or
//    SMMF_LLAMA_SERVER), node-llama-cpp in-process and `smmf serve` with each engine (llama.cpp, and
//    llama.cpp-server when the binary is found), on synth-40M-q8_0 and stories260K, at concurrency 1, 4 and 8:
//    tokens/s, TTFT p50/p99, ratios.
// 2. Multi-turn chat on the synthetic model (10 turns growing a ~1,500-token history): TTFT per turn with and
//    without prefix reuse.
// 3. Prefix-aware routing: two instances behind one gateway, 16 conversations at once, under `prefix` and `p2c`:
//    the share of prompt tokens served from cache and each instance's share of requests.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { homedir, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { getLlama, LlamaCompletion, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { findLlamaServer } from "../src/engines/llamaServer/llamaServerBuild.js";
import { LLAMA_SERVER_ENGINE } from "../src/engines/proxyPresets.js";
import { startServe } from "./startServe.js";
import { percentile } from "./stats.js";
import { checkTarget } from "./targets.js";

const THREADS = 1;
const SEQUENCES = 8;
const CONTEXT = 2048;
const TOKENS = Number(process.env.BENCH_ENGINE_TOKENS ?? 128);
const ROUNDS = Number(process.env.BENCH_ENGINE_ROUNDS ?? 3);
const CONCURRENCY = [1, 4, 8];
const PROMPT = "Once upon a time there was a little girl named Lily. She loved to play outside in the park with her friends.";

function modelDir(): string {
  const dir = process.env.SMMF_MODEL_DIR ? resolve(process.env.SMMF_MODEL_DIR) : resolve(import.meta.dirname, "../../shared/models");
  for (const file of ["synth-40M-q8_0.gguf", "stories260K.gguf"]) {
    if (!existsSync(join(dir, file))) throw new Error(`benchmark model missing: ${join(dir, file)}; put it there or set SMMF_MODEL_DIR (see ../shared/models/README.md)`);
  }
  return dir;
}

interface Sample {
  ttftMs: number;
  tokens: number;
}
interface Side {
  name: string;
  run(): Promise<Sample>;
  close(): Promise<void>;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
// llama-server closes idle keep-alive connections on its own schedule (a request on one it is closing fails
// with "socket hang up"): a connection per request there (~0.1 ms, against ~0.5 s per 128-token request).
const freshAgent = new http.Agent({ keepAlive: false, maxSockets: 64 });

/** A POST with a streamed (SSE) answer: TTFT (first chunk with content), tokens (usage, else content chunks). */
function streamPost(port: number, path: string, body: unknown, via: http.Agent = agent): Promise<Sample & { cached: number; prompt: number; text: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((ok, fail) => {
    const started = performance.now();
    let first = 0;
    let buffer = "";
    let chunks = 0;
    let usage: { completion_tokens?: number; prompt_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } } | undefined;
    let text = "";
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", agent: via, headers: { "content-type": "application/json" } }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (data: string) => {
        buffer += data;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
          const json = JSON.parse(event.slice(6));
          const piece: string | undefined = json.choices?.[0]?.text ?? json.choices?.[0]?.delta?.content;
          if (piece) {
            if (!first) first = performance.now();
            chunks++;
            text += piece;
          }
          if (json.usage) usage = json.usage;
        }
      });
      res.on("end", () => {
        if (res.statusCode !== 200) return fail(new Error(`${path}: HTTP ${res.statusCode} ${buffer.slice(0, 300)}`));
        ok({ ttftMs: first - started, tokens: usage?.completion_tokens ?? chunks, cached: usage?.prompt_tokens_details?.cached_tokens ?? 0, prompt: usage?.prompt_tokens ?? 0, text, headers: res.headers });
      });
    });
    req.on("error", fail);
    req.end(JSON.stringify(body));
  });
}

async function freePort(): Promise<number> {
  const probe = http.createServer();
  await new Promise<void>((ok) => probe.listen(0, "127.0.0.1", ok));
  const port = (probe.address() as { port: number }).port;
  await new Promise((ok) => probe.close(ok));
  return port;
}

async function llamaServerSide(bin: string, modelPath: string): Promise<Side> {
  const port = await freePort();
  const child: ChildProcess = spawn(bin, ["-m", modelPath, "-t", String(THREADS), "-tb", String(THREADS), "-np", String(SEQUENCES), "-c", String(CONTEXT * SEQUENCES), "--host", "127.0.0.1", "--port", String(port)], {
    stdio: ["ignore", "ignore", "ignore"],
    env: { ...process.env, LD_LIBRARY_PATH: dirname(bin) },
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error("llama-server did not start");
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    name: "llama-server",
    run: () => streamPost(port, "/v1/completions", { prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true }, freshAgent),
    close: async () => void child.kill("SIGTERM"),
  };
}

async function inProcessSide(llama: Llama, modelPath: string): Promise<Side> {
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ sequences: SEQUENCES, contextSize: CONTEXT, threads: THREADS });
  const free = Array.from({ length: SEQUENCES }, () => new LlamaCompletion({ contextSequence: context.getSequence() }));
  const tokens = model.tokenize(PROMPT);
  return {
    name: "node-llama-cpp in-process",
    async run() {
      const completion = free.pop()!;
      const started = performance.now();
      let first = 0;
      let count = 0;
      try {
        await completion.generateCompletion(tokens, {
          maxTokens: TOKENS,
          temperature: 0,
          disableContextShift: true,
          onToken: (t) => void (count += t.length),
          onTextChunk: () => void (first ||= performance.now()),
        });
      } finally {
        free.push(completion);
      }
      return { ttftMs: first - started, tokens: count };
    },
    close: async () => {
      await context.dispose();
      await model.dispose();
    },
  };
}

async function serveSide(dir: string, file: string, name: string, engine: string): Promise<Side> {
  const { child, port } = await startServe(name, ["--model-dir", dir, "--model", `${name}=${join(dir, file)}`, "--engine", engine, "--threads", String(THREADS), "--sequences", String(SEQUENCES), "--context-size", String(CONTEXT), "--gpu", "off", "--log-level", "warn"]);
  return {
    name: `smmf serve, ${engine}`,
    run: () => streamPost(port, "/v1/completions", { model: name, prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } }),
    close: async () => void child.kill("SIGTERM"),
  };
}

interface Tally {
  tokens: number;
  ms: number;
  ttft: number[];
}

/** `requests` requests over `concurrency` streams; adds to the tally. */
async function phase(side: Side, concurrency: number, requests: number, tally: Tally): Promise<void> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = 0; i < requests / concurrency; i++) {
        const s = await side.run();
        tally.tokens += s.tokens;
        tally.ttft.push(s.ttftMs);
      }
    }),
  );
  tally.ms += performance.now() - started;
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

export async function benchThroughput(dir: string, llama: Llama): Promise<void> {
  const bin = findLlamaServer();
  console.log(`\n== Throughput: ${TOKENS} tokens per request, greedy, ${THREADS} thread, ${SEQUENCES} sequences (llama-server: ${SEQUENCES} slots), ${ROUNDS} rounds, sides in rotating order`);
  if (!bin) console.log(`llama-server: not found (build it once with 'node bin/smmf.js engine build ${LLAMA_SERVER_ENGINE}', or set SMMF_LLAMA_SERVER); its rows and the ${LLAMA_SERVER_ENGINE} engine's are left out`);
  const only = process.env.BENCH_ENGINE_MODELS?.split(",");
  for (const [name, file] of [["synth-40M-q8_0", "synth-40M-q8_0.gguf"], ["stories260K", "stories260K.gguf"]] as const) {
    if (only && !only.includes(name)) continue;
    const path = join(dir, file);
    const sides: Side[] = [];
    if (bin) sides.push(await llamaServerSide(bin, path));
    sides.push(await inProcessSide(llama, path), await serveSide(dir, file, name, "llama.cpp"));
    if (bin) sides.push(await serveSide(dir, file, name, LLAMA_SERVER_ENGINE));
    const tallies = new Map<string, Tally>();
    const tally = (side: Side, c: number) => {
      const key = `${side.name}@${c}`;
      let t = tallies.get(key);
      if (!t) tallies.set(key, (t = { tokens: 0, ms: 0, ttft: [] }));
      return t;
    };
    try {
      // Warm-up: every sequence (slot) once.
      for (const side of sides) await phase(side, SEQUENCES, SEQUENCES, { tokens: 0, ms: 0, ttft: [] });
      for (let round = 0; round < ROUNDS; round++) {
        for (const c of CONCURRENCY) {
          for (let k = 0; k < sides.length; k++) {
            const side = sides[(round + k) % sides.length];
            await phase(side, c, c === 1 ? 3 : 2 * c, tally(side, c));
          }
        }
      }
    } finally {
      for (const side of sides) await side.close();
    }
    console.log(`\n${name}`);
    console.log("concurrency  side                              tokens/s  TTFT p50 ms  TTFT p99 ms");
    for (const c of CONCURRENCY) {
      for (const side of sides) {
        const t = tally(side, c);
        console.log(`${String(c).padStart(11)}  ${side.name.padEnd(32)}${fmt(t.tokens / (t.ms / 1000)).padStart(10)}${fmt(percentile(t.ttft, 50), 1).padStart(13)}${fmt(percentile(t.ttft, 99), 1).padStart(13)}`);
      }
    }
    const rate = (side: Side, c: number) => tally(side, c).tokens / (tally(side, c).ms / 1000);
    const [inProc, serve, serveServer] = sides.slice(bin ? 1 : 0);
    for (const c of CONCURRENCY) {
      const parts = [`c=${c}: smmf serve (llama.cpp) / in-process ${fmt(rate(serve, c) / rate(inProc, c), 2)}`];
      if (bin) {
        parts.push(`in-process / llama-server ${fmt(rate(inProc, c) / rate(sides[0], c), 2)}`);
        parts.push(`smmf serve / llama-server: llama.cpp ${fmt(rate(serve, c) / rate(sides[0], c), 2)}, ${LLAMA_SERVER_ENGINE} ${fmt(rate(serveServer, c) / rate(sides[0], c), 2)}`);
      }
      console.log(parts.join("   "));
      // Against llama-server (where it was built): on the synthetic model at both concurrencies, on the tiny one at 8.
      if (bin && (name === "synth-40M-q8_0" || c === 8)) {
        const best = Math.max(rate(serve, c) / rate(sides[0], c), rate(serveServer, c) / rate(sides[0], c));
        checkTarget(`smmf serve / llama-server ≥ 0.9 on ${name} at c=${c}`, best >= 0.9, fmt(best, 2));
      }
    }
  }
  console.log("targets: smmf serve / llama-server >= 0.9 at c=1 and c=8 on synth-40M-q8_0, and at c=8 on stories260K (with either engine)");
}

/** A user message of about `tokens` tokens (stories260K's tokenizer: ~2.3 characters per token). */
function userText(run: number, turn: number, tokens: number): string {
  const words = ["the", "little", "dog", "ran", "to", "a", "big", "tree", "and", "saw", "bird", "sing", "happy", "song", "in", "sun"];
  let text = `Run ${run}, turn ${turn}:`;
  for (let i = 0; text.length < tokens * 2.3; i++) text += ` ${words[(i * 7 + turn * 3 + run) % words.length]}`;
  return text;
}

export async function benchMultiTurn(dir: string): Promise<void> {
  const TURNS = 10;
  const RUNS = Number(process.env.BENCH_ENGINE_TURN_RUNS ?? 3);
  const config = mkdtempSync(join(tmpdir(), "smmf-bench-engine-"));
  const file = join(config, "smmf.json");
  const model = { file: join(dir, "synth-40M-q8_0.gguf"), sequences: 2, contextSize: CONTEXT, threads: THREADS, embeddings: false };
  writeFileSync(file, JSON.stringify({ modelDir: dir, models: [{ name: "reuse", ...model }, { name: "cold", ...model, prefixCache: false }] }));
  const { child, port } = await startServe("multi-turn", ["--config", file, "--gpu", "off", "--log-level", "warn"]);
  console.log(`\n== Multi-turn chat on synth-40M-q8_0: a ~200-token system prompt, then ${TURNS} turns of a ~60-token question and a 64-token answer (the history grows to ~1,500 tokens); TTFT per turn with prefix reuse and without (--prefix-cache off), the two taking turns; median of ${RUNS} conversations each`);
  const ttft: Record<"reuse" | "cold", number[][]> = { reuse: [], cold: [] };
  const prompt: number[][] = [];
  const cached: number[][] = [];
  try {
    for (let run = 0; run < RUNS; run++) {
      const system = { role: "system", content: `Conversation ${run}. ${userText(run, 99, 190)}` };
      const histories = { reuse: [system], cold: [system] };
      for (let turn = 0; turn < TURNS; turn++) {
        for (const side of (turn + run) % 2 === 0 ? (["reuse", "cold"] as const) : (["cold", "reuse"] as const)) {
          const history = (histories[side] = [...histories[side], { role: "user", content: userText(run, turn, 60) }]);
          const r = await streamPost(port, "/v1/chat/completions", { model: side, messages: history, max_tokens: 64, temperature: 0, stream: true, stream_options: { include_usage: true } });
          history.push({ role: "assistant", content: r.text });
          (ttft[side][turn] ??= []).push(r.ttftMs);
          if (side === "reuse") {
            (prompt[turn] ??= []).push(r.prompt);
            (cached[turn] ??= []).push(r.cached);
          }
        }
      }
    }
  } finally {
    child.kill("SIGTERM");
    rmSync(config, { recursive: true, force: true });
  }
  console.log("turn  prompt tokens  cached  TTFT reuse ms  TTFT cold ms  reuse/cold");
  for (let turn = 0; turn < TURNS; turn++) {
    const a = percentile(ttft.reuse[turn], 50);
    const b = percentile(ttft.cold[turn], 50);
    console.log(`${String(turn + 1).padStart(4)}${fmt(percentile(prompt[turn], 50)).padStart(15)}${fmt(percentile(cached[turn], 50)).padStart(8)}${fmt(a, 1).padStart(15)}${fmt(b, 1).padStart(14)}${fmt(a / b, 2).padStart(12)}`);
  }
  console.log("target: reuse/cold <= 0.30 from turn 3 on");
  for (let turn = 2; turn < TURNS; turn++) {
    const ratio = percentile(ttft.reuse[turn], 50) / percentile(ttft.cold[turn], 50);
    checkTarget(`prefix reuse: TTFT reuse/cold ≤ 0.30 at turn ${turn + 1}`, ratio <= 0.3, fmt(ratio, 2));
  }
}

export async function benchRouting(dir: string): Promise<void> {
  const CONVERSATIONS = 16;
  const TURNS = Number(process.env.BENCH_ENGINE_ROUTING_TURNS ?? 6);
  const AT_ONCE = 4;
  const config = mkdtempSync(join(tmpdir(), "smmf-bench-routing-"));
  const file = join(config, "smmf.json");
  // Two models, each two instances of stories260K with 8 sequences: `prefix` routes one, `p2c` the other.
  const replica = (name: string) => ({ name, file: join(dir, "stories260K.gguf"), sequences: SEQUENCES, contextSize: CONTEXT, threads: THREADS, embeddings: false });
  writeFileSync(file, JSON.stringify({ modelDir: dir, models: [replica("prefix"), replica("prefix"), replica("p2c"), replica("p2c")], modelPolicies: { prefix: "prefix", p2c: "p2c" } }));
  const { child, port } = await startServe("routing", ["--config", file, "--gpu", "off", "--log-level", "warn"]);
  console.log(`\n== Prefix-aware routing: 2 instances of stories260K (8 sequences each) behind one gateway, ${CONVERSATIONS} conversations of ${TURNS} turns (~60-token questions, 16-token answers), each conversation's next turn sent ${AT_ONCE} at a time`);
  console.log("policy  requests  prompt tokens  cached tokens  cached share  requests per instance (share of the busier)");
  try {
    for (const policy of ["prefix", "p2c"]) {
      let prompt = 0;
      let cachedTokens = 0;
      const perInstance = new Map<string, number>();
      const histories = Array.from({ length: CONVERSATIONS }, (_, c) => [{ role: "system", content: `You are storyteller number ${c}.` }]);
      for (let turn = 0; turn < TURNS; turn++) {
        let next = 0;
        await Promise.all(
          Array.from({ length: AT_ONCE }, async () => {
            for (let c = next++; c < CONVERSATIONS; c = next++) {
              const history = histories[c];
              history.push({ role: "user", content: userText(c, turn, 60) });
              const r = await streamPost(port, "/v1/chat/completions", { model: policy, messages: history, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
              history.push({ role: "assistant", content: r.text });
              prompt += r.prompt;
              cachedTokens += r.cached;
              const instance = String(r.headers["x-smmf-instance"]);
              perInstance.set(instance, (perInstance.get(instance) ?? 0) + 1);
            }
          }),
        );
      }
      const counts = [...perInstance.values()];
      const total = counts.reduce((a, b) => a + b, 0);
      console.log(`${policy.padEnd(8)}${String(total).padStart(8)}${String(prompt).padStart(15)}${String(cachedTokens).padStart(15)}${fmt((100 * cachedTokens) / prompt, 1).padStart(13)}%  ${counts.join(" / ")} (${fmt((100 * Math.max(...counts)) / total, 1)}%)`);
      if (policy === "prefix") {
        checkTarget("prefix routing: cached share ≥ 70%", cachedTokens / prompt >= 0.7, `${fmt((100 * cachedTokens) / prompt, 1)}%`);
        checkTarget("prefix routing: no instance above 60% of requests", Math.max(...counts) / total <= 0.6, `${fmt((100 * Math.max(...counts)) / total, 1)}%`);
      }
    }
  } finally {
    child.kill("SIGTERM");
    rmSync(config, { recursive: true, force: true });
  }
  console.log("target (prefix): cached share >= 70%, no instance above 60% of requests");
}

export async function benchEngine(): Promise<void> {
  const dir = modelDir();
  const llama = await getLlama({ build: "never", gpu: false, maxThreads: THREADS, logLevel: LlamaLogLevel.error });
  if (process.env.BENCH_ENGINE_THROUGHPUT !== "0") await benchThroughput(dir, llama);
  if (process.env.BENCH_ENGINE_MULTITURN !== "0") await benchMultiTurn(dir);
  if (process.env.BENCH_ENGINE_ROUTING !== "0") await benchRouting(dir);
  agent.destroy();
  freshAgent.destroy();
}
